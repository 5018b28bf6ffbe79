"""Vector indexes behind one small interface: an exact numpy index and faiss ANN indexes.

The exact index is the default and the oracle that approximate ones are tested against. It keeps
the vectors in one contiguous matrix and scores queries with a BLAS matrix product, which on a
small CPU beats faiss's single-query flat scan (faiss uses BLAS only for batches of 20+ queries).
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import faiss
import numpy as np

from ..atomic import staged_file
from ..linalg import top_k

QUERY_BLOCK = 256  # queries scored at once: bounds the (queries x vectors) score matrix


class VectorIndex(Protocol):
    kind: str

    @property
    def ntotal(self) -> int: ...

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None: ...

    def remove(self, ids: np.ndarray) -> bool:
        """Remove ``ids``; False if this index cannot remove (the caller rebuilds it)."""
        ...

    def search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(scores, ids)``, each ``(n_queries, k)``, best first; id -1 pads missing results."""
        ...

    def stored_ids(self) -> np.ndarray:
        """The ids held, ascending."""
        ...

    def write(self, f: BinaryIO) -> None:
        """Serialize the index (its ids included) to an open binary file."""
        ...


# sorted ids -> (the ids found, their vectors in that order): how an index file's vectors are
# read back from the database
VectorSource = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


class ExactIndex:
    """Exact inner-product search over an in-memory matrix. Ids stay sorted ascending.

    >>> ix = ExactIndex(2)
    >>> ix.add(np.array([[1, 0], [0, 1]], dtype=np.float32), np.array([5, 9]))
    >>> ix.search(np.array([[0.9, 0.1]], dtype=np.float32), k=1)[1].tolist()
    [[5]]
    """

    kind = "flat"

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.vectors = np.zeros((0, dim), dtype=np.float32)
        self.ids = np.zeros(0, dtype=np.int64)

    @property
    def ntotal(self) -> int:
        return len(self.ids)

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        if len(ids) == 0:
            return
        vectors = np.asarray(vectors, dtype=np.float32).reshape(len(ids), self.dim)
        if self.ntotal and ids.min() <= self.ids[-1] or np.any(np.diff(ids) <= 0):
            order = np.argsort(np.concatenate([self.ids, ids]), kind="stable")
            self.ids = np.concatenate([self.ids, ids])[order]
            self.vectors = np.ascontiguousarray(np.concatenate([self.vectors, vectors])[order])
        else:
            self.ids = np.concatenate([self.ids, ids])
            self.vectors = np.concatenate([self.vectors, vectors])

    def remove(self, ids: np.ndarray) -> bool:
        keep = ~np.isin(self.ids, ids)
        if not keep.all():
            self.ids = self.ids[keep]
            self.vectors = np.ascontiguousarray(self.vectors[keep])
        return True

    def positions(self, ids: np.ndarray) -> np.ndarray:
        """Row positions (ascending) of those ``ids`` that are in the index."""
        if not len(self.ids):
            return np.zeros(0, dtype=np.int64)
        ids = np.unique(ids)
        pos = np.minimum(np.searchsorted(self.ids, ids), len(self.ids) - 1)
        return np.asarray(pos[self.ids[pos] == ids])

    def search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        queries = np.asarray(queries, dtype=np.float32).reshape(-1, self.dim)
        if allowed is not None:
            rows = self.positions(np.asarray(allowed, dtype=np.int64))
            matrix, ids = self.vectors[rows], self.ids[rows]
        else:
            matrix, ids = self.vectors, self.ids
        nq, n = len(queries), len(ids)
        k_eff = min(k, n)
        out_s = np.full((nq, k), -np.inf, dtype=np.float32)
        out_i = np.full((nq, k), -1, dtype=np.int64)
        if k_eff == 0:
            return out_s, out_i
        for start in range(0, nq, QUERY_BLOCK):
            block = queries[start : start + QUERY_BLOCK]
            top_s, top = top_k(block, matrix, k_eff)
            out_s[start : start + len(block), :k_eff] = top_s
            out_i[start : start + len(block), :k_eff] = ids[top]
        return out_s, out_i

    def stored_ids(self) -> np.ndarray:
        return self.ids

    def write(self, f: BinaryIO) -> None:
        np.save(f, self.ids)  # the vectors are the database's: not a second copy here

    @classmethod
    def read(cls, f: BinaryIO, dim: int, vectors_of: VectorSource) -> ExactIndex:
        ix = cls(dim)
        ix.ids, ix.vectors = vectors_of(np.load(f))
        if ix.vectors.shape != (len(ix.ids), dim):
            raise ValueError(f"vectors of shape {ix.vectors.shape} for {len(ix.ids)} ids")
        return ix


class FaissIndex:
    """Approximate search with faiss: ``hnsw`` (HNSW, cannot remove) or ``ivf`` (IVF-Flat)."""

    def __init__(self, kind: str, dim: int, index: faiss.Index, trained_on: int = 0,
                 ids: np.ndarray | None = None, nprobe: int | None = None,
                 recall: float | None = None) -> None:
        self.kind = kind
        self.dim = dim
        self.index = index
        self.trained_on = trained_on
        self.ef_search = 128
        self.nprobe = nprobe  # IVF lists searched, chosen by tune()
        self.recall = recall  # recall@10 against exact search, measured by tune()
        # faiss does not list the ids an index holds; kept here (sorted) for catching up
        self.ids = np.zeros(0, dtype=np.int64) if ids is None else ids

    @classmethod
    def build(cls, kind: str, dim: int, sample: np.ndarray) -> FaissIndex:
        if kind == "hnsw":
            hnsw = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
            hnsw.hnsw.efConstruction = 80
            return cls(kind, dim, faiss.IndexIDMap2(hnsw))
        n = len(sample)
        nlist = max(1, min(int(4 * math.sqrt(n)), n // 39))
        ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(0)
        ivf.train(sample[rng.choice(n, size=min(n, nlist * 64), replace=False)])
        return cls(kind, dim, ivf, trained_on=n)

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        if len(ids):
            ids = np.asarray(ids, dtype=np.int64)
            self.index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), ids)
            self.ids = np.union1d(self.ids, ids)

    def remove(self, ids: np.ndarray) -> bool:
        if self.kind == "hnsw":
            return False
        ids = np.asarray(ids, dtype=np.int64)
        self.index.remove_ids(faiss.IDSelectorBatch(ids))
        self.ids = np.setdiff1d(self.ids, ids)
        return True

    def stored_ids(self) -> np.ndarray:
        return self.ids

    @property
    def nlist(self) -> int:
        return int(faiss.downcast_index(self.index).nlist)  # type: ignore[attr-defined]

    def search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None,
        nprobe: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Approximate search; with ``allowed`` (a filter) IVF visits every list, so a filtered
        search is exact among the allowed ids and finds ``k`` whenever ``k`` are allowed (a few
        lists could hold fewer than ``k`` of them)."""
        sel = faiss.IDSelectorBatch(np.asarray(allowed, dtype=np.int64)) if allowed is not None \
            else None
        params: Any
        if self.kind == "hnsw":
            params = faiss.SearchParametersHNSW()  # type: ignore[attr-defined]
            params.efSearch = max(self.ef_search, k)
        else:
            params = faiss.SearchParametersIVF()
            params.nprobe = self.nlist if sel is not None else (
                nprobe or self.nprobe or max(16, self.nlist // 8))
        if sel is not None:
            params.sel = sel
        return self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k, params=params)

    def tune(self, vectors: np.ndarray, *, target: float = 0.993, k: int = 10,
             sample: int = 512, seed: int = 0) -> float:
        """Choose the fewest IVF lists to search (``nprobe``) whose recall@``k`` against exact
        search reaches ``target`` on ``sample`` of the stored ``vectors`` used as queries (real
        vectors, not random ones); returns the recall measured. 0.993 leaves a margin so that
        other queries get 0.99 (bench/bench_ann.py: 0.9927 on held-out Quora questions). HNSW
        is left as it is."""
        from ..linalg import top_k

        if self.kind != "ivf" or len(vectors) <= k:
            return 1.0
        rng = np.random.default_rng(seed)
        queries = vectors[rng.choice(len(vectors), size=min(sample, len(vectors)), replace=False)]
        _, exact_pos = top_k(queries, vectors, k)
        exact = self.ids[exact_pos] if len(self.ids) == len(vectors) else exact_pos
        def measure(nprobe: int) -> float:
            _, got = self.search(queries, k, nprobe=nprobe)
            return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(got, exact)]))

        low, nprobe = 0, max(1, self.nlist // 64)  # low: known to fall short
        recall = measure(nprobe)
        while recall < target and nprobe < self.nlist:
            low, nprobe = nprobe, min(self.nlist, nprobe * 2)
            recall = measure(nprobe)
        while recall >= target and nprobe - low > max(1, nprobe // 8):  # narrow the last step
            mid = (low + nprobe) // 2
            r = measure(mid)
            if r >= target:
                nprobe, recall = mid, r
            else:
                low = mid
        self.nprobe, self.recall = nprobe, round(recall, 4)
        return recall

    def write(self, f: BinaryIO) -> None:
        np.save(f, self.ids)
        if self.kind == "ivf":  # the trained centroids and each id's list, not the vectors
            ivf = faiss.downcast_index(self.index)
            np.save(f, ivf.quantizer.reconstruct_n(0, ivf.nlist))  # type: ignore[attr-defined]
            np.save(f, self._lists())
        else:  # HNSW: its graph is the index; the file holds it whole
            np.save(f, faiss.serialize_index(self.index))

    def _lists(self) -> np.ndarray:
        """The IVF list of each id of ``self.ids`` (in that order)."""
        from faiss.contrib.inspect_tools import get_invlist

        ivf = faiss.downcast_index(self.index)
        ids, lists = [], []
        for lst in range(ivf.nlist):  # type: ignore[attr-defined]
            held, _ = get_invlist(ivf.invlists, lst)  # type: ignore[attr-defined]
            ids.append(np.asarray(held, dtype=np.int64))
            lists.append(np.full(len(held), lst, dtype=np.int64))
        every, where = np.concatenate(ids), np.concatenate(lists)
        return where[np.argsort(every, kind="stable")]

    @classmethod
    def read(cls, f: BinaryIO, kind: str, dim: int, trained_on: int, vectors_of: VectorSource,
             nprobe: int | None = None, recall: float | None = None) -> FaissIndex:
        ids = np.load(f)
        if kind != "ivf":
            index = faiss.deserialize_index(np.load(f))
            if index.ntotal != len(ids) or index.d != dim:
                raise ValueError(f"a faiss index of {index.ntotal} x {index.d} for {len(ids)} ids")
            return cls(kind, dim, index, trained_on, ids, nprobe, recall)
        centroids, lists = np.load(f), np.load(f)
        if centroids.ndim != 2 or centroids.shape[1] != dim or len(lists) != len(ids):
            raise ValueError("a damaged IVF index file")
        quantizer = faiss.IndexFlatIP(dim)
        quantizer.add(np.ascontiguousarray(centroids, dtype=np.float32))
        ivf = faiss.IndexIVFFlat(quantizer, dim, len(centroids), faiss.METRIC_INNER_PRODUCT)
        ivf.is_trained = True
        found, vectors = vectors_of(ids)  # ids the database no longer holds are left out
        keep = np.isin(ids, found, assume_unique=True)
        ids, lists = ids[keep], np.ascontiguousarray(lists[keep], dtype=np.int64)
        if len(ids):
            x = np.ascontiguousarray(vectors, dtype=np.float32)
            ivf.add_core(len(ids), faiss.swig_ptr(x), faiss.swig_ptr(ids),  # type: ignore[attr-defined]
                         faiss.swig_ptr(lists))
        return cls(kind, dim, ivf, trained_on, ids, nprobe, recall)


def new_index(kind: str, dim: int, sample: np.ndarray) -> VectorIndex:
    """An empty index of ``kind`` (``flat``, ``hnsw`` or ``ivf``); IVF trains on ``sample``."""
    if kind == "flat":
        return ExactIndex(dim)
    return FaissIndex.build(kind, dim, sample)


# The index file: a magic line, the length of a JSON header, the header, then the index. One
# file, replaced by rename, so the header always describes the index beside it.
# Version 3 holds no vectors for flat and IVF indexes (they are read from the database).
_MAGIC = b"NEARTEXT-INDEX 3\n"


def save_index(index: VectorIndex, path: Path, header: dict[str, Any]) -> None:
    """Write ``index`` with ``header`` (what it holds: generation, kind, ...) to ``path``
    atomically: a temporary file renamed into place, removed if anything fails."""
    head = json.dumps({**header, "kind": index.kind, "ntotal": index.ntotal,
                       "trained_on": getattr(index, "trained_on", 0),
                       "nprobe": getattr(index, "nprobe", None),
                       "recall": getattr(index, "recall", None)}).encode()
    with staged_file(path) as tmp, tmp.open("wb") as f:
        f.write(_MAGIC + struct.pack("<I", len(head)) + head)
        index.write(f)


def read_index_header(path: Path) -> dict[str, Any]:
    """The header of an index file (cheap: the index itself is not read); ValueError or
    OSError when the file is missing, of an older format or damaged."""
    with path.open("rb") as f:
        return _read_header(f)


def _read_header(f: BinaryIO) -> dict[str, Any]:
    if f.read(len(_MAGIC)) != _MAGIC:
        raise ValueError("not a neartext index file of this version")
    (n,) = struct.unpack("<I", f.read(4))
    header = json.loads(f.read(n))
    if not isinstance(header, dict):
        raise ValueError("damaged index header")
    return header


def load_index(path: Path, dim: int, vectors_of: VectorSource
               ) -> tuple[VectorIndex, dict[str, Any]]:
    """``(index, header)`` from a file written by :func:`save_index`, the vectors read with
    ``vectors_of`` (ids the database no longer holds are left out: the caller catches up);
    ValueError, OSError or RuntimeError (faiss) when it is unreadable."""
    with path.open("rb") as f:
        header = _read_header(f)
        kind = header["kind"]
        index: VectorIndex = (
            ExactIndex.read(f, dim, vectors_of) if kind == "flat" else
            FaissIndex.read(f, kind, dim, int(header.get("trained_on", 0)), vectors_of,
                            header.get("nprobe"), header.get("recall")))
    if index.ntotal > int(header.get("ntotal", -1)):
        raise ValueError("the index holds more vectors than its header says")
    return index, header
