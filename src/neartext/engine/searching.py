"""Search over a collection's store: options, filters, the modes, result assembly.

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

from collections.abc import Callable, Sequence

import numpy as np

from neartext.algo.adapters import Adapter
from neartext.algo.known import Answers, KnownQueries, load_known
from neartext.algo.ranker import load_ranker
from neartext.algo.ranker import score as rank_scores
from neartext.data.filters import Filter, parse_filter
from neartext.data.manifest import Manifest
from neartext.data.ranking import (
    BASE_FEATURES,
    DEFAULT_ALPHA,
    FEATURES,
    TEXT_MODES,
    SearchOptions,
)
from neartext.data.results import SearchResult
from neartext.data.sentences import Sentences
from neartext.data.vectors import query_vectors
from neartext.engine.hybrid import (
    PHRASE_CHARS,
    CharsSide,
    blend,
    blend_scores,
    candidates,
    features,
    learned,
    needs_chars,
    needs_known,
    needs_text,
    needs_vectors,
    ordered,
    rrf,
)
from neartext.errors import InputError
from neartext.store import Hit, Store
from neartext.util.validate import check_text


def check_fields(store: Store, fields: Sequence[str], option: str = "--show") -> None:
    """One line naming the first of ``fields`` that is neither ``text`` nor a field of the
    documents (their text columns and metadata), and the fields there are: what a front end
    shows of each result (``search --show``, the bot's ``--show``).

    >>> check_fields(col.store, ["title", "link"])          # doctest: +SKIP
    """
    known = store.metadata_fields()
    for f in fields:
        if f != "text" and f not in known:
            raise InputError(f"unknown field '{f}' for {option}; fields: text"
                             + "".join(f", {k}" for k in sorted(known)))


def make_filter(store: Store, where: Sequence[str] | str | Filter | None = None,
                contains: Sequence[str] | None = None) -> Filter:
    """Parse ``where``/``contains`` into a :class:`Filter` checked against the stored fields."""
    flt = where if isinstance(where, Filter) else parse_filter(where, contains)
    if isinstance(where, Filter) and contains:
        flt = Filter(where.conditions, [*where.contains, *contains])
    if flt.fields:  # (the fields in use are read only when a filter names some)
        known = store.metadata_fields()
        for f in sorted(flt.fields):
            if f not in known:
                listed = ", ".join(sorted(known)) or "none"
                raise InputError(f"unknown metadata field '{f}' in filter; fields: {listed}")
    return flt


def selection(store: Store, where: Sequence[str] | str | Filter | None,
              contains: Sequence[str] | None) -> Filter:
    """The filter of a delete: :func:`make_filter`'s, which must select something (deleting
    everything is deleting the collection)."""
    flt = make_filter(store, where, contains)
    if not flt:
        raise InputError("a filter that selects documents is needed: give --where or "
                         "--contains (to delete everything, delete the collection)")
    return flt


def check_queries(queries: Sequence[str]) -> None:
    """An :class:`InputError` for an empty query or one that is not valid text."""
    for q in queries:
        if not isinstance(q, str) or not q.strip():
            raise InputError("empty query; give some text to search for")
        check_text(q, "query")


Ranked = list[list[tuple[str, float, Hit | None]]]


def search_as(store: Store, version: tuple[Manifest, Adapter | None],
              vectors: np.ndarray | None, texts: Sequence[str] | None, flt: Filter | None,
              opts: SearchOptions) -> list[list[SearchResult]]:
    """:func:`search_vectors` as the version ``version`` (a manifest and its adapter) ranks:
    the query vectors checked, its query-side adapter applied (the learned fusion may weigh
    the cosine before it too)."""
    m, adapter = version
    before = None
    if vectors is not None:
        vectors = query_vectors(vectors, m.dim)
        if adapter is not None:
            before = None if adapter.documents_too else vectors
            vectors = adapter.apply(vectors)
    return search_vectors(store, bool(m.chunking), vectors, texts, flt, opts, before)


def search_vectors(store: Store, chunked: bool, vectors: np.ndarray | None,
                   texts: Sequence[str] | None, flt: Filter | None, opts: SearchOptions,
                   model_vectors: np.ndarray | None = None) -> list[list[SearchResult]]:
    """Rank with ``opts`` (semantic needs ``vectors``, keyword the query ``texts``, hybrid
    both), then fetch the documents. A document deleted by another process between the ranking
    and the fetch is left out. ``model_vectors``: the queries before a query-side adapter made
    ``vectors`` of them (the learned fusion may weigh their cosine too)."""
    if opts.mode != "semantic" and texts is None:
        raise InputError(f"{opts.mode} search needs the query texts")
    if opts.mode not in TEXT_MODES and vectors is None:
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
    elif opts.mode == "chars":
        assert texts is not None
        ranked = [[(h.doc_id, h.score, None) for h in row]
                  for row in store.chars_search(texts, opts.k, flt)]
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
    learned_ = opts.fusion == "learned"
    chars = _chars_sides(store, texts, n, flt) if learned_ and needs_chars(names) else None
    memory = (load_known(opts.known) if learned_ and opts.known and needs_known(names)
              else None)
    # the remembered queries are compared with the queries before a query-side adapter
    plain = vectors if model_vectors is None else model_vectors
    answers = [None if memory is None else memory.answers(v) for v in plain]
    # (a filtered search ranks the channels' candidates only: they passed the filter)
    recalled = [a.recall() if a is not None and flt is None else [] for a in answers]
    text_of, stems, parsed = (_texts(store, sem_rows, kw_rows, chars, recalled)
                              if learned_ and needs_text(names) else (None, None, None))
    before = model_vectors if learned_ and "model_cosine" in names else None
    units = learned_ and needs_vectors(names)
    booster = load_ranker(opts.ranker) if learned_ and opts.ranker else None
    out = []
    for i, (q, words, sem, kw) in enumerate(zip(vectors, weights, sem_rows, kw_rows)):
        norm = sum(words.values())
        best = {h.doc_id: h for h in sem}
        if opts.fusion == "rrf":
            fused = rrf([h.doc_id for h in sem], [h.doc_id for h in kw], opts.k)
        else:
            side = chars[i] if chars is not None else None
            cosine, model, unit = _cosines(store, q, sem, kw,
                                           None if before is None else before[i],
                                           [*(side.ranking if side else ()), *recalled[i]],
                                           units)
            bm25 = {h.doc_id: h.score for h in kw}
            if learned_:
                docs, rows = features([h.doc_id for h in sem], [h.doc_id for h in kw], cosine,
                                      bm25, norm, names, words, text_of, model, side, texts[i],
                                      stems, unit, _columns(answers[i]), recalled[i], parsed)
                tie = blend_scores(cosine, bm25, norm, DEFAULT_ALPHA)
                if booster is not None:
                    fused = ordered(docs, rank_scores(booster, rows).tolist(), tie, opts.k)
                else:
                    assert opts.weights is not None
                    fused = learned(docs, rows, opts.weights, opts.k, tie)
            else:
                fused = blend(cosine, bm25, norm, opts.alpha, opts.k)
        out.append([(doc, score, best.get(doc)) for doc, score in fused])
    return out


def _chars_sides(store: Store, texts: Sequence[str], n: int, flt: Filter | None
                 ) -> list[CharsSide]:
    """Each query's chars candidates; none on a store without the channel (Milvus), whose
    chars features are then 0, as they were when a ranker tuned there was trained (one tuned
    on a local collection and copied there ranks with them at 0: ``migrate`` says so)."""
    if not store.has_chars_channel:
        return [CharsSide() for _ in texts]
    rows = store.chars_search(texts, n, flt)
    return [CharsSide([h.doc_id for h in row], {h.doc_id: h.score for h in row}, norm)
            for row, norm in zip(rows, store.chars_norms(texts))]


def _texts(store: Store, sem_rows: list[list[Hit]], kw_rows: list[list[Hit]],
           chars: list[CharsSide] | None = None, recalled: Sequence[Sequence[str]] = ()
           ) -> tuple[dict[str, str], dict[str, str], dict[str, Sentences]]:
    """The stored text of every candidate, the stems the text features read and the sentences
    the store keeps (one deleted meanwhile is missing)."""
    ids = {h.doc_id for rows in (sem_rows, kw_rows) for row in rows for h in row}
    ids.update(d for side in chars or () for d in side.ranking)
    ids.update(d for row in recalled for d in row)
    found = store.candidate_texts(sorted(ids), PHRASE_CHARS)
    return ({d: c.text for d, c in found.items()}, {d: c.stems for d, c in found.items()},
            {d: c.sentences for d, c in found.items() if c.sentences is not None})


def _cosines(store: Store, q: np.ndarray, sem: list[Hit], kw: list[Hit],
             before: np.ndarray | None = None, more: Sequence[str] = (), units: bool = False
             ) -> tuple[dict[str, float], dict[str, float] | None, dict[str, np.ndarray]]:
    """The cosine of every candidate (from the semantic hits, computed for the keyword ones
    and the ``more`` of other channels); given the query ``before`` its adapter, every
    candidate's cosine with that; given ``units``, every candidate's document vector (its
    passages' mean) of unit length, else none: one read of the documents' vectors either
    way."""
    cosine = {h.doc_id: h.score for h in sem}
    wanted = list(dict.fromkeys(d for d in [*(h.doc_id for h in kw), *more]
                                if d not in cosine))
    if before is not None or units:
        wanted = list(dict.fromkeys([*cosine, *wanted]))
    model: dict[str, float] | None = None if before is None else {}
    found = store.doc_vectors(wanted)
    unit: dict[str, np.ndarray] = {}
    if not found:
        return cosine, model, unit
    # one product for all candidates' passages (and both queries), then each document's best
    # (a semantic hit keeps its own score)
    docs = list(found)
    passages = np.concatenate([found[d] for d in docs])
    starts = np.cumsum([0] + [len(found[d]) for d in docs[:-1]])
    queries = q[:, None] if before is None else np.stack([q, before], axis=1)
    best = np.maximum.reduceat(passages @ queries, starts, axis=0).T.tolist()
    for doc, value in zip(docs, best[0]):
        cosine.setdefault(doc, value)
    if units:  # each document's passages summed, at unit length: their mean's direction
        sums = (passages if len(passages) == len(docs)
                else np.add.reduceat(passages, starts, axis=0))
        unit = dict(zip(docs, sums / np.maximum(
            np.sqrt(np.einsum("ij,ij->i", sums, sums))[:, None], 1e-12)))
    if model is not None:
        model.update(zip(docs, best[1]))
    return cosine, model, unit


def _columns(answers: Answers | None) -> Callable[[list[str]], dict[str, np.ndarray]] | None:
    """The remembered queries' columns of a query's candidates, for
    :func:`~neartext.engine.hybrid.features` (None without a memory)."""
    return None if answers is None else answers.columns


def fusion_features(store: Store, vectors: np.ndarray, texts: Sequence[str], k: int = 10,
                    names: Sequence[str] = FEATURES, model_vectors: np.ndarray | None = None,
                    memory: KnownQueries | None = None) -> list[tuple[list[str], np.ndarray]]:
    """Per query, the candidates a hybrid search for the top ``k`` weighs and their features
    ``names`` (default: all of :data:`~neartext.engine.hybrid.FEATURES`): what the learned fusion is
    trained on. ``model_vectors``: the queries before a query-side adapter, as for
    :func:`search_vectors`; ``memory``: the remembered queries, each query's own pairs left
    out of its features (as a new query's are not there)."""
    n = candidates(k)
    sem_rows = store.search(vectors, n, None)
    kw_rows = store.keyword_search(texts, n, None)
    weights = store.keyword_weights(texts)
    chars = _chars_sides(store, texts, n, None) if needs_chars(names) else None
    units = needs_vectors(names)
    plain = vectors if model_vectors is None else model_vectors
    answers = [None if memory is None else memory.answers(v, t) for v, t in zip(plain, texts)]
    recalled = [[] if a is None else a.recall() for a in answers]
    text_of, stems, parsed = (_texts(store, sem_rows, kw_rows, chars, recalled)
                              if needs_text(names) else (None, None, None))
    out = []
    for i, (q, words, sem, kw) in enumerate(zip(vectors, weights, sem_rows, kw_rows)):
        before = (model_vectors[i] if model_vectors is not None and "model_cosine" in names
                  else None)
        side = chars[i] if chars is not None else None
        cosine, model, unit = _cosines(store, q, sem, kw, before,
                                       [*(side.ranking if side else ()), *recalled[i]], units)
        out.append(features([h.doc_id for h in sem], [h.doc_id for h in kw], cosine,
                            {h.doc_id: h.score for h in kw}, sum(words.values()), names, words,
                            text_of, model, side, texts[i], stems, unit,
                            _columns(answers[i]), recalled[i], parsed))
    return out
