"""Clusters of a collection's documents, from the stored vectors (nothing is re-encoded).

Methods:

- ``community`` (default): greedy community detection at a cosine ``threshold`` with a minimum
  size, as sentence-transformers' ``community_detection`` does, but over pairs found by
  :func:`neartext.algo.mining.mine_pairs` (blocked, or a faiss IVF self-join for large collections), so
  no n x n matrix is ever built. Documents in no community are noise (``-1``).
- ``kmeans``: faiss spherical k-means with ``k`` clusters; every document gets one.
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

METHODS = ("community", "kmeans", "hdbscan")
NOISE = -1


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
    if method == "kmeans":
        if k is None:
            raise InputError("kmeans needs --k, the number of clusters")
        if not 2 <= k <= n:
            raise InputError(f"k must be between 2 and the number of documents ({n}); got {k}")
    if method == "community" and not -1.0 <= threshold <= 1.0:
        raise InputError(f"threshold must be between -1 and 1 (got {threshold})")
    if min_size < 2:
        raise InputError(f"the minimum cluster size must be at least 2 (got {min_size})")


def document_matrix(col: Parts) -> tuple[list[str], np.ndarray]:
    """One unit vector per document (the mean of its passages' vectors when chunked)."""

    ids, vectors, doc_of_row = document_vectors(col)
    if len(doc_of_row) != len(ids):
        vectors = _mean_vectors(vectors, doc_of_row, len(ids))
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return ids, np.ascontiguousarray(vectors / np.maximum(norms, 1e-12), dtype=np.float32)


def cluster_vectors(vectors: np.ndarray, method: str = "community", *, threshold: float = 0.75,
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
        km = faiss.Kmeans(points.shape[1], int(k or 2), niter=25, nredo=5, seed=seed,
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


def cluster(col: Parts, method: str = "community", *, threshold: float | None = None,
            min_size: int = 3, k: int | None = None, seed: int = 42, central: int = 3,
            label_words: int = 4, progress: bool = False) -> ClusterResult:
    """Cluster a collection's documents; see the module docs for the methods."""

    t0 = time.perf_counter()
    t = resolve_threshold(col, threshold, "mine") if method == "community" else 0.0
    ids, vectors = document_matrix(col)
    assignment = cluster_vectors(vectors, method, threshold=t, min_size=min_size, k=k, seed=seed,
                                 progress=progress)
    params = {"threshold": t, "min_size": min_size} if method == "community" else (
        {"k": k, "seed": seed} if method == "kmeans" else {"min_size": min_size})
    return describe(col, ids, vectors, assignment, method, params, central=central,
                    label_words=label_words, started=t0)


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

