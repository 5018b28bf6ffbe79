"""Search over a collection's store: options, filters, the three modes, result assembly.

:class:`SearchOptions` is the one validated set of ranking options (k, threshold, mode, fusion,
alpha) that the library, the CLI, the service and the MLflow model all build; the functions here
run a search for :class:`~neartext.collection.Collection` (which only delegates).

Example:
    >>> SearchOptions(k=5, mode="hybrid").fusion
    'blend'
    >>> SearchOptions(k=5, mode="keyword", threshold=0.5)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    neartext.errors.InputError: a threshold applies to cosine scores: use it with the ...
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import InputError
from .filters import Filter, parse_filter
from .hybrid import (
    BASE_FEATURES,
    DEFAULT_ALPHA,
    DEFAULT_FUSION,
    FEATURES,
    Fusion,
    Mode,
    blend,
    candidates,
    check_mode,
    features,
    learned,
    needs_text,
    rrf,
)
from .results import SearchResult
from .store import Hit, Store


def check_k(k: Any, what: str = "k") -> None:
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise InputError(f"{what} must be a whole number >= 1 (got {k})")


def check_threshold(threshold: float | None, what: str = "threshold") -> None:
    if threshold is not None and not -1.0 <= threshold <= 1.0:
        raise InputError(f"{what} must be between -1 and 1 (got {threshold})")


@dataclass(frozen=True)
class SearchOptions:
    """How to rank: ``k`` results, at least ``threshold`` (cosine; semantic mode only), the
    ``mode`` (semantic, keyword, hybrid) and for hybrid the ``fusion`` (blend, rrf, learned),
    blend weight ``alpha``, and the learned fusion's ``weights`` and the names of the
    ``features`` they weigh (from ``neartext tune``; default: the base features). Checked when
    made: an :class:`InputError` names the bad value."""

    k: int = 10
    threshold: float | None = None
    mode: Mode = "semantic"
    fusion: Fusion = DEFAULT_FUSION
    alpha: float = DEFAULT_ALPHA
    weights: tuple[float, ...] | None = None
    features: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        check_k(self.k)
        check_threshold(self.threshold)
        check_mode(self.mode, self.fusion, self.alpha, self.weights, self.features)
        if self.mode != "semantic" and self.threshold is not None:
            raise InputError(f"a threshold applies to cosine scores: use it with the semantic "
                             f"mode, not {self.mode}")


def make_filter(store: Store, where: Sequence[str] | str | Filter | None = None,
                contains: Sequence[str] | None = None) -> Filter:
    """Parse ``where``/``contains`` into a :class:`Filter` checked against the stored fields."""
    flt = where if isinstance(where, Filter) else parse_filter(where, contains)
    if isinstance(where, Filter) and contains:
        flt = Filter(where.conditions, [*where.contains, *contains])
    known = store.metadata_fields()
    for f in sorted(flt.fields):
        if f not in known:
            listed = ", ".join(sorted(known)) or "none"
            raise InputError(f"unknown metadata field '{f}' in filter; fields: {listed}")
    return flt


Ranked = list[list[tuple[str, float, Hit | None]]]


def search_vectors(store: Store, chunked: bool, vectors: np.ndarray | None,
                   texts: Sequence[str] | None, flt: Filter | None, opts: SearchOptions,
                   model_vectors: np.ndarray | None = None) -> list[list[SearchResult]]:
    """Rank with ``opts`` (semantic needs ``vectors``, keyword the query ``texts``, hybrid
    both), then fetch the documents. A document deleted by another process between the ranking
    and the fetch is left out. ``model_vectors``: the queries before a query-side adapter made
    ``vectors`` of them (the learned fusion may weigh their cosine too)."""
    if opts.mode != "semantic" and texts is None:
        raise InputError(f"{opts.mode} search needs the query texts")
    if opts.mode != "keyword" and vectors is None:
        raise InputError(f"{opts.mode} search needs query vectors")
    ranked: Ranked
    if opts.mode == "semantic":
        assert vectors is not None
        ranked = [[(h.doc_id, h.score, h) for h in row
                   if opts.threshold is None or h.score >= opts.threshold]
                  for row in store.search(vectors, opts.k, flt)]
    elif opts.mode == "keyword":
        assert texts is not None
        ranked = [[(h.doc_id, h.score, None) for h in row]
                  for row in store.keyword_search(texts, opts.k, flt)]
    else:
        assert texts is not None and vectors is not None
        ranked = _hybrid(store, vectors, texts, flt, opts, model_vectors)
    docs = {d.id: d for d in store.get(sorted({d for row in ranked for d, _, _ in row}))}
    out = []
    for row in ranked:
        results = []
        for doc_id, score, hit in row:
            d = docs.get(doc_id)
            if d is None:
                continue
            passage = d.text[hit.start:hit.end] if chunked and hit is not None else None
            results.append(SearchResult(d.id, d.text, score, d.metadata, passage))
        out.append(results)
    return out


def _hybrid(store: Store, vectors: np.ndarray, texts: Sequence[str], flt: Filter | None,
            opts: SearchOptions, model_vectors: np.ndarray | None = None) -> Ranked:
    n = candidates(opts.k)
    sem_rows = store.search(vectors, n, flt)
    kw_rows = store.keyword_search(texts, n, flt)
    weights = (store.keyword_weights(texts) if opts.fusion != "rrf"
               else [{} for _ in texts])
    names = opts.features or BASE_FEATURES
    text_of = (_texts(store, sem_rows, kw_rows)
               if opts.fusion == "learned" and needs_text(names) else None)
    before = model_vectors if opts.fusion == "learned" and "model_cosine" in names else None
    out = []
    for i, (q, words, sem, kw) in enumerate(zip(vectors, weights, sem_rows, kw_rows)):
        norm = sum(words.values())
        best = {h.doc_id: h for h in sem}
        if opts.fusion == "rrf":
            fused = rrf([h.doc_id for h in sem], [h.doc_id for h in kw], opts.k)
        else:
            cosine, model = _cosines(store, q, sem, kw, None if before is None else before[i])
            bm25 = {h.doc_id: h.score for h in kw}
            if opts.fusion == "learned":
                assert opts.weights is not None
                docs, rows = features([h.doc_id for h in sem], [h.doc_id for h in kw], cosine,
                                      bm25, norm, names, words, text_of, model)
                fused = learned(docs, rows, opts.weights, opts.k)
            else:
                fused = blend(cosine, bm25, norm, opts.alpha, opts.k)
        out.append([(doc, score, best.get(doc)) for doc, score in fused])
    return out


def _texts(store: Store, sem_rows: list[list[Hit]], kw_rows: list[list[Hit]]) -> dict[str, str]:
    """The stored text of every candidate (one deleted meanwhile is missing)."""
    ids = sorted({h.doc_id for rows in (sem_rows, kw_rows) for row in rows for h in row})
    return {d.id: d.text for d in store.get(ids)}


def _cosines(store: Store, q: np.ndarray, sem: list[Hit], kw: list[Hit],
             before: np.ndarray | None = None) -> tuple[dict[str, float], dict[str, float] | None]:
    """The cosine of every candidate (from the semantic hits, computed for the keyword ones)
    and, given the query ``before`` its adapter, every candidate's cosine with that: one read
    of the documents' vectors either way."""
    cosine = {h.doc_id: h.score for h in sem}
    wanted = [h.doc_id for h in kw if h.doc_id not in cosine]
    if before is not None:
        wanted = list(dict.fromkeys([*cosine, *wanted]))
    model: dict[str, float] | None = None if before is None else {}
    for doc, vecs in store.doc_vectors(wanted).items():
        if doc not in cosine:
            cosine[doc] = float(np.max(vecs @ q))
        if model is not None and before is not None:
            model[doc] = float(np.max(vecs @ before))
    return cosine, model


def fusion_features(store: Store, vectors: np.ndarray, texts: Sequence[str], k: int = 10,
                    names: Sequence[str] = FEATURES, model_vectors: np.ndarray | None = None
                    ) -> list[tuple[list[str], np.ndarray]]:
    """Per query, the candidates a hybrid search for the top ``k`` weighs and their features
    ``names`` (default: all of :data:`~neartext.hybrid.FEATURES`): what the learned fusion is
    trained on. ``model_vectors``: the queries before a query-side adapter, as for
    :func:`search_vectors`."""
    n = candidates(k)
    sem_rows = store.search(vectors, n, None)
    kw_rows = store.keyword_search(texts, n, None)
    weights = store.keyword_weights(texts)
    text_of = _texts(store, sem_rows, kw_rows) if needs_text(names) else None
    out = []
    for i, (q, words, sem, kw) in enumerate(zip(vectors, weights, sem_rows, kw_rows)):
        before = (model_vectors[i] if model_vectors is not None and "model_cosine" in names
                  else None)
        cosine, model = _cosines(store, q, sem, kw, before)
        out.append(features([h.doc_id for h in sem], [h.doc_id for h in kw], cosine,
                            {h.doc_id: h.score for h in kw}, sum(words.values()), names, words,
                            text_of, model))
    return out
