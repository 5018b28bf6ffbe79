"""Evaluate models on labeled pairs: STS correlation, pair classification, threshold calibration.

Pair files are CSV/TSV or JSONL (read by :mod:`neartext.readers`), with or without a header.
Columns are found by name
(``sentence1``/``sentence2``/``score``/``label`` and common variants) or given by name or 1-based
position; without a header, the two longest text columns and the numeric column are used.

Example:
    >>> from neartext.evaluate import load_pairs, evaluate_sts    # doctest: +SKIP
    >>> data = load_pairs("sts-test.csv")                          # doctest: +SKIP
    >>> evaluate_sts("default", data)["spearman"]                  # doctest: +SKIP
    82.03...
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .encoders import Encoder, load_encoder
from .errors import InputError
from .hybrid import DEFAULT_ALPHA, DEFAULT_FUSION, Fusion, Mode
from .metrics import pair_classification, sts_correlation
from .readers import delimited_rows, jsonl_values, read_text
from .results import Calibration
from .searching import SearchOptions

TEXT1 = ("sentence1", "text1", "question1", "s1", "text_a", "anchor", "query", "sentence_a")
TEXT2 = ("sentence2", "text2", "question2", "s2", "text_b", "positive", "sentence_b", "passage")
VALUE = ("score", "label", "similarity", "is_duplicate", "gold", "quality", "relevant")


@dataclass
class PairData:
    """Two aligned lists of texts and a value per pair (a score or a 0/1 label)."""

    text1: list[str]
    text2: list[str]
    value: np.ndarray
    source: str
    columns: tuple[str, str, str]


def load_pairs(
    path: str | Path,
    text1: str | None = None,
    text2: str | None = None,
    value: str | None = None,
    *,
    encoding: str = "utf-8",
) -> PairData:
    """Read a file of text pairs with a score or label per pair (see the module docstring)."""
    p = Path(path)
    names, table, has_header = read_table(p, encoding)
    c1, c2, cv = _pick_columns(p, names, table, has_header, text1, text2, value)
    t1, t2, vals = [], [], []
    for n, row in enumerate(table, 2 if has_header else 1):
        try:
            a, b, v = row[c1], row[c2], row[cv]
        except IndexError:
            raise InputError(f"{p}: line {n}: expected at least {max(c1, c2, cv) + 1} fields, "
                             f"got {len(row)}") from None
        try:
            vals.append(float(v))
        except (TypeError, ValueError):
            raise InputError(f"{p}: line {n}: '{names[cv]}' is not a number: {v!r}") from None
        t1.append(str(a or ""))
        t2.append(str(b or ""))
    return PairData(t1, t2, np.array(vals), str(p), (names[c1], names[c2], names[cv]))


def read_table(p: Path, encoding: str = "utf-8") -> tuple[list[str], list[list], bool]:
    """``(column names, rows, has_header)`` of a CSV/TSV/JSONL file (read by
    :mod:`neartext.readers`); names are 1-based positions when there is no header."""
    raw = read_text(p, encoding)
    if p.suffix.lower() in (".jsonl", ".ndjson"):
        rows = [v for _, v in jsonl_values(p, raw)]
        bad = next((i for i, r in enumerate(rows) if not isinstance(r, dict)), None)
        if bad is not None:
            raise InputError(f"{p}: row {bad + 1}: expected a JSON object, got "
                             f"{type(rows[bad]).__name__}")
        header = list(rows[0]) if rows else []
        table: list[list] = [[r.get(h) for h in header] for r in rows]
        has_header = True
    else:
        table = [values for _, values in delimited_rows(p, raw)]
        header = table[0] if table else []
        has_header = (bool(table) and not _looks_numeric_row(table[0], table[1:6])
                      and all(_looks_like_name(c) for c in table[0]))
        if has_header:
            table = table[1:]
    if not table:
        raise InputError(f"{p}: the file is empty" if not raw.strip() else f"{p}: no rows in the file")
    names = [str(h).strip() for h in header] if has_header else [
        str(i + 1) for i in range(len(table[0]))]
    return names, table, has_header


def _is_number(x: object) -> bool:
    try:
        float(str(x))
        return True
    except ValueError:
        return False


def _looks_like_name(cell: str) -> bool:
    """Column names are short labels; a sentence in the first row means there is no header."""
    return len(cell) <= 40 and len(cell.split()) <= 3


def _looks_numeric_row(first: list[str], rest: list[list[str]]) -> bool:
    """A first row is data (not a header) if it is numeric where the following rows are."""
    numeric_cols = [i for i in range(len(first)) if rest and all(
        i < len(r) and _is_number(r[i]) for r in rest)]
    return any(_is_number(first[i]) for i in numeric_cols)


def _named_column(p: Path, names: list[str], given: str, what: str) -> int:
    """A column given by name or 1-based position; an error listing the columns otherwise."""
    if given in names:
        return names.index(given)
    if given.isdigit() and 1 <= int(given) <= len(names):
        return int(given) - 1
    raise InputError(f"{p}: unknown {what} column '{given}'; available columns: {', '.join(names)}")


def _pick_columns(p: Path, names: list[str], table: list[list[Any]], has_header: bool,
                  text1: str | None, text2: str | None, value: str | None
                  ) -> tuple[int, int, int]:
    def find(given: str | None, candidates: Sequence[str], what: str) -> int | None:
        if given is not None:
            return _named_column(p, names, given, what)
        if has_header:
            lowered = [n.lower() for n in names]
            for c in candidates:
                if c in lowered:
                    return lowered.index(c)
        return None

    c1, c2, cv = find(text1, TEXT1, "text"), find(text2, TEXT2, "text"), find(value, VALUE, "score")
    sample = table[:200]
    if cv is None:
        numeric = [i for i in range(len(names)) if all(i < len(r) and _is_number(r[i])
                                                        for r in sample)]
        if not numeric:
            raise InputError(f"{p}: no score or label column found; name it with --score "
                             f"(columns: {', '.join(names)})")
        cv = numeric[-1]
    if c1 is None or c2 is None:
        lengths = {i: np.mean([len(str(r[i])) if i < len(r) else 0 for r in sample])
                   for i in range(len(names)) if i != cv and not all(
                       i < len(r) and _is_number(r[i]) for r in sample)}
        longest = sorted(lengths, key=lambda i: -lengths[i])
        if len(longest) < 2:
            raise InputError(f"{p}: need two text columns; name them with --text1/--text2 "
                             f"(columns: {', '.join(names)})")
        picked = sorted(longest[:2])
        c1 = c1 if c1 is not None else picked[0]
        c2 = c2 if c2 is not None else (picked[1] if picked[1] != c1 else picked[0])
    return c1, c2, cv


@dataclass
class RetrievalData:
    """Queries, a corpus and graded relevance: ``qrels[query_id][doc_id] = relevance``."""

    queries: dict[str, str]
    corpus: dict[str, str]
    qrels: dict[str, dict[str, float]]
    source: str


QUERY = ("query", "anchor", "question", "question1", "sentence1", "text1", "situation")
PASSAGE = ("passage", "positive", "document", "description", "answer", "question2", "sentence2",
           "text2", "text", "meaning")


def load_retrieval_pairs(
    path: str | Path, query: str | None = None, passage: str | None = None, *,
    encoding: str = "utf-8",
) -> RetrievalData:
    """(query, passage) rows: each query's gold is its passage; all passages form the corpus."""
    p = Path(path)
    names, table, has_header = read_table(p, encoding)
    lowered = [n.lower() for n in names]

    def pick(given: str | None, candidates: Sequence[str], what: str, avoid: int = -1) -> int:
        if given is not None:
            return _named_column(p, names, given, what)
        for c in candidates:
            if c in lowered and lowered.index(c) != avoid:
                return lowered.index(c)
        if len(names) >= 2:
            return 0 if avoid != 0 else 1
        raise InputError(f"{p}: need a query and a passage column (columns: {', '.join(names)})")

    cq = pick(query, QUERY, "query")
    cp = pick(passage, PASSAGE, "passage", avoid=cq)
    queries: dict[str, str] = {}
    corpus: dict[str, str] = {}
    qrels: dict[str, dict[str, float]] = {}
    by_text_q: dict[str, str] = {}
    by_text_p: dict[str, str] = {}
    for row in table:
        q, ps = str(row[cq] or "").strip(), str(row[cp] or "").strip()
        if not q or not ps:
            continue
        qid = by_text_q.setdefault(q, f"q{len(by_text_q)}")
        pid = by_text_p.setdefault(ps, f"p{len(by_text_p)}")
        queries[qid], corpus[pid] = q, ps
        qrels.setdefault(qid, {})[pid] = 1.0
    if not qrels:
        raise InputError(f"{p}: no (query, passage) rows with both texts")
    return RetrievalData(queries, corpus, qrels, str(p))


def load_beir(corpus: str | Path, queries: str | Path, qrels: str | Path) -> RetrievalData:
    """BEIR layout: corpus.jsonl (``_id``, ``title``, ``text``), queries.jsonl, qrels TSV."""
    cnames, crow, _ = read_table(Path(corpus))
    docs = {}
    for r in crow:
        d = dict(zip(cnames, r))
        docs[str(d.get("_id"))] = " ".join(x for x in (d.get("title"), d.get("text")) if x)
    qnames, qrows, _ = read_table(Path(queries))
    qs = {str(dict(zip(qnames, r)).get("_id")): str(dict(zip(qnames, r)).get("text")) for r in qrows}
    rnames, rrows, has_header = read_table(Path(qrels))
    rel: dict[str, dict[str, float]] = {}
    for r in rrows:
        if len(r) >= 3 and float(r[2]) > 0:
            rel.setdefault(str(r[0]), {})[str(r[1])] = float(r[2])
    return RetrievalData(qs, docs, rel, str(qrels))


def evaluate_retrieval(model: str | Encoder, data: RetrievalData, mode: Mode = "semantic", *,
                       fusion: Fusion = DEFAULT_FUSION, alpha: float = DEFAULT_ALPHA
                       ) -> dict[str, float]:
    """MRR@10, nDCG@10, Recall@1/5/10, MAP@100 (primary: mrr@10) of one search ``mode``."""
    return evaluate_retrieval_modes(model, data, [mode], fusion=fusion, alpha=alpha)[mode]


def model_with_adapter(spec: str) -> tuple[str | Encoder, Any]:
    """A ``--model`` value of ``eval retrieval``: a model (name or path), ``MODEL+ADAPTER.npz``
    (that model with a query adapter), or ``COLLECTION@VERSION`` (a collection's model with
    that version's adapter, e.g. ``memes/@v2``). Returns the model and the adapter (or None)."""
    from .adapters import Adapter

    if "+" in spec and spec.endswith(".npz"):
        name, _, file = spec.rpartition("+")
        enc = _encoder(name)
        return enc, Adapter.load(file, enc.fingerprint)
    where, at, version = spec.rpartition("@")
    if at and where and (version.lstrip("vV").isdigit() or version in ("current", "base")):
        from .collection import Collection
        from .versions import version_view

        with Collection.open(where) as col:
            _, _, adapter = version_view(col, version, in_place=False)
            return col.encoder, adapter
    return spec, None


def evaluate_retrieval_modes(model: str | Encoder, data: RetrievalData,
                             modes: Sequence[Mode], *, fusion: Fusion = DEFAULT_FUSION,
                             alpha: float = DEFAULT_ALPHA, adapter: Any = None
                             ) -> dict[str, dict[str, float]]:
    """:func:`evaluate_retrieval` for several modes, encoding the corpus once. Semantic alone
    runs an exact vector search; with keyword or hybrid the corpus goes into a temporary
    collection searched as ``Collection.search`` does. ``adapter``: an adapter
    (:mod:`neartext.adapters`) applied to the query vectors (and to the documents' when it is
    both-side)."""
    from .metrics import retrieval_metrics
    from .store.vector_index import ExactIndex

    for mode in modes:
        SearchOptions(mode=mode, fusion=fusion, alpha=alpha)  # checked before any encoding
    qrels = {q: {d: g for d, g in rel.items() if d in data.corpus}
             for q, rel in data.qrels.items() if q in data.queries}
    qrels = {q: rel for q, rel in qrels.items() if rel}
    if not qrels:
        raise InputError(f"{data.source}: no relevance judgement names a query and a document "
                         "that exist: check that the ids of the files match")
    enc = _encoder(model)
    doc_ids = list(data.corpus)
    qids = list(qrels)
    texts = [data.queries[q] for q in qids]
    if list(modes) == ["semantic"]:
        index = ExactIndex(enc.dim)
        vecs = enc.encode([data.corpus[d] for d in doc_ids], kind="document")
        index.add(adapter.apply(vecs) if adapter is not None and adapter.documents_too else vecs,
                  np.arange(len(doc_ids)))
        q = enc.encode(texts, kind="query")
        _, top = index.search(q if adapter is None else adapter.apply(q), 100)
        ranked = {q: [doc_ids[i] for i in row if i >= 0] for q, row in zip(qids, top)}
        return {"semantic": retrieval_metrics(ranked, qrels)}
    import tempfile

    from .collection import Collection
    from .corpus import Record

    out: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="neartext-eval-") as tmp, \
            Collection.create(Path(tmp) / "corpus", model=enc) as col:
        if adapter is not None and adapter.documents_too:  # stored as its version stores them
            vecs = adapter.apply(enc.encode([data.corpus[d] for d in doc_ids], kind="document"))
            col.upsert([Record(d, data.corpus[d], {}, vector=v) for d, v in zip(doc_ids, vecs)])
        else:
            col.upsert([Record(d, data.corpus[d], {}) for d in doc_ids])
        for mode in modes:
            rows = col.search_many(texts, 100, mode=mode, fusion=fusion, alpha=alpha,
                                   version=(col.manifest, adapter))
            out[mode] = retrieval_metrics({q: [r.id for r in row] for q, row in zip(qids, rows)},
                                          qrels)
    return out


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


def evaluate_collection(
    collection: Any, path: str | Path, query: str | None = None, passage: str | None = None,
    gold_id: str | None = None, *, encoding: str = "utf-8", mode: Mode | None = None,
    fusion: Fusion | None = None, alpha: float | None = None, version: Any = None,
) -> dict[str, Any]:
    """Retrieval metrics of an existing collection (its model, index and chunking) for held-out
    (query, passage) rows. Each passage is found in the collection by ``gold_id`` column, else
    by its text (exact, then with whitespace collapsed); rows whose passage is not there are
    skipped and counted. Without a ``mode``, the version ranks as it was tuned (its adapter
    applies either way). ``version``: rank as that version (a manifest and adapter from
    :func:`neartext.versions.version_view`) instead of the current one. Returns the metrics
    plus ``queries``, ``skipped`` and the ``ranking`` used.
    """
    from .ingest import text_hash

    p = Path(path)
    if gold_id is None:
        data = load_retrieval_pairs(p, query, passage, encoding=encoding)
        by_hash: dict[str, list[str]] = {}
        for doc_id, h in collection.store.document_hashes().items():
            by_hash.setdefault(h, []).append(doc_id)
        by_text: dict[str, list[str]] = {}
        for doc in all_documents(collection):
            by_text.setdefault(" ".join(doc.text.split()), []).append(doc.id)
        gold: dict[str, dict[str, float]] = {}
        for qid, rel in data.qrels.items():
            for pid in rel:
                text = data.corpus[pid]
                ids = by_hash.get(text_hash(text)) or by_text.get(" ".join(text.split()), [])
                for i in ids:
                    gold.setdefault(qid, {})[i] = 1.0
        queries = data.queries
    else:
        names, table, _ = read_table(p, encoding)
        cq = _named_column(p, names, query, "query") if query else next(
            (names.index(n) for n in names if n.lower() in QUERY), 0)
        cg = _named_column(p, names, gold_id, "id")
        known = set(collection.store.document_hashes())
        queries, gold = {}, {}
        for n, row in enumerate(table):
            q, g = str(row[cq] or "").strip(), str(row[cg] or "").strip()
            if q:
                qid = f"q{n}"
                queries[qid] = q
                if g in known:
                    gold[qid] = {g: 1.0}
    if not gold:
        raise InputError(f"{p}: none of its passages is in the collection {collection.path}: "
                         "no overlap to evaluate (check the file, or give --gold-id with document ids)")
    qids = list(gold)
    if version is None:
        collection.refresh()
        version = collection.current()
    opts = collection.search_options(100, None, mode, fusion, alpha, manifest=version[0])
    results = collection.search_many([queries[q] for q in qids], options=opts, version=version)
    ranked = {q: [r.id for r in rows] for q, rows in zip(qids, results)}
    from .metrics import retrieval_metrics

    return {**retrieval_metrics(ranked, gold), "queries": len(qids),
            "skipped": len(queries) - len(qids), "mode": opts.mode,
            **({"fusion": opts.fusion, "alpha": opts.alpha} if opts.mode == "hybrid" else {})}


def all_documents(collection: Any, batch: int = 5000) -> Any:
    """Every stored document of ``collection``, read ``batch`` at a time."""
    ids = list(collection.store.document_hashes())
    for start in range(0, len(ids), batch):
        yield from collection.store.get(ids[start:start + batch])


def choose_threshold(encoder: Encoder, pairs: PairData, min_precision: float | None = None
                     ) -> Calibration:
    """The similarity threshold ``encoder`` needs on labeled ``pairs``: the best-F1 one, or
    with ``min_precision`` the one with most recall at that precision
    (``Collection.calibrate`` stores it)."""
    from datetime import datetime, timezone

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

