"""Clusters of a collection's documents, from the stored vectors (nothing is re-encoded).

Methods:

- ``kmeans`` (default): faiss spherical k-means with ``k`` clusters (by default about sqrt(n),
  2 to 100: :func:`default_k`); every document gets one. Measured on the demo's 247 documents
  (20 topics): NMI with the topics 0.589 at k 16, 0.508 at 11, 0.437 at 8, where ``community``
  at its old default threshold 0.75 put 244 documents in no cluster (NMI 0.021).
- ``community``: greedy community detection at a cosine ``threshold`` with a minimum
  size, as sentence-transformers' ``community_detection`` does, but over pairs found by
  :func:`neartext.algo.mining.mine_pairs` (blocked, or a faiss IVF self-join for large collections), so
  no n x n matrix is ever built. Documents in no community are noise (``-1``): groups of texts
  that say nearly the same thing, rather than themes.
- ``hdbscan``: scikit-learn's HDBSCAN on the unit vectors (density-based, finds ``k`` itself,
  marks noise); slow beyond some tens of thousands of documents.

Each cluster gets its size, a label from its most distinctive words (:mod:`neartext.algo.topics`) and
its most central documents (closest to the cluster's mean direction).

Example:
    >>> from neartext import Collection
    >>> res = Collection.open("demo/feedback").cluster(method="kmeans", k=8)  # doctest: +SKIP
    >>> res.clusters[0]["label"], res.clusters[0]["size"]                     # doctest: +SKIP
"""

from __future__ import annotations

import inspect
import time
from dataclasses import dataclass, field
from typing import Any

import faiss
import numpy as np

from neartext.algo.groups import communities
from neartext.algo.mining import mine_pairs
from neartext.algo.topics import labels
from neartext.engine.analysis import _mean_vectors, document_vectors, resolve_threshold
from neartext.engine.parts import Parts
from neartext.errors import InputError
from neartext.util.optional import optional

METHODS = ("kmeans", "community", "hdbscan")
DEFAULT_METHOD = "kmeans"
MAX_DEFAULT_K = 100
NOISE = -1
DEGENERATE = 0.5  # a result with more than this share in none, or in one cluster, gets a hint


def default_k(n: int) -> int:
    """K-means' clusters when none are asked for: about sqrt(n), 2 to :data:`MAX_DEFAULT_K`.

    >>> default_k(247), default_k(2000), default_k(20000), default_k(3)
    (16, 45, 100, 2)
    """
    return max(2, min(MAX_DEFAULT_K, n, int(round(n ** 0.5))))


@dataclass
class ClusterResult:
    """Cluster id per document (``NOISE`` = -1 for none) and a summary row per cluster."""

    ids: list[str]
    assignment: np.ndarray
    clusters: list[dict[str, Any]]
    method: str
    params: dict[str, Any]
    seconds: float
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def noise(self) -> int:
        return int(np.sum(self.assignment == NOISE))

    def rows(self, texts: dict[str, str]) -> list[dict[str, Any]]:
        """One row per document: ``id, cluster, label, text`` (noise last)."""
        label = {c["cluster"]: c["label"] for c in self.clusters}
        order = sorted(range(len(self.ids)),
                       key=lambda r: (self.assignment[r] == NOISE, int(self.assignment[r]), r))
        return [{"id": self.ids[r], "cluster": int(self.assignment[r]),
                 "label": label.get(int(self.assignment[r]), ""), "text": texts.get(self.ids[r], "")}
                for r in order]

    def summary(self) -> str:
        head = (f"{len(self.clusters)} clusters of {len(self.ids)} documents ({self.method}; "
                f"{self.noise} in none) in {self.seconds:.1f} s")
        lines = [head]
        if self.details.get("hint"):
            lines.append(f"hint: {self.details['hint']}")
        for c in self.clusters[:30]:
            lines.append(f"{c['cluster']:>4}  {c['size']:>6}  {c['label']}")
            for t in c["central"][:2]:
                lines.append(f"              - {' '.join(t['text'].split())[:100]}")
        if len(self.clusters) > 30:
            lines.append(f"... and {len(self.clusters) - 30} more (see --json or -o)")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "params": self.params, "documents": len(self.ids),
                "noise": self.noise, "seconds": self.seconds, "clusters": self.clusters,
                **self.details}


def check_cluster_args(method: str, n: int, *, k: int | None, threshold: float,
                       min_size: int) -> None:
    if method not in METHODS:
        raise InputError(f"unknown clustering method '{method}'; choose one of: {', '.join(METHODS)}")
    if n < 2:
        raise InputError(f"clustering needs a collection of at least 2 documents (this one has {n})")
    if method == "kmeans" and k is not None and not 2 <= k <= n:
        raise InputError(f"k must be between 2 and the number of documents ({n}); got {k}")
    if method == "community" and not -1.0 <= threshold <= 1.0:
        raise InputError(f"threshold must be between -1 and 1 (got {threshold})")
    if min_size < 2:
        raise InputError(f"the minimum cluster size must be at least 2 (got {min_size})")


def check_method_options(method: str, *, threshold: float | None, k: int | None) -> None:
    """A threshold only for ``community``, ``k`` only for ``kmeans``: an option another method
    would silently ignore is an :class:`InputError`.

    >>> check_method_options("kmeans", threshold=None, k=8)
    """
    if threshold is not None and method != "community":
        raise InputError(f"--threshold applies to --method community (clusters of texts saying "
                         f"nearly the same); {method} does not use it")
    if k is not None and method != "kmeans":
        raise InputError(f"--k applies to --method kmeans; {method} finds the number itself")


def document_matrix(col: Parts) -> tuple[list[str], np.ndarray]:
    """One unit vector per document (the mean of its passages' vectors when chunked)."""

    ids, vectors, doc_of_row = document_vectors(col)
    if len(doc_of_row) != len(ids):
        vectors = _mean_vectors(vectors, doc_of_row, len(ids))
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return ids, np.ascontiguousarray(vectors / np.maximum(norms, 1e-12), dtype=np.float32)


def cluster_vectors(vectors: np.ndarray, method: str = DEFAULT_METHOD, *, threshold: float = 0.75,
                    min_size: int = 3, k: int | None = None, seed: int = 42,
                    progress: bool = False, spherical: bool = True) -> np.ndarray:
    """Cluster id per row of ``vectors`` (unit rows; or any points with ``spherical=False``,
    such as map positions), ``NOISE`` for none; ids 0, 1, ... by decreasing cluster size."""
    n = len(vectors)
    check_cluster_args(method, n, k=k, threshold=threshold, min_size=min_size)
    labels_ = np.full(n, NOISE, dtype=np.int64)
    if method == "community":
        # 1000 neighbours per text, as sentence-transformers' community_detection starts with
        pairs = mine_pairs(vectors, threshold, top_k=max(1000, min_size), progress=progress)
        for c, (members, _) in enumerate(communities(n, pairs.i, pairs.j, min_size)):
            labels_[members] = c
    elif method == "kmeans":

        points = np.ascontiguousarray(vectors, dtype=np.float32)
        km = faiss.Kmeans(points.shape[1], int(k or default_k(n)), niter=25, nredo=5, seed=seed,
                          spherical=spherical, verbose=False, min_points_per_centroid=1)
        km.train(points)
        _, assign = km.index.search(points, 1)
        labels_ = assign[:, 0].astype(np.int64)
    else:
        HDBSCAN = optional("sklearn.cluster", "clusters", "scikit-learn (for hdbscan)").HDBSCAN
        opts = {"copy": True} if "copy" in inspect.signature(HDBSCAN).parameters else {}
        labels_ = HDBSCAN(min_cluster_size=min_size, metric="euclidean", **opts).fit_predict(vectors)
        labels_ = labels_.astype(np.int64)
    return _renumber_by_size(labels_)


def _renumber_by_size(labels_: np.ndarray) -> np.ndarray:
    ids, counts = np.unique(labels_[labels_ != NOISE], return_counts=True)
    order = ids[np.lexsort((ids, -counts))]
    mapping = {int(old): new for new, old in enumerate(order.tolist())}
    return np.array([mapping.get(int(x), NOISE) for x in labels_], dtype=np.int64)


def cluster(col: Parts, method: str = DEFAULT_METHOD, *, threshold: float | None = None,
            min_size: int = 3, k: int | None = None, seed: int = 42, central: int = 3,
            label_words: int = 4, progress: bool = False) -> ClusterResult:
    """Cluster a collection's documents; see the module docs for the methods. A degenerate
    result (most documents in none, or in one cluster) says what to try in ``details["hint"]``.
    """

    t0 = time.perf_counter()
    check_method_options(method, threshold=threshold, k=k)
    t = resolve_threshold(col, threshold, "mine") if method == "community" else 0.0
    ids, vectors = document_matrix(col)
    if method == "kmeans" and k is None and len(ids) >= 2:
        k = default_k(len(ids))
    assignment = cluster_vectors(vectors, method, threshold=t, min_size=min_size, k=k, seed=seed,
                                 progress=progress)
    params = {"threshold": t, "min_size": min_size} if method == "community" else (
        {"k": k, "seed": seed} if method == "kmeans" else {"min_size": min_size})
    res = describe(col, ids, vectors, assignment, method, params, central=central,
                   label_words=label_words, started=t0)
    hint = degenerate_hint(vectors, assignment, method, t)
    if hint:
        res.details["hint"] = hint
    return res


def degenerate_hint(vectors: np.ndarray, assignment: np.ndarray, method: str,
                    threshold: float) -> str | None:
    """What to try when most documents are in no cluster or in one, else None. For
    ``community``, a threshold from how close the documents are: the cosine a quarter of them
    reach with their nearest neighbour (over a sample of up to 2,000)."""
    n = len(assignment)
    noise = float(np.mean(assignment == NOISE))
    largest = float(np.bincount(assignment[assignment != NOISE]).max() / n) if noise < 1 else 0.0
    if noise <= DEGENERATE and largest <= DEGENERATE:
        return None
    if method == "community":
        rows = np.random.default_rng(0).choice(n, min(n, 2000), replace=False)
        index = faiss.IndexFlatIP(vectors.shape[1])
        index.add(vectors)
        nearest = index.search(vectors[rows], 2)[0][:, 1]
        suggest = float(np.floor(np.percentile(nearest, 25) * 100) / 100)
        return (f"{noise:.0%} of the documents are in no cluster: at a threshold of "
                f"{threshold:g}, few have neighbours that close (the median nearest neighbour "
                f"scores {float(np.median(nearest)):.2f}); try --threshold {suggest:g}, or "
                "--method kmeans for themes")
    if noise > DEGENERATE:
        return (f"{noise:.0%} of the documents are in no cluster; try a smaller --min-size, or "
                "--method kmeans")
    return (f"one cluster holds {largest:.0%} of the documents; try a larger --k"
            if method == "kmeans" else
            f"one cluster holds {largest:.0%} of the documents; try --method kmeans")


def describe(col: Parts, ids: list[str], vectors: np.ndarray, assignment: np.ndarray,
             method: str, params: dict[str, Any], *, central: int = 3, label_words: int = 4,
             started: float | None = None) -> ClusterResult:
    """Labels and central texts of the clusters ``assignment`` gives the documents ``ids``
    (``vectors``: their unit vectors, row for row)."""
    t0 = time.perf_counter() if started is None else started
    members = [np.flatnonzero(assignment == c) for c in range(int(assignment.max()) + 1)]
    texts = {d.id: d.text for d in col.store.get(ids)}
    tops = []
    for rows in members:
        centre = vectors[rows].sum(axis=0)
        sims = vectors[rows] @ (centre / max(float(np.linalg.norm(centre)), 1e-12))
        tops.append([(int(rows[r]), float(sims[r])) for r in np.argsort(-sims, kind="stable")])
    words = labels([[texts[ids[r]] for r, _ in top] for top in tops], label_words)
    clusters = [{"cluster": c, "size": len(top), "label": " ".join(words[c]),
                 "words": words[c],
                 "central": [{"id": ids[r], "text": texts[ids[r]], "score": round(s, 4)}
                             for r, s in top[:central]]}
                for c, top in enumerate(tops)]
    return ClusterResult(ids, assignment, clusters, method, params, time.perf_counter() - t0)

