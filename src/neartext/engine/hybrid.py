"""Fusing the channels' rankings into one (hybrid search).

Three ways, each per query over the candidates each channel returned:

- ``rrf``: reciprocal rank fusion, ``score = sum(1 / (60 + rank))`` over the lists a
  document appears in (Cormack et al., 2009). Needs no score calibration; scores are small.
- ``blend`` (default, ``alpha`` 0.7): ``alpha * cosine + (1 - alpha) * min(1, bm25 / norm)``,
  where ``norm`` is what a document holding every query word once would score: keyword evidence
  counts by how much of the query it covers, not relative to the best keyword match (which may
  be a poor one). A document missing from the keyword list counts 0 there; its cosine is
  computed for every candidate.
- ``learned``: the version's ranker (LightGBM LambdaRank, :mod:`neartext.algo.ranker`) over
  features of each candidate of the three channels (semantic, keyword and chars:
  :data:`~neartext.data.ranking.RANKER_FEATURES`): its cosine, keyword coverage as in blend,
  the reciprocal of its rank on each channel, whether every query word is in it, its cosine
  before the version's query-side adapter, whether the query's words stand in it as one
  phrase, how much of the query's weight and of its character grams its first line holds and
  whether the first line is the query (the title, when the collection was built from several
  text columns, which are joined by lines with the title first), how alike the query and its
  most alike sentence are in character grams, chars coverage, each channel's gap to the
  query's best candidate, its length, the query's word count, and how alike its document
  vector is to those of the query's best candidates by the default blend (the neighbour
  features: relevant documents resemble one another), and how alike the query is to the
  queries the version remembers the candidate answered (:mod:`neartext.algo.known`; the
  documents the most alike of them answered join the candidates).
  ``neartext tune`` trains it on the collection's own pairs and ratings and keeps it only when
  it beats the fixed rankings on held-out queries. Beside it ``tune`` fits a linear score
  over :data:`~neartext.data.ranking.LINEAR_FEATURES` (and keeps it when that ranks the
  held-out queries better); a version tuned before the ranker keeps a linear score over
  :data:`FEATURES` (or :data:`BASE_FEATURES`) with the weights it was given. A linear score
  ranks the semantic and keyword candidates.

Example:
    >>> [(d, round(s, 4)) for d, s in rrf(["a", "b", "c"], ["c", "d"], k=3)]
    [('c', 0.0323), ('a', 0.0164), ('b', 0.0161)]
    >>> blend({"a": 0.9, "b": 0.5}, {"b": 6.0}, norm=12.0, alpha=0.5, k=2)
    [('b', 0.5), ('a', 0.45)]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from neartext.data.chargrams import (
    gram_totals,
    grams_of_padded,
    held_grams,
    padded_words,
    shared_grams,
)
from neartext.data.lexical import index_text, terms
from neartext.data.ranking import (
    BASE_FEATURES,
    CHANNEL_FEATURES,
    DEFAULT_ALPHA,
    KNOWN_FEATURES,
    NEIGHBOUR_FEATURES,
    TEXT_FEATURES,
)
from neartext.data.sentences import Sentences
from neartext.data.sentences import read as read_sentences
from neartext.util.caching import kept_when_short

# the text features read a document's first characters only (a long text's phrase further on
# does not count): what one query's candidates cost stays bounded
PHRASE_CHARS = 10_000
RRF_K = 60
# how many of a query's best candidates (by the default blend) the neighbour features compare
# each candidate with (3 and 5 measured alike on four sets; 5 held on Cranfield's linear)
NEIGHBOURS = 5


def candidates(k: int) -> int:
    """How many results each side contributes to a fusion for the final top ``k``."""
    return max(50, 3 * k)


def needs_text(names: Sequence[str] | None) -> bool:
    """Whether the features ``names`` are computed from the candidates' stored text."""
    return any(n in TEXT_FEATURES or n in CHARS_COLUMNS or n == "length" for n in names or ())


def needs_vectors(names: Sequence[str] | None) -> bool:
    """Whether the features ``names`` compare the candidates' document vectors (every
    candidate's are read)."""
    return any(n in NEIGHBOUR_FEATURES for n in names or ())


def needs_known(names: Sequence[str] | None) -> bool:
    """Whether the features ``names`` read the version's remembered queries (whose answers
    join the candidates too)."""
    return any(n in KNOWN_FEATURES for n in names or ())


def needs_chars(names: Sequence[str] | None) -> bool:
    """Whether the features ``names`` read the chars channel (its candidates join too)."""
    return any(n.startswith("chars_") for n in names or ())


@dataclass
class CharsSide:
    """The chars channel's part of one query's candidates: its ranking (best first), scores
    and the score of a full match (:meth:`~neartext.store.local.chars.CharsIndex.chars_norms`)."""

    ranking: list[str] = field(default_factory=list)
    scores: dict[str, float] = field(default_factory=dict)
    norm: float = 0.0


def rrf(semantic: Sequence[str], keyword: Sequence[str], k: int) -> list[tuple[str, float]]:
    """Reciprocal rank fusion of two rankings of document ids; the best ``k`` with scores."""
    score: dict[str, float] = {}
    for ranking in (semantic, keyword):
        for rank, doc in enumerate(ranking, start=1):
            score[doc] = score.get(doc, 0.0) + 1.0 / (RRF_K + rank)
    return sorted(score.items(), key=lambda x: (-x[1], x[0]))[:k]


def blend(cosine: dict[str, float], bm25: dict[str, float], norm: float, alpha: float, k: int
          ) -> list[tuple[str, float]]:
    """``alpha * cosine + (1 - alpha) * min(1, bm25 / norm)`` for every document in ``cosine``
    (which must cover the keyword candidates too); the best ``k``. ``norm`` is the query's
    full-match BM25 score (:meth:`LocalStore.keyword_norms`), so a document matching one common
    word of a long query gains little and one matching every word gains ``1 - alpha``."""
    score = blend_scores(cosine, bm25, norm, alpha)
    return sorted(score.items(), key=lambda x: (-x[1], x[0]))[:k]


def blend_scores(cosine: dict[str, float], bm25: dict[str, float], norm: float, alpha: float
                 ) -> dict[str, float]:
    """Each document's :func:`blend` score, unsorted."""
    return {d: alpha * c + (1 - alpha) * (min(1.0, bm25.get(d, 0.0) / norm) if norm > 0 else 0.0)
            for d, c in cosine.items()}


def features(semantic: Sequence[str], keyword: Sequence[str], cosine: dict[str, float],
             bm25: dict[str, float], norm: float, names: Sequence[str] = BASE_FEATURES,
             words: dict[str, float] | None = None, texts: dict[str, str] | None = None,
             model_cosine: dict[str, float] | None = None, chars: CharsSide | None = None,
             query: str = "", stems: dict[str, str] | None = None,
             units: dict[str, np.ndarray] | None = None,
             known: Callable[[list[str]], dict[str, np.ndarray]] | None = None,
             recalled: Sequence[str] = (), sentences: dict[str, Sentences] | None = None
             ) -> tuple[list[str], np.ndarray]:
    """The candidates of the rankings (semantic first, then keyword, then the ``chars``
    side's, if given) and their features ``names`` (of
    :data:`~neartext.data.ranking.RANKER_FEATURES`), one row each. ``cosine`` covers every
    candidate (as for :func:`blend`) but one whose vectors were gone when asked for (deleted by
    another writer meanwhile), which is left out. The text features need the query's stemmed
    ``words`` in order with their weights (IDF:
    :meth:`~neartext.store.base.StoreBase.keyword_weights`) and the candidates' ``texts`` (one
    missing from them was deleted too, and is left out as well); ``model_cosine``: each
    candidate's cosine before the query-side adapter (default: ``cosine``, a version without
    one); ``query``: its text (the title's share of its character grams); ``stems``: the
    first :data:`PHRASE_CHARS` characters of each candidate's stems, as its store keeps them
    (:meth:`~neartext.store.base.Store.candidate_texts`; default: made from its text);
    ``units``: each candidate's document vector of unit length, for the neighbour features
    (:func:`neighbour_columns`; a candidate without one counts as alike to none); ``known``:
    the ``known_max`` and ``known_count`` columns of a list of candidates (the version's
    remembered queries, :meth:`~neartext.algo.known.KnownQueries.columns`; default: 0);
    ``recalled``: the documents the remembered queries most alike this one answered
    (:meth:`~neartext.algo.known.KnownQueries.recall`), candidates too; ``sentences``: the
    candidates' sentences as their store keeps them (one missing is read from its text).

    >>> docs, rows = features(["a"], ["b", "gone"], {"a": 0.9, "b": 0.4}, {"b": 3.0}, norm=3.0)
    >>> docs, rows[:, 1].tolist()
    (['a', 'b'], [0.0, 1.0])
    >>> docs, rows = features(["a", "b"], [], {"a": 0.9, "b": 0.4}, {}, 0.0, TEXT_FEATURES,
    ...                       {"cat": 3.0, "fall": 1.0}, {"a": "Falling cats\\nThe cat falls",
    ...                                                 "b": "cats"})
    >>> rows.tolist()  # phrase, lead_coverage, lead_exact
    [[1.0, 1.0, 0.0], [0.0, 0.75, 0.0]]
    """
    text_of = texts or {}
    with_text = needs_text(names)
    ch = chars or CharsSide()
    docs = [d for d in dict.fromkeys([*semantic, *keyword, *ch.ranking, *recalled])
            if d in cosine and (not with_text or d in text_of)]
    n = len(docs)
    cos = np.array([cosine[d] for d in docs], dtype=np.float64)
    kw = np.array([bm25.get(d, 0.0) for d in docs], dtype=np.float64)
    cover = np.minimum(1.0, kw / norm) if norm > 0 else np.zeros(n)
    cols: dict[str, np.ndarray] = {
        "cosine": cos, "coverage": cover,
        "semantic_rr": _reciprocal_ranks(semantic, docs),
        "keyword_rr": _reciprocal_ranks(keyword, docs),
        "all_words": (cover >= 0.999).astype(np.float64)}
    if "model_cosine" in names:
        before = model_cosine or cosine
        cols["model_cosine"] = np.array([before.get(d, cosine[d]) for d in docs],
                                        dtype=np.float64)
    if with_text:
        cols.update(_text_columns(words or {}, [text_of[d] for d in docs],
                                  None if stems is None else [stems.get(d) for d in docs]))
    if any(n_ in CHANNEL_FEATURES for n_ in names):
        cols["chars_coverage"] = (
            np.minimum(1.0, np.array([ch.scores.get(d, 0.0) for d in docs]) / ch.norm)
            if ch.norm > 0 else np.zeros(n))
        cols["chars_rr"] = _reciprocal_ranks(ch.ranking, docs)
        cols["query_words"] = np.full(n, float(len(words or {})))
        cols["length"] = np.log1p([len(text_of.get(d, "")) for d in docs])
        cols.update(chars_columns(query, [text_of.get(d, "") for d in docs],
                                  [n_ for n_ in CHARS_COLUMNS if n_ in names],
                                  [(sentences or {}).get(d) for d in docs]))
    if needs_vectors(names):
        cols.update(neighbour_columns(DEFAULT_ALPHA * cos + (1 - DEFAULT_ALPHA) * cover,
                                      [(units or {}).get(d) for d in docs]))
    if known is not None and needs_known(names):
        cols.update(known(docs))
    rows = np.zeros((n, len(names)), dtype=np.float64)
    for c, name in enumerate(names):
        if name in cols:
            rows[:, c] = cols[name]
    # where each candidate stands against the query's best one on each channel
    for name, source in (("cosine_gap", "cosine"), ("coverage_gap", "coverage"),
                         ("chars_gap", "chars_coverage"), ("known_gap", "known_max")):
        if name in names and len(docs) and source in names:
            col = rows[:, names.index(source)]
            rows[:, names.index(name)] = col.max() - col
    return docs, rows


def neighbour_columns(score: np.ndarray, units: Sequence[np.ndarray | None]
                      ) -> dict[str, np.ndarray]:
    """:data:`~neartext.data.ranking.NEIGHBOUR_FEATURES` of candidates ranked by ``score``
    with document vectors ``units`` (of unit length; None: a candidate without one, alike to
    none): each candidate's mean and highest cosine with the best :data:`NEIGHBOURS` by
    ``score``, itself left out (0 for a query's only candidate).

    >>> u = [np.array([1.0, 0.0]), np.array([0.6, 0.8]), np.array([0.0, 1.0])]
    >>> cols = neighbour_columns(np.array([0.9, 0.5, 0.1]), u)
    >>> cols["neighbour_mean"].round(2).tolist(), cols["neighbour_max"].round(2).tolist()
    ([0.3, 0.7, 0.4], [0.6, 0.8, 0.8])
    """
    n = len(units)
    if n == 0:
        return {name: np.zeros(0) for name in NEIGHBOUR_FEATURES}
    dim = next((len(u) for u in units if u is not None), 1)
    none = np.zeros(dim, dtype=np.float32)
    vecs = np.array([none if u is None else u for u in units])
    best = np.argsort(-score, kind="stable")[:NEIGHBOURS]
    alike = (vecs @ vecs[best].T).astype(np.float64)  # candidates x best
    other = np.ones(alike.shape, dtype=bool)
    other[best, np.arange(len(best))] = False  # not itself
    others = other.sum(axis=1)
    total = np.where(other, alike, 0.0).sum(axis=1)
    top = np.where(other, alike, -np.inf).max(axis=1)
    return {"neighbour_mean": np.where(others > 0, total / np.maximum(others, 1), 0.0),
            "neighbour_max": np.where(others > 0, top, 0.0)}


def _reciprocal_ranks(ranking: Sequence[str], docs: Sequence[str]) -> np.ndarray:
    """``1 / (1 + rank)`` of each of ``docs`` in ``ranking`` (0 where it is not in it)."""
    rank = {d: i for i, d in enumerate(ranking)}
    return np.array([1.0 / (1 + rank[d]) if d in rank else 0.0 for d in docs],
                    dtype=np.float64)


def _text_columns(words: dict[str, float], texts: Sequence[str],
                  stems: Sequence[str | None] | None = None) -> dict[str, np.ndarray]:
    """:data:`TEXT_FEATURES` of documents' ``texts`` for a query of the weighted ``words``:
    whether they stand in a document's ``stems`` (default: made from its text) in the query's
    order, next to each other; the share of their weight its first line holds; whether its
    first line is the query."""
    total = sum(words.values())
    if not words or total <= 0:
        return {name: np.zeros(len(texts)) for name in TEXT_FEATURES}
    query = list(words)
    # stems hold no spaces: the query's stems as a run of whole stems of the body
    run = " ".join(query)
    inner, first, last = f" {run} ", f"{run} ", f" {run}"
    phrase, cover, exact = [], [], []
    for i, text in enumerate(texts):
        given = stems[i] if stems is not None else None
        body = _window(_stems(text) if given is None else given)
        phrase.append(body == run or body.startswith(first) or body.endswith(last)
                      or inner in body)
        line = first_line(text)
        if given is not None and len(line) == len(text) and len(given) < PHRASE_CHARS:
            # one line, stems whole: the line's stems are the text's, as the store keeps them
            lead = list(dict.fromkeys(given.split()))
            in_lead = frozenset(lead)
        else:
            lead, in_lead = _lead_terms(line)
        cover.append(sum(w for t, w in words.items() if t in in_lead))
        exact.append(lead == query)
    return {"phrase": np.array(phrase, dtype=np.float64),
            "lead_coverage": np.array(cover, dtype=np.float64) / total,
            "lead_exact": np.array(exact, dtype=np.float64)}


def first_line(text: str) -> str:
    """A text's first line (its title, when it was built from several text columns), within
    its first :data:`PHRASE_CHARS` characters (a long text is not copied)."""
    end = text.find("\n", 0, PHRASE_CHARS)
    return text[:end] if end >= 0 else text[:PHRASE_CHARS]


def _window(stems: str) -> str:
    """The whole stems of the first :data:`PHRASE_CHARS` characters of ``stems``."""
    return stems if len(stems) < PHRASE_CHARS else stems[:PHRASE_CHARS].rsplit(" ", 1)[0]


@lru_cache(maxsize=1024)  # where a store does not keep them; bounded: texts can be long
def _stems(text: str) -> str:
    return index_text(text[:PHRASE_CHARS])[:PHRASE_CHARS]


#: first lines up to this long (titles, short documents) are remembered between queries, up to
#: :data:`CACHED_LINES` of them: their stems and grams are asked for query after query. A longer
#: line is worked out each time: the 4,096 lines of up to 10,000 characters kept before grew a
#: process by 185 MB for Russian one-line documents of 10,000 characters; 4,096 kept lines of
#: 256 Russian characters take 17 MB (peak RSS, both caches)
CACHED_LINE_CHARS = 256
CACHED_LINES = 4096


@kept_when_short(CACHED_LINE_CHARS, CACHED_LINES)
def _lead_terms(line: str) -> tuple[list[str], frozenset[str]]:
    """The distinct stems of a first line in order, and as a set."""
    distinct = list(dict.fromkeys(terms(line)))
    return distinct, frozenset(distinct)


#: a first line's words as its grams see them (kept as :func:`_lead_terms` keeps them)
_lead_words = kept_when_short(CACHED_LINE_CHARS, CACHED_LINES)(padded_words)


#: the features :func:`chars_columns` computes
CHARS_COLUMNS = ("lead_chars", "sentence_chars")


def chars_columns(query: str, texts: Sequence[str], names: Sequence[str] = CHARS_COLUMNS,
                  parsed: Sequence[Sentences | None] | None = None) -> dict[str, np.ndarray]:
    """The features ``names`` (of :data:`CHARS_COLUMNS`) of ``texts`` for a ``query``, over
    their character grams, in one pass over all texts (``parsed``: each text's sentences as
    its store keeps them, None where it keeps none: read from the text then):

    - ``lead_chars``: the share of the query's distinct grams each text's first line (its
      title) holds;
    - ``sentence_chars``: how alike the query and the text's most alike sentence (a line, a
      title, a sentence of a description) are: ``shared / (query's + the sentence's -
      shared)``, the query's distinct grams against the sentence's (repeats counted: Jaccard's
      similarity for a sentence without repeated grams). A document that holds a paraphrase of
      the query among other sentences scores as the paraphrase alone would.

    >>> cols = chars_columns("cats fall", ["Dogs bark. Cats fall!", "cat", ""])
    >>> cols["lead_chars"].round(2).tolist(), cols["sentence_chars"].round(2).tolist()
    ([1.0, 0.21, 0.0], [1.0, 0.19, 0.0])
    """
    if not names:
        return {}
    padded = padded_words(query)
    n = len(set(grams_of_padded(padded)))
    if not n or not texts:
        return {name: np.zeros(len(texts)) for name in names}
    if "sentence_chars" not in names:  # the first lines alone
        return {"lead_chars": shared_grams(padded, [_lead_words(first_line(t))
                                                     for t in texts]) / n}
    parts = [read_sentences(t) if s is None else s
             for t, s in zip(texts, parsed or [None] * len(texts))]
    # every text's sentences, then the first lines too long to be read from them
    flat = [p for s in parts for p in s.padded]
    apart = [i for i, s in enumerate(parts) if s.lead is None] if "lead_chars" in names else []
    held = held_grams(padded, flat + [_lead_words(first_line(texts[i])) for i in apart])
    counts = np.array([len(s.padded) for s in parts])
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    out = {}
    if "lead_chars" in names:  # the query's grams the first line's sentences hold together
        lead = np.zeros(len(texts))
        leads = np.array([s.lead or 0 for s in parts])
        some = np.flatnonzero(leads)
        if len(some):  # each text's rows of its first line, then OR-ed text by text
            mine = np.repeat(np.arange(len(texts)), counts)
            rows = np.flatnonzero(np.arange(len(flat)) - starts[mine] < leads[mine])
            at = np.concatenate(([0], np.cumsum(leads[some])[:-1]))
            lead[some] = np.logical_or.reduceat(held[rows], at, axis=0).sum(axis=1)
        lead[apart] = held[len(flat):].sum(axis=1)
        out["lead_chars"] = lead / n
    shared = held[:len(flat)].sum(axis=1)
    sizes = gram_totals(flat)
    alike = shared / (n + sizes - shared)
    best = np.zeros(len(texts))
    has = counts > 0
    if has.any():
        best[has] = np.maximum.reduceat(alike, starts[has])
    out["sentence_chars"] = best
    return out


def learned(docs: Sequence[str], rows: np.ndarray, weights: Sequence[float], k: int,
            tie: dict[str, float] | None = None) -> list[tuple[str, float]]:
    """The best ``k`` candidates by ``rows @ weights[:-1] + weights[-1]`` (a ranking score:
    only its order within one query means anything); equal scores as :func:`ordered` orders
    them."""
    w = np.asarray(weights, dtype=np.float64)
    score = rows @ w[:-1] + w[-1] if len(docs) else np.zeros(0)
    return ordered(docs, score.tolist(), tie or {}, k)


def ordered(docs: Sequence[str], score: Sequence[float], tie: dict[str, float], k: int
            ) -> list[tuple[str, float]]:
    """The best ``k`` of ``docs`` by a learned ``score``. Candidates it scores alike (a ranker
    whose trees put them in the same leaves: a query unlike those it was trained on) come in
    the order of ``tie`` (the default blend of the channels, :func:`blend`), not of their ids.

    >>> ordered(["a", "b", "c"], [0.5, 0.1, 0.5], {"a": 0.2, "c": 0.9}, 2)
    [('c', 0.5), ('a', 0.5)]
    """
    return sorted(zip(docs, score), key=lambda x: (-x[1], -tie.get(x[0], 0.0), x[0]))[:k]
