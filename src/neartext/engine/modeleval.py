"""Evaluate models on labeled pairs: STS correlation, pair classification, threshold calibration.

Pair files are CSV/TSV or JSONL (read by :mod:`neartext.util.readers`), with or without a header.
Columns are found by name
(``sentence1``/``sentence2``/``score``/``label`` and common variants) or given by name or 1-based
position; without a header, the two longest text columns and the numeric column are used.

Example:
    >>> from neartext.engine.evaluate import load_pairs, evaluate_sts    # doctest: +SKIP
    >>> data = load_pairs("sts-test.csv")                          # doctest: +SKIP
    >>> evaluate_sts("default", data)["spearman"]                  # doctest: +SKIP
    82.03...
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import numpy as np

from neartext.algo.metrics import pair_classification, retrieval_metrics, sts_correlation
from neartext.data.evaldata import PairData, RetrievalData
from neartext.data.results import Calibration
from neartext.encoders import Encoder, load_encoder
from neartext.errors import InputError
from neartext.store.vector_index import ExactIndex


def semantic_retrieval(model: str | Encoder, data: RetrievalData, adapter: Any = None
                       ) -> dict[str, float]:
    """MRR@10, nDCG@10, Recall@1/5/10, MAP@100 (primary: mrr@10) of ``model``'s vectors: each
    query against the whole corpus, exactly. ``adapter``: an adapter applied to the query
    vectors (and to the documents' when it is both-side)."""
    qrels = judged(data)
    enc = _encoder(model)
    doc_ids = list(data.corpus)
    qids = list(qrels)
    index = ExactIndex(enc.dim)
    vecs = enc.encode([data.corpus[d] for d in doc_ids], kind="document")
    index.add(adapter.apply(vecs) if adapter is not None and adapter.documents_too else vecs,
              np.arange(len(doc_ids)))
    q = enc.encode([data.queries[q] for q in qids], kind="query")
    _, top = index.search(q if adapter is None else adapter.apply(q), 100)
    ranked = {q: [doc_ids[i] for i in row if i >= 0] for q, row in zip(qids, top)}
    return retrieval_metrics(ranked, qrels)


def judged(data: RetrievalData) -> dict[str, dict[str, float]]:
    """The relevance judgements whose query and document are in ``data``; an InputError when
    none are (the ids of the files do not match)."""
    qrels = {q: {d: g for d, g in rel.items() if d in data.corpus}
             for q, rel in data.qrels.items() if q in data.queries}
    qrels = {q: rel for q, rel in qrels.items() if rel}
    if not qrels:
        raise InputError(f"{data.source}: no relevance judgement names a query and a document "
                         "that exist: check that the ids of the files match")
    return qrels


def _similarities(encoder: Encoder, data: PairData) -> np.ndarray:
    unique = list(dict.fromkeys(data.text1 + data.text2))
    vecs = encoder.encode(unique, kind="document")
    if not encoder.settings.normalize:
        vecs = vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
    pos = {t: i for i, t in enumerate(unique)}
    a = vecs[[pos[t] for t in data.text1]]
    b = vecs[[pos[t] for t in data.text2]]
    return np.asarray(np.einsum("ij,ij->i", a, b))  # cosine per pair


def _encoder(model: str | Encoder) -> Encoder:
    """``model`` loaded, unless it is an encoder already."""
    return model if isinstance(model, Encoder) else load_encoder(model)


def evaluate_sts(model: str | Encoder, data: PairData) -> dict[str, float]:
    """Spearman and Pearson x100 of cosine similarity against the gold scores (primary: spearman)."""
    if len(data.value) < 3:
        raise InputError(f"{data.source}: STS needs at least 3 pairs (got {len(data.value)})")
    return sts_correlation(_similarities(_encoder(model), data), data.value)


def check_labels(data: PairData) -> np.ndarray:
    bad = np.flatnonzero(~np.isin(data.value, (0, 1)))
    if len(bad):
        raise InputError(f"{data.source}: labels must be 0 or 1; pair {bad[0] + 1} has "
                         f"{data.value[bad[0]]:g} (column '{data.columns[2]}')")
    labels = data.value.astype(np.int64)
    if labels.min() == labels.max():
        raise InputError(f"{data.source}: labels are all {labels[0]}; need both 0 and 1")
    return labels


def pair_scores(model: str | Encoder, data: PairData) -> np.ndarray:
    """Cosine similarity of each pair under ``model``."""
    return _similarities(_encoder(model), data)


def evaluate_pairs(
    model: str | Encoder, data: PairData, min_precision: float | None = None,
    scores: np.ndarray | None = None,
) -> dict[str, float]:
    """Pair classification metrics of cosine similarity (primary: average_precision).

    ``scores`` (from :func:`pair_scores`) saves encoding the pairs again."""
    labels = check_labels(data)
    if min_precision is not None and not 0 < min_precision <= 1:
        raise InputError(f"min-precision must be in (0, 1] (got {min_precision})")
    sims = scores if scores is not None else pair_scores(model, data)
    return pair_classification(sims, labels, min_precision)


def choose_threshold(encoder: Encoder, pairs: PairData, min_precision: float | None = None
                     ) -> Calibration:
    """The similarity threshold ``encoder`` needs on labeled ``pairs``: the best-F1 one, or
    with ``min_precision`` the one with most recall at that precision
    (``Collection.calibrate`` stores it)."""
    m = evaluate_pairs(encoder, pairs, min_precision)
    if min_precision is not None:
        if "min_precision_threshold" not in m:
            raise InputError(f"{pairs.source}: no threshold reaches precision "
                             f"{min_precision:g} (best F1 {m['best_f1']:.3f})")
        t, prec, rec = (m["min_precision_threshold"], m["precision_at_min_precision"],
                        m["recall_at_min_precision"])
        rule = f"precision >= {min_precision:g}"
    else:
        t, prec, rec = m["best_f1_threshold"], m["precision_at_best_f1"], m["recall_at_best_f1"]
        rule = "best F1"
    return Calibration(float(t), rule, float(prec), float(rec), len(pairs.value), pairs.source,
                       float(m["average_precision"]),
                       datetime.now(timezone.utc).isoformat(timespec="seconds"))

