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
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from .errors import InputError

METHODS = ("auto", "exact", "approx")
AUTO_APPROX_ABOVE = 50_000  # rows; below this the exact path is fast
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


def check_mining_args(threshold: float, top_k: int, max_pairs: int | None, method: str) -> None:
    """Validate mining options with messages that name the bad value."""
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
) -> Pairs:
    """All pairs of rows of ``vectors`` (unit length) with inner product ``>= threshold``.

    Args:
        vectors: ``(n, d)`` float32, normalized.
        threshold: minimum score of a reported pair.
        top_k: neighbours considered per row (as in sentence-transformers).
        max_pairs: keep only the best this many pairs.
        method: ``exact``, ``approx`` (faiss IVF self-join), or ``auto`` (approx above 50k rows).
        nprobe: IVF lists searched per row (approx only); more is slower and more complete.
        progress: show a progress bar.
    """
    check_mining_args(threshold, top_k, max_pairs, method)
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n = len(vectors)
    if method == "auto":
        method = "approx" if n > AUTO_APPROX_ABOVE else "exact"
    t0 = time.perf_counter()
    if n < 2:
        empty = np.zeros(0, dtype=np.int64)
        return Pairs(empty, empty, np.zeros(0, dtype=np.float32), method)
    if method == "exact":
        i, j, s = _exact(vectors, threshold, top_k, progress)
        details: dict = {}
    else:
        i, j, s, details = _approx(vectors, threshold, top_k, nprobe, progress)
    i, j, s = _unique_sorted(i, j, s)
    if max_pairs is not None:
        i, j, s = i[:max_pairs], j[:max_pairs], s[:max_pairs]
    return Pairs(i, j, s, method, time.perf_counter() - t0, details)


def _matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    torch = sys.modules.get("torch")
    if torch is not None:
        with torch.no_grad():
            return (torch.from_numpy(np.ascontiguousarray(a)) @ torch.from_numpy(b).T).numpy()
    return a @ b.T


def _exact(v: np.ndarray, threshold: float, top_k: int, progress: bool):
    from tqdm.auto import tqdm

    n = len(v)
    block = max(1, min(n, BLOCK_BYTES // (4 * n)))
    out_i, out_j, out_s = [], [], []
    with tqdm(total=n, desc="mining (exact)", unit="text", disable=not progress) as bar:
        for start in range(0, n, block):
            scores = _matmul(v[start : start + block], v)  # (block, n)
            rows = np.arange(start, start + len(scores))
            scores[rows - start, rows] = -np.inf  # no self-pairs
            r, c = np.nonzero(scores >= threshold)  # r ascending
            if len(r):
                sc = scores[r, c]
                if np.bincount(r).max() > top_k:
                    # rows with more than top_k candidates keep their top_k best only
                    order = np.lexsort((-sc, r))
                    r, c, sc = r[order], c[order], sc[order]
                    rank = np.arange(len(r)) - np.searchsorted(r, r, side="left")
                    keep = rank < top_k
                    r, c, sc = r[keep], c[keep], sc[keep]
                out_i.append(r + start)
                out_j.append(c)
                out_s.append(sc)
            bar.update(len(scores))
    return _cat(out_i, np.int64), _cat(out_j, np.int64), _cat(out_s, np.float32)


def _approx(v: np.ndarray, threshold: float, top_k: int, nprobe: int | None, progress: bool):
    import faiss
    from tqdm.auto import tqdm

    n, d = v.shape
    nlist = max(1, min(int(4 * math.sqrt(n)), n // 39))
    nprobe = nprobe or default_nprobe(nlist)
    quantizer = faiss.IndexFlatIP(d)
    index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
    rng = np.random.default_rng(0)
    train = v[rng.choice(n, size=min(n, 40 * nlist), replace=False)]
    index.cp.niter = 10
    t = time.perf_counter()
    index.train(train)
    index.add(v)
    t_build = time.perf_counter() - t
    index.nprobe = nprobe
    k = min(top_k + 1, n)
    out_i, out_j, out_s = [], [], []
    block = 16384
    with tqdm(total=n, desc="mining (approx)", unit="text", disable=not progress) as bar:
        for start in range(0, n, block):
            scores, idx = index.search(v[start : start + block], k)
            rows = np.arange(start, start + len(idx))[:, None]
            ok = (idx >= 0) & (idx != rows) & (scores >= threshold)
            # a row's own entry may be missing (ties); keep at most top_k others, best first
            rank = np.cumsum(ok, axis=1)
            ok &= rank <= top_k
            r, c = np.nonzero(ok)
            out_i.append(r + start)
            out_j.append(idx[r, c])
            out_s.append(scores[r, c])
            bar.update(len(idx))
    details = {"nlist": nlist, "nprobe": nprobe, "build_seconds": t_build}
    return _cat(out_i, np.int64), _cat(out_j, np.int64), _cat(out_s, np.float32), details


def default_nprobe(nlist: int) -> int:
    """IVF lists to probe per row: enough for high recall of close pairs (see bench/bench_mining)."""
    return min(nlist, max(8, nlist // 50))


def _cat(parts: list[np.ndarray], dtype) -> np.ndarray:
    return np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros(0, dtype=dtype)


def _unique_sorted(i: np.ndarray, j: np.ndarray, s: np.ndarray):
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
    for start in range(0, len(rows), 1024):
        part = rows[start : start + 1024]
        scores = _matmul(vectors[part], vectors)
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
