"""Paraphrase mining over a matrix of unit vectors: every pair of rows scoring above a threshold.

Semantics follow ``sentence_transformers.util.paraphrase_mining_embeddings``: each row considers
its ``top_k`` most similar other rows; every such pair scoring ``>= threshold`` is reported once
(unordered, no self-pairs), best first. Unlike the reference, memory is bounded (the score matrix is
computed a block of rows at a time) and the exact path thresholds each block before any top-k, so
rows with few close neighbours cost almost nothing beyond the matrix product.

Example:
    >>> import numpy as np
    >>> v = np.array([[1, 0], [0.96, 0.28], [0, 1]], dtype=np.float32)
    >>> p = mine_pairs(v, threshold=0.9)
    >>> p.i.tolist(), p.j.tolist(), [round(s, 2) for s in p.score.tolist()]
    ([0], [1], [0.96])
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import faiss
import numpy as np

from neartext.errors import InputError
from neartext.util.linalg import scores as matmul_scores
from neartext.util.progress import progress_bar

METHODS = ("auto", "exact", "approx")
AUTO_APPROX_ABOVE = 50_000  # rows; below this the exact path is fast
SOFT_ASSIGN = 16  # approx: each vector is a candidate in its this many nearest cells
# Cells each cell's members are scored against. With soft assignment the own cell suffices: on
# 200k real embeddings, recall 0.9955 of pairs >= 0.75 with 1 probe, against 0.9916 with 8 cells x
# 4 probes and 0.946 with 1 cell x 44 probes at a similar cost. More probes: linear cost.
DEFAULT_NPROBE = 1
BLOCK_BYTES = 256 * 2**20  # bound on one block of the score matrix


@dataclass
class Pairs:
    """Row-index pairs ``i < j`` with their scores, sorted by score (best first)."""

    i: np.ndarray
    j: np.ndarray
    score: np.ndarray
    method: str = "exact"
    seconds: float = 0.0
    details: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.score)


def check_mining_args(threshold: float, top_k: int, max_pairs: int | None, method: str,
                      nprobe: int | None = None) -> None:
    """Validate mining options with messages that name the bad value."""
    if nprobe is not None and (not isinstance(nprobe, int) or nprobe < 1):
        raise InputError(f"nprobe must be a whole number >= 1 (got {nprobe})")
    if not -1.0 <= threshold <= 1.0:
        raise InputError(f"threshold must be between -1 and 1 (got {threshold})")
    if not isinstance(top_k, int) or top_k < 1:
        raise InputError(f"top-k must be a whole number >= 1 (got {top_k})")
    if max_pairs is not None and max_pairs < 1:
        raise InputError(f"max-pairs must be >= 1 (got {max_pairs})")
    if method not in METHODS:
        raise InputError(f"Unknown method '{method}'; choose one of: {', '.join(METHODS)}")


def mine_pairs(
    vectors: np.ndarray,
    threshold: float = 0.75,
    top_k: int = 100,
    *,
    max_pairs: int | None = None,
    method: str = "auto",
    nprobe: int | None = None,
    progress: bool = False,
    compute: Any = None,
) -> Pairs:
    """All pairs of rows of ``vectors`` (unit length) with inner product ``>= threshold``.

    Args:
        vectors: ``(n, d)`` float32, normalized.
        threshold: minimum score of a reported pair.
        top_k: neighbours considered per row (as in sentence-transformers).
        max_pairs: keep only the best this many pairs.
        method: ``exact``, ``approx`` (faiss IVF self-join), or ``auto`` (approx above 50k rows).
        nprobe: approx only: cells each cell's members are compared with (default 1; each
            vector is also a candidate in its 16 nearest cells); more is slower and more complete.
        progress: show a progress bar.
        compute: where the approximate path's cell self-joins run (a
            :class:`neartext.engine.compute.RayCompute`: Ray tasks); ``auto`` is then ``approx``.
    """
    check_mining_args(threshold, top_k, max_pairs, method, nprobe)
    if compute is not None and method == "exact":
        raise InputError("--ray runs the approximate path's cell self-joins on Ray; use "
                         "--method approx (or auto), or drop --ray for exact mining")
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n = len(vectors)
    if method == "auto":
        method = "approx" if n > AUTO_APPROX_ABOVE or compute is not None else "exact"
    t0 = time.perf_counter()
    if n < 2:
        empty = np.zeros(0, dtype=np.int64)
        return Pairs(empty, empty, np.zeros(0, dtype=np.float32), method)
    if method == "exact":
        i, j, s = _exact(vectors, threshold, top_k, progress)
        details: dict = {}
    elif compute is None:
        i, j, s, details = _approx(vectors, threshold, top_k, nprobe, progress)
    else:
        plan = plan_cells(vectors, nprobe)
        i, j, s = compute.join_cells(vectors, plan, threshold, top_k, progress)
        details = {**plan.details(), "on": "Ray"}
    i, j, s = unique_pairs(i, j, s)
    if max_pairs is not None:
        i, j, s = i[:max_pairs], j[:max_pairs], s[:max_pairs]
    return Pairs(i, j, s, method, time.perf_counter() - t0, details)


Triples = tuple[np.ndarray, np.ndarray, np.ndarray]  # row i, row j, score


def _exact(v: np.ndarray, threshold: float, top_k: int, progress: bool) -> Triples:
    """Upper triangle only (scores are symmetric), then the per-row top-k rule over all pairs."""

    n = len(v)
    block = max(1, min(n, BLOCK_BYTES // (4 * n)))
    out_i, out_j, out_s = [], [], []
    with progress_bar(n, "mining (exact)", "text", enabled=progress) as bar:
        for start in range(0, n, block):
            rows = v[start : start + block]
            scores = matmul_scores(rows, v[start:])  # (b, n - start): columns from `start` on
            b = len(rows)
            for k in range(b):  # keep j > i only (a b x b index array would cost 16 b^2 bytes)
                scores[k, : k + 1] = -np.inf
            r, c = np.nonzero(scores >= threshold)
            sc = scores[r, c]
            # A row's or a column's candidates beyond its top_k best in this block can never be
            # in its overall top_k: drop them now to bound memory.
            keep = (_rank_within(r, sc) < top_k) | (_rank_within(c, sc) < top_k)
            out_i.append(r[keep] + start)
            out_j.append(c[keep] + start)
            out_s.append(sc[keep])
            bar.update(b)
    i, j, s = _cat(out_i, np.int64), _cat(out_j, np.int64), _cat(out_s, np.float32)
    keep = _top_k_rule(i, j, s, top_k)
    return i[keep], j[keep], s[keep]


def _rank_within(group: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Rank (0 = best) of each entry among the entries of the same group, by score."""
    if not len(group):
        return np.zeros(0, dtype=np.int64)
    order = np.lexsort((-score, group))
    g = group[order]
    rank_sorted = np.arange(len(g)) - np.searchsorted(g, g, side="left")
    rank = np.empty(len(g), dtype=np.int64)
    rank[order] = rank_sorted
    return rank


def _top_k_rule(i: np.ndarray, j: np.ndarray, s: np.ndarray, top_k: int) -> np.ndarray:
    """Keep pair (i, j) if j is among i's top_k candidates or i among j's (the reference's rule)."""
    if not len(i):
        return np.zeros(0, dtype=bool)
    ends = np.concatenate([i, j])
    ranks = _rank_within(ends, np.concatenate([s, s]))
    return (ranks[: len(i)] < top_k) | (ranks[len(i) :] < top_k)


@dataclass(frozen=True)
class CellPlan:
    """The approximate path's cells: members of each cell (hard assignment, ``order`` sliced by
    ``bounds``), each cell's candidates (soft assignment, ``soft_rows`` sliced by
    ``soft_bounds``) and the ``nprobe`` cells each cell is scored against (``near``)."""

    order: np.ndarray
    bounds: np.ndarray
    soft_rows: np.ndarray
    soft_bounds: np.ndarray
    near: np.ndarray
    nlist: int
    nprobe: int
    soft: int
    build_seconds: float

    def members(self, cell: int) -> np.ndarray:
        return self.order[self.bounds[cell] : self.bounds[cell + 1]]

    def sizes(self) -> np.ndarray:
        return np.diff(self.bounds)

    def details(self) -> dict[str, Any]:
        return {"nlist": self.nlist, "nprobe": self.nprobe, "soft_assign": self.soft,
                "build_seconds": self.build_seconds}


def plan_cells(v: np.ndarray, nprobe: int | None = None, soft: int = SOFT_ASSIGN) -> CellPlan:
    """k-means cells over ``v`` (seeded: the same vectors give the same cells).

    Every vector is a candidate in its ``soft`` nearest cells: two very similar texts can lie
    between two unrelated centroids (seen on real embeddings: a 0.98 pair whose cells' centroids
    had similarity 0.05), which probing by centroid alone never finds."""

    t = time.perf_counter()
    n, d = v.shape
    nlist = max(1, min(int(4 * math.sqrt(n)), n // 39))
    nprobe = min(nlist, nprobe or DEFAULT_NPROBE)
    soft = min(soft, nlist)
    rng = np.random.default_rng(0)
    km = faiss.Kmeans(d, nlist, niter=10, spherical=True, seed=1)
    km.train(v[rng.choice(n, size=min(n, 40 * nlist), replace=False)])
    _, top_cells = km.index.search(v, soft)  # (n, soft)
    assign = top_cells[:, 0]
    order = np.argsort(assign, kind="stable")
    bounds = np.searchsorted(assign[order], np.arange(nlist + 1))
    soft_cells = top_cells.ravel()
    soft_order = np.argsort(soft_cells, kind="stable")
    soft_rows = (soft_order // soft).astype(np.int64)
    soft_bounds = np.searchsorted(soft_cells[soft_order], np.arange(nlist + 1))
    centroids = np.asarray(km.centroids)
    centroids = centroids / np.linalg.norm(centroids, axis=1, keepdims=True)
    near = np.argsort(-(centroids @ centroids.T), axis=1)[:, :nprobe]  # (nlist, nprobe)
    return CellPlan(order, bounds, soft_rows, soft_bounds, near, nlist, nprobe, soft,
                    time.perf_counter() - t)


def join_cells(v: np.ndarray, plan: CellPlan, cells: Sequence[int], threshold: float,
               top_k: int) -> Triples:
    """The self-join of ``cells``: each member scored against its cell's candidates, one matrix
    product per cell; a member keeps its ``top_k`` best pairs ``>= threshold``. Cells are
    independent, so any split of them (a loop here, tasks on Ray) gives the same pairs."""
    out_i, out_j, out_s = [], [], []
    for cell in cells:
        members = plan.members(cell)
        if not len(members):
            continue
        cand = np.unique(np.concatenate(
            [plan.soft_rows[plan.soft_bounds[p] : plan.soft_bounds[p + 1]]
             for p in plan.near[cell]]))
        scores = matmul_scores(v[members], v[cand])  # (members, candidates)
        r, c = np.nonzero(scores >= threshold)
        sc = scores[r, c]
        gi, gj = members[r], cand[c]
        ok = gi != gj
        gi, gj, sc = gi[ok], gj[ok], sc[ok]
        keep = _rank_within(gi, sc) < top_k
        out_i.append(gi[keep])
        out_j.append(gj[keep])
        out_s.append(sc[keep])
    return _cat(out_i, np.int64), _cat(out_j, np.int64), _cat(out_s, np.float32)


def _approx(v: np.ndarray, threshold: float, top_k: int, nprobe: int | None, progress: bool,
            soft: int = SOFT_ASSIGN) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """Blocked IVF self-join in this process: :func:`plan_cells`, then :func:`join_cells` cell
    by cell."""
    plan = plan_cells(v, nprobe, soft)
    parts = []
    with progress_bar(len(v), "mining (approx)", "text", enabled=progress) as bar:
        for cell in range(plan.nlist):
            parts.append(join_cells(v, plan, [cell], threshold, top_k))
            bar.update(len(plan.members(cell)))
    i, j, s = (_cat([p[k] for p in parts], t) for k, t in
               enumerate((np.int64, np.int64, np.float32)))
    return i, j, s, plan.details()


def _cat(parts: list[np.ndarray], dtype: type) -> np.ndarray:
    return np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros(0, dtype=dtype)


def unique_pairs(i: np.ndarray, j: np.ndarray, s: np.ndarray) -> Triples:
    """Each unordered pair once (its best score), sorted by score descending, then (i, j)."""
    lo, hi = np.minimum(i, j), np.maximum(i, j)
    if not len(lo):
        return lo, hi, s
    key = lo * (int(hi.max()) + 1) + hi
    order = np.lexsort((-s, key))
    key, lo, hi, s = key[order], lo[order], hi[order], s[order]
    first = np.ones(len(key), dtype=bool)
    first[1:] = key[1:] != key[:-1]
    lo, hi, s = lo[first], hi[first], s[first]
    order = np.lexsort((hi, lo, -s))
    return lo[order], hi[order], s[order]


def sample_recall(
    vectors: np.ndarray, pairs: Pairs, threshold: float, top_k: int, sample: int, seed: int = 0
) -> dict:
    """Recall of ``pairs`` against exact mining, measured on ``sample`` random rows.

    For each sampled row, the exact pairs are its ``top_k`` neighbours scoring ``>= threshold``;
    recall is the share of those that ``pairs`` contains.
    """
    n = len(vectors)
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(n, size=min(sample, n), replace=False))
    found = set(zip(pairs.i.tolist(), pairs.j.tolist()))
    gold = hit = 0
    block = max(1, BLOCK_BYTES // (16 * n))  # scores, their negation and int64 partition indices
    for start in range(0, len(rows), block):
        part = rows[start : start + block]
        scores = matmul_scores(vectors[part], vectors)
        scores[np.arange(len(part)), part] = -np.inf
        k = min(top_k, n - 1)
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        for r, row in enumerate(part):
            for c in top[r]:
                if scores[r, c] >= threshold:
                    gold += 1
                    hit += (min(row, c), max(row, c)) in found
    return {"sample": int(len(rows)), "gold_pairs": gold,
            "recall": (hit / gold) if gold else 1.0}
