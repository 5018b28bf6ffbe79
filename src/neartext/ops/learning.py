"""What ``neartext tune`` learns besides the adapter's own fit: hard negatives mined from what the
fused ranking confuses, adapters cross-fitted so the ranker's training features look like the
ones it meets, the learned ranker's fit over every channel's candidates, and what a learned
ranking gains over the best fixed one (:func:`against_fixed`); and which of the rankings it
measured ``tune`` chooses (:func:`choose_row`).

Example:
    >>> from neartext.ops.learning import fit_fusion              # doctest: +SKIP
    >>> learned = fit_fusion(col, queries, vectors, gold, None, seed=0)  # doctest: +SKIP
    >>> [r.describe() for r in learned]                           # doctest: +SKIP
    ['hybrid learned', 'hybrid learned linear']
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from neartext.algo.adapters import (
    MIN_PAIRS,
    Adapter,
    PassageRows,
    paired_gain,
    split_groups,
    train_adapter,
)
from neartext.algo.known import KnownQueries, save_known
from neartext.algo.ranker import fit_linear, fit_ranker, save_ranker
from neartext.data.ranking import (
    KNOWN_FEATURES,
    LINEAR_FEATURES,
    MONOTONE,
    RANKER_FEATURES,
    Ranking,
)
from neartext.engine.hybrid import needs_known
from neartext.engine.searching import fusion_features, search_vectors
from neartext.store.base import Store

if TYPE_CHECKING:
    from neartext.collection import Collection

# how deep in the fused ranking an adapter's hard negatives are mined (confusions)
CONFUSED = 3
# queries the learned fusion is fitted on, at most (a seeded sample of the training queries)
FUSION_QUERIES = 2000
#: one ranking ``tune`` measured: the adapter ("current", "new"), the ranking, its held-out
#: metrics, and each held-out query's reciprocal rank
Measured = tuple[str, Ranking, dict[str, float], np.ndarray]


def confusions(store: Store, chunked: bool, vectors: np.ndarray, queries: Sequence[str],
               doc_ids: Sequence[str], adapter: Adapter | None = None, depth: int = CONFUSED
               ) -> list[tuple[int, str]]:
    """Hard negatives for an adapter: for each pair (``queries[i]``, ``doc_ids[i]``), the
    documents a hybrid search (blend, every channel's candidates) ranks above depth ``depth``
    that are none of that query's documents — what the fused ranking confuses with the right
    answer, which in-batch and random negatives rarely are. Returns (pair index, document id).
    The search builds the keyword index where no keyword search has yet (``index`` then
    ``tune``), as any first keyword search does."""
    gold: dict[str, set[str]] = {}
    first: dict[str, int] = {}
    for i, (t, d) in enumerate(zip(queries, doc_ids)):
        gold.setdefault(t, set()).add(d)
        first.setdefault(t, i)
    unique = list(first)
    vecs = vectors[[first[t] for t in unique]]
    if adapter is not None:
        vecs = adapter.apply(vecs)
    hits = search_vectors(store, chunked, vecs, unique, None,
                          Ranking("hybrid", "blend", alpha=0.5).options(depth))
    wrong = {t: [r.id for r in row if r.id not in gold[t]] for t, row in zip(unique, hits)}
    return [(i, d) for i, t in enumerate(queries) for d in wrong[t]]


def crossfit(q: np.ndarray, pos: np.ndarray, docs: np.ndarray, groups: Sequence[str],
             train: np.ndarray, hard: Sequence[tuple[int, int]], kind: str, seed: int,
             fingerprint: str, baseline: Adapter | None = None,
             passages: PassageRows | None = None) -> dict[str, Adapter | None]:
    """For each training query (``groups`` of the pairs where ``train``), a query-side adapter
    trained on the other half of the training queries, not on its own pairs: what the ranker
    is fitted on must look like what it meets at search time. An adapter's cosines on the
    queries it was trained on are better than on new ones, and a ranker fitted on them learns
    to trust the cosine more than it deserves (on ParaPhraser with use-multilingual the ranker
    fell below a fixed blend that way). A half too small to train on gives ``baseline``;
    ``passages`` as for :func:`~neartext.algo.adapters.train_adapter`."""
    rows = [int(i) for i in np.flatnonzero(train)]
    queries = list(dict.fromkeys(groups[i] for i in rows))
    half = dict(zip(queries, split_groups(queries, 0.5, seed + 1)))
    out: dict[str, Adapter | None] = {}
    for side in (True, False):
        other = [i for i in rows if half[groups[i]] != side]
        adapter = baseline
        if len(other) >= MIN_PAIRS:
            index = {i: n for n, i in enumerate(other)}
            adapter = train_adapter(
                q[other], pos[other], docs, groups=[groups[i] for i in other],
                # its own seed: with the gate's, its early-stopping queries would be drawn
                # as the gate drew its held-out ones, and these are all training queries
                base_fingerprint=fingerprint, kind=kind, side="query", seed=seed + 2,
                hard_negatives=[(index[i], r) for i, r in hard if i in index],
                baseline=baseline, passages=passages).adapter
        out.update({t: adapter for t in queries if half[t] == side})
    return out


def fit_fusion(col: Collection, queries: list[str], base: np.ndarray, gold: list[set[str]],
                adapter: Adapter | None, seed: int, store: Any = None,
                per_query: Mapping[str, Adapter | None] | None = None) -> list[Ranking]:
    """The learned rankings fitted on ``queries`` (their candidates as a hybrid search with
    ``adapter`` finds them, on every channel), as settings for the caller to measure: the
    LightGBM ranker (:func:`~neartext.algo.ranker.fit_ranker`, saved in the collection's
    rankers directory) and a linear weighing of :data:`~neartext.data.ranking.LINEAR_FEATURES`
    (:func:`~neartext.algo.ranker.fit_linear`); none when no query has both a relevant and an
    irrelevant candidate. ``per_query``: the
    query-side adapter each query's features are computed with instead of ``adapter``
    (:func:`crossfit`). Where the pairs can teach what remembering the queries is worth
    (:func:`answered_again`), both are fitted a second time remembering them
    (:func:`remembered`; each query's features computed with the others' pairs, its own left
    out): the held-out queries say which ranks better (on STS-B, where near-identical
    sentences answer different queries, remembering ranked worse; on Cranfield, better)."""

    if not queries:
        return []
    memory = (remembered(queries, gold, plain_side(adapter, base))
              if needs_known(RANKER_FEATURES) and answered_again(gold) >= MIN_PAIRS else None)
    names, linear_names = ((RANKER_FEATURES, LINEAR_FEATURES) if memory is not None else
                           (without_known(RANKER_FEATURES), without_known(LINEAR_FEATURES)))
    if len(queries) > FUSION_QUERIES:
        keep = np.sort(np.random.default_rng(seed).choice(len(queries), FUSION_QUERIES, False))
        queries, base, gold = [queries[i] for i in keep], base[keep], [gold[i] for i in keep]
    if per_query is not None:
        vecs = np.stack([v if (a := per_query[t]) is None else a.apply(v[None])[0]
                         for t, v in zip(queries, base)])
    else:
        vecs = base if adapter is None else adapter.apply(base)
    xs, ys = [], []
    for (docs, rows), g in zip(fusion_features(store or col.store, vecs, queries,
                                               names=names,
                                               model_vectors=model_side(adapter, base),
                                               memory=memory), gold):
        xs.append(rows)
        ys.append(np.array([d in g for d in docs], dtype=np.float64))
    if not any(0 < y.sum() < len(y) for y in ys):
        return []
    known = None if memory is None else save_known(col.path, memory)
    out = _fitted(col, xs, ys, seed, without_known(names), without_known(linear_names), names)
    if known is not None:  # and remembering: the held-out queries say which ranks better
        out += _fitted(col, xs, ys, seed, names, linear_names, names, known)
    return out


def _fitted(col: Collection, xs: list[np.ndarray], ys: list[np.ndarray], seed: int,
            names: Sequence[str], linear_names: Sequence[str], columns: Sequence[str],
            known: str | None = None) -> list[Ranking]:
    """The LightGBM ranker over ``names`` and the linear weighing of ``linear_names`` fitted on
    the candidates' rows ``xs`` (of the features ``columns``) with ``labels`` ``ys``,
    remembering the queries of the file ``known``."""
    names, linear_names = tuple(names), tuple(linear_names)
    at = [list(columns).index(n) for n in names]
    rows = [x[:, at] for x in xs]
    fitted = fit_ranker(rows, ys, seed=seed, monotone=[MONOTONE.get(n, 0) for n in names])
    name = save_ranker(col.path, fitted.text)
    details = {"trees": fitted.rounds, "queries": fitted.queries,
               "seconds": round(fitted.seconds, 2)}
    if fitted.valid_ndcg is not None:
        details["valid_ndcg@10"] = round(fitted.valid_ndcg, 4)
    out = [Ranking("hybrid", "learned", features=names, ranker=name, known=known,
                   details={"ranker": details})]
    linear = [names.index(n) for n in linear_names]
    weights = fit_linear([x[:, linear] for x in rows], ys, seed=seed,
                         monotone=[MONOTONE.get(n, 0) for n in linear_names])
    if weights is not None and np.isfinite(weights).all():
        out.append(Ranking("hybrid", "learned", weights=tuple(float(w) for w in weights),
                           features=linear_names, known=known))
    return out


def answered_again(gold: Sequence[set[str]]) -> int:
    """How many queries have a relevant document another of them has too: those whose
    remembered-query features say something while fitting (each query's own pairs are left
    out). Where each document answers one query, remembering can teach a ranker nothing, and
    the documents it recalls for a new query are ones that answered another.

    >>> answered_again([{"a"}, {"a", "b"}, {"c"}])
    2
    """
    times: dict[str, int] = {}
    for g in gold:
        for d in g:
            times[d] = times.get(d, 0) + 1
    return sum(any(times[d] > 1 for d in g) for g in gold)


def without_known(names: Sequence[str]) -> tuple[str, ...]:
    """``names`` without the remembered queries' features."""
    return tuple(n for n in names if n not in KNOWN_FEATURES)


def remembered(queries: Sequence[str], gold: Sequence[set[str]], plain: np.ndarray
               ) -> KnownQueries:
    """The remembered queries of a learned ranking: a pair per (query, relevant document),
    with the query's vector ``plain`` (as searches compare them: before a query-side
    adapter, :func:`plain_side`).

    >>> m = remembered(["a", "b"], [{"1", "2"}, {"2"}], np.eye(2, dtype=np.float32))
    >>> len(m), sorted(m.doc_ids)
    (3, ['1', '2', '2'])
    """
    rows = [(i, d) for i, g in enumerate(gold) for d in sorted(g)]
    return KnownQueries(plain[[i for i, _ in rows]] if rows else np.zeros((0, plain.shape[1])),
                        [d for _, d in rows], [queries[i] for i, _ in rows])


def remember(col: Collection, ranking: Ranking, queries: Sequence[str],
             gold: Sequence[set[str]], base: np.ndarray, adapter: Adapter | None) -> Ranking:
    """``ranking`` remembering ``queries`` (all the pairs ``tune`` was given, its held-out
    ones too, once the ranking is chosen) instead of those it was fitted and measured with;
    a ranking that remembers none is returned as it is."""
    if ranking.known is None:
        return ranking
    memory = remembered(queries, gold, plain_side(adapter, base))
    details = {**ranking.details, "remembered": len(memory)}
    return dataclasses.replace(ranking, known=save_known(col.path, memory), details=details)


def plain_side(adapter: Adapter | None, base: np.ndarray) -> np.ndarray:
    """The queries as a search compares them with the remembered ones: as the model gives
    them, or as a both-side adapter maps them (it maps the documents too)."""
    side = model_side(adapter, base)
    if side is not None:
        return side
    return base if adapter is None else adapter.apply(base)


def model_side(adapter: Adapter | None, base: np.ndarray) -> np.ndarray | None:
    """The queries as the model gives them, when ``adapter`` maps them (query side only)."""
    return base if adapter is not None and not adapter.documents_too else None


def against_fixed(rows: Sequence[Measured], best: int) -> dict[str, Any]:
    """What the learned ranking ``rows[best]`` gains on the held-out queries over the best
    fixed ranking of ``rows`` (the same queries, paired): that ranking, its MRR@10, the gain
    and the gain's 95% lower bound; empty when ``rows[best]`` is fixed itself or no fixed
    ranking was measured.

    >>> q = np.array([1.0, 0.5, 0.0, 1.0])
    >>> rows = [("new", Ranking("keyword"), {"mrr@10": 0.625}, q),
    ...         ("new", Ranking("hybrid", "learned", weights=(1.0, 0.0, 0.0, 0.0, 0.0, 0.0)),
    ...          {"mrr@10": 0.875}, np.array([1.0, 1.0, 0.5, 1.0]))]
    >>> d = against_fixed(rows, 1)
    >>> d["ranking"], d["gain"]
    ('keyword', 0.25)
    """
    learned, fixed = by_kind(rows)
    if best not in learned or not fixed:
        return {}
    top = best_row(rows, fixed)
    gain, low = paired_gain(rows[top][3], rows[best][3])
    return {"adapter": rows[top][0], "ranking": rows[top][1].describe(),
            "mrr@10": round(float(rows[top][3].mean()), 4), "gain": round(gain, 4),
            "gain_lower_95": round(low, 4)}


def choose_row(rows: Sequence[Measured]) -> int:
    """The index of the ranking ``tune`` chooses among its measured ``rows``: the learned
    ranking with the best held-out MRR@10 (:func:`best_row`), unless a fixed ranking ranks
    better beyond the noise (the 95% lower bound of its paired gain over the learned one above
    0); the best fixed one then, and the best of all when only one kind was measured.

    The best by point estimate is the best of a dozen fixed rankings (every channel, blends of
    four weights, each with two adapters) so close to one another that on a few hundred
    held-out queries the luckiest of them can top a learned ranking that ranks better on new
    queries. In ``tune`` runs on seven sets, 5 folds each (bench/bench_tune_choice.py), this
    rule chose otherwise on 3 of the 35 folds, and each time ranked the fold's own queries
    better: Cranfield +0.033 MRR@10 [+0.012, +0.054], ParaPhraser +0.003 [+0.002, +0.005].

    >>> rr = np.array([1.0, 0.5, 1.0, 0.0] * 10)
    >>> lucky = rr.copy(); lucky[3] = 1.0  # one query better: within the noise
    >>> rows = [("current", Ranking("keyword"), {}, lucky),
    ...         ("new", Ranking("hybrid", "learned", weights=(1.0,) + (0.0,) * 5), {}, rr)]
    >>> choose_row(rows)
    1
    >>> rows[0] = ("current", Ranking("keyword"), {}, np.ones(40))  # better beyond the noise
    >>> choose_row(rows)
    0
    """
    learned, fixed = by_kind(rows)
    if not learned or not fixed:
        return best_row(rows, range(len(rows)))
    top_learned, top_fixed = best_row(rows, learned), best_row(rows, fixed)
    _, low = paired_gain(rows[top_learned][3], rows[top_fixed][3])
    return top_fixed if low > 0 else top_learned


def by_kind(rows: Sequence[Measured]) -> tuple[list[int], list[int]]:
    """The indices of ``rows``' learned rankings and of their fixed ones (a mode, a blend: what a
    person could set by hand)."""
    learned = [i for i, r in enumerate(rows) if r[1].fusion == "learned"]
    return learned, [i for i, r in enumerate(rows) if r[1].fusion != "learned"]


def best_row(rows: Sequence[Measured], among: Iterable[int]) -> int:
    """The index, of ``among``, of the measured ranking with the best held-out MRR@10 (each
    row's per-query reciprocal ranks last); on a tie the current adapter's, then the simpler
    setting (earlier in the list)."""
    return max(among, key=lambda i: (round(float(rows[i][3].mean()), 6),
                                     rows[i][0] == "current", -i))
