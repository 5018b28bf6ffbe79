"""Vector indexes behind one small interface: an exact numpy index and faiss ANN indexes.

The exact index is the default and the oracle that approximate ones are tested against. It keeps
the vectors in one contiguous matrix and scores queries with a BLAS matrix product, which on a
small CPU beats faiss's single-query flat scan (faiss uses BLAS only for batches of 20+ queries).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, BinaryIO, Protocol

import faiss
import numpy as np
from faiss.contrib.inspect_tools import get_invlist

from neartext.util.linalg import faiss_threads_for, top_k

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


# sorted ids -> chunks of (the ids found, their vectors in that order), ascending: how an index
# file's vectors are read back from the database (a chunk at a time: no second copy of them all)
VectorSource = Callable[[np.ndarray], Iterator[tuple[np.ndarray, np.ndarray]]]


def gathered(chunks: Iterable[tuple[np.ndarray, np.ndarray]], n: int, dim: int
             ) -> tuple[np.ndarray, np.ndarray]:
    """A :data:`VectorSource`'s chunks for at most ``n`` ids as ``(ids, vectors)``, each
    filled into one array."""
    ids = np.empty(n, dtype=np.int64)
    out = np.empty((n, dim), dtype=np.float32)
    k = 0
    for found, vectors in chunks:
        ids[k:k + len(found)] = found
        out[k:k + len(found)] = vectors
        k += len(found)
    return ids[:k], out[:k]


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
        wanted = np.load(f)
        ix.ids, ix.vectors = gathered(vectors_of(wanted), len(wanted), dim)
        if ix.vectors.shape != (len(ix.ids), dim):
            raise ValueError(f"vectors of shape {ix.vectors.shape} for {len(ix.ids)} ids")
        return ix


HNSW_M = 16  # graph degree: at 20k Quora vectors M=16 and M=32 reach the same recall, M=16 builds faster
# ... and from this many vectors a graph is built with degree HNSW_M_LARGE: on 1M vectors
# (bench_scale's mixed set, 512 held-out rows) M=32 reached recall@10 0.9936 at ef_search 768
# (2.46 ms p50) where M=16 reached 0.9898 at 1024 (3.07 ms), built in about the same time; on
# 100k M=32 gained nothing and built 25% slower (0.9922 at ef 256, 0.83 ms, against 0.9902, 0.65 ms)
HNSW_M_LARGE = 32
LARGE_GRAPH = 500_000


def graph_degree(n: int) -> int:
    """The HNSW degree ``M`` for a graph of ``n`` vectors.

    >>> graph_degree(20_000), graph_degree(1_000_000)
    (16, 32)
    """
    return HNSW_M_LARGE if n >= LARGE_GRAPH else HNSW_M
MAX_TOMBSTONES = 0.25  # removed HNSW nodes (kept for routing) beyond which the graph is rebuilt
SUBSET_EXACT_MAX = 200_000  # a filter keeping at most this many vectors is searched exactly


class FaissIndex:
    """Approximate search with faiss: ``hnsw`` (an HNSW graph) or ``ivf`` (IVF-Flat).

    HNSW cannot unlink a node, so a removed id becomes a tombstone: still a waypoint of the graph,
    never a result; past :data:`MAX_TOMBSTONES` of the nodes the caller rebuilds (``remove``
    returns False). A filtered search over an HNSW index is exact among the allowed vectors
    (one product over them, gathered once per filter), so it returns ``k`` whenever ``k`` exist.
    """

    def __init__(self, kind: str, dim: int, index: faiss.Index, trained_on: int = 0,
                 ids: np.ndarray | None = None, nprobe: int | None = None,
                 recall: float | None = None, ef_search: int | None = None) -> None:
        self.kind = kind
        self.dim = dim
        self.index: Any = index  # faiss's Python types do not name their subclasses' members
        self.trained_on = trained_on
        self.ef_search = ef_search or 64  # HNSW candidates kept, chosen by tune()
        self.nprobe = nprobe  # IVF lists searched, chosen by tune()
        self.recall = recall  # recall@10 against exact search, measured by tune()
        self.tuned_on = 0  # given queries tune() measured it on (0: rows held out or sampled)
        # faiss does not list the ids an index holds; kept here (sorted) for catching up
        self.ids = np.zeros(0, dtype=np.int64) if ids is None else ids
        self.deleted = np.zeros(0, dtype=np.int64)  # HNSW tombstones, sorted
        self._not_deleted: Any = None  # the selector excluding them, made once per change
        self._subsets: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    @classmethod
    def build(cls, kind: str, dim: int, sample: np.ndarray, m: int = HNSW_M) -> FaissIndex:
        """An empty index of ``kind``: IVF trained on ``sample``; HNSW of degree ``m``."""
        if kind == "hnsw":
            return cls(kind, dim, faiss.IndexIDMap2(_new_hnsw(dim, m)))
        n = len(sample)
        nlist = max(1, min(int(4 * math.sqrt(n)), n // 39))
        ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(0)
        ivf.train(sample[rng.choice(n, size=min(n, nlist * 64), replace=False)])
        return cls(kind, dim, ivf, trained_on=n)

    @property
    def ntotal(self) -> int:
        return len(self.ids)

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        if len(ids):
            ids = np.asarray(ids, dtype=np.int64)
            self.index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), ids)
            if (not len(self.ids) or ids[0] > self.ids[-1]) and (ids[1:] > ids[:-1]).all():
                self.ids = np.concatenate([self.ids, ids])  # (a build's chunks come in order)
            else:
                self.ids = np.union1d(self.ids, ids)
            self._subsets.clear()

    def remove(self, ids: np.ndarray) -> bool:
        ids = np.intersect1d(np.asarray(ids, dtype=np.int64), self.ids)
        if self.kind == "hnsw":
            if len(self.deleted) + len(ids) > MAX_TOMBSTONES * (len(self.ids) + len(self.deleted)):
                return False
            self.deleted = np.union1d(self.deleted, ids)
            self._not_deleted = None
        else:
            self.index.remove_ids(faiss.IDSelectorBatch(ids))
        self.ids = np.setdiff1d(self.ids, ids, assume_unique=True)
        self._subsets.clear()
        return True

    def stored_ids(self) -> np.ndarray:
        return self.ids

    @property
    def nlist(self) -> int:
        return int(faiss.downcast_index(self.index).nlist)  # type: ignore[attr-defined]

    def search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None,
        nprobe: int | None = None, ef_search: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Approximate search. With ``allowed`` (a filter) the search is exact among the
        allowed ids and finds ``k`` whenever ``k`` are allowed: HNSW scores the allowed
        vectors directly, IVF visits every list (a few lists could hold fewer than ``k``)."""
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dim)
        params: Any
        if self.kind == "hnsw":
            if allowed is not None and len(allowed) <= SUBSET_EXACT_MAX:
                return self._search_subset(queries, k, allowed)
            params = faiss.SearchParametersHNSW()  # type: ignore[attr-defined]
            params.efSearch = max(ef_search or self.ef_search, k)
            if allowed is not None:
                params.sel = faiss.IDSelectorBatch(np.asarray(allowed, dtype=np.int64))
                params.efSearch = max(params.efSearch, 4 * k)
            elif len(self.deleted):
                if self._not_deleted is None:
                    self._not_deleted = faiss.IDSelectorNot(faiss.IDSelectorBatch(self.deleted))
                params.sel = self._not_deleted
        else:
            params = faiss.SearchParametersIVF()
            if allowed is not None:
                params.sel = faiss.IDSelectorBatch(np.asarray(allowed, dtype=np.int64))
            params.nprobe = self.nlist if allowed is not None else (
                nprobe or self.nprobe or max(16, self.nlist // 8))
        with faiss_threads_for(len(queries)):
            found_s, found_i = self.index.search(queries, k, params=params)
        return found_s, found_i

    def _search_subset(self, queries: np.ndarray, k: int, allowed: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray]:
        """Exact top ``k`` among the ``allowed`` ids held; the gathered vectors are kept for
        the same ``allowed`` array (the store caches one per filter and generation)."""
        got = self._subsets.get(id(allowed))
        if got is None or got[0] is not allowed:
            hnsw: Any = faiss.downcast_index(self.index.index)
            labels = faiss.vector_to_array(self.index.id_map)
            order = np.argsort(labels, kind="stable")
            want = np.intersect1d(np.asarray(allowed, dtype=np.int64), self.ids)
            rows = order[np.searchsorted(labels, want, sorter=order)]
            matrix = _hnsw_vectors(hnsw, self.dim)[rows]
            if len(self._subsets) >= 4:
                self._subsets.pop(next(iter(self._subsets)))
            got = self._subsets[id(allowed)] = (allowed, matrix, want)
        _, matrix, ids = got
        out_s = np.full((len(queries), k), -np.inf, dtype=np.float32)
        out_i = np.full((len(queries), k), -1, dtype=np.int64)
        kk = min(k, len(ids))
        if kk:
            s, pos = top_k(queries, matrix, kk)
            out_s[:, :kk], out_i[:, :kk] = s, ids[pos]
        return out_s, out_i

    def tune(self, vectors: np.ndarray | None, *, queries: np.ndarray | None = None,
             exact: np.ndarray | None = None, target: float = 0.993, k: int = 10,
             sample: int = 512, seed: int = 0, bound: float | None = None) -> float:
        """Choose the cheapest search setting (IVF: lists searched, ``nprobe``; HNSW:
        candidates kept, ``ef_search``) whose recall@``k`` against exact search over the held
        ``vectors`` reaches ``target``; returns the recall measured. 0.993 leaves a margin so
        that other queries get 0.99.

        ``queries`` should be real vectors the index does not hold (:func:`build_index` holds
        a sample out while it tunes an HNSW graph): a stored vector is too easy a query for a
        graph (it is a node, its neighbours one hop away). Without them, ``sample`` of the
        stored vectors are the queries, which suits IVF (held-out Quora questions then get
        0.9927, bench/bench_ann.py). ``exact``: the queries' exact neighbours (ids), when the
        caller has them (then ``vectors`` may be None). ``bound``: instead of the mean reaching
        ``target``, its one-sided 95% lower bound over the queries reaches ``bound``: few or
        uneven queries ask for more. It cannot see a hard query the sample lacks (150 real
        questions at 100,000 vectors chose ef_search 80, where the other 150 got 0.987)."""
        if (self.ntotal if vectors is None else len(vectors)) <= k:
            return 1.0
        rng = np.random.default_rng(seed)
        if queries is None or exact is None:
            if vectors is None:
                raise ValueError("tune needs the vectors or the queries and their neighbours")
            if queries is None:
                queries = vectors[rng.choice(len(vectors), size=min(sample, len(vectors)),
                                             replace=False)]
            if exact is None:
                _, exact_pos = top_k(queries, vectors, k)
                exact = self.ids[exact_pos] if len(self.ids) == len(vectors) else exact_pos
        hnsw = self.kind == "hnsw"

        def measure(setting: int) -> tuple[float, bool]:
            _, got = (self.search(queries, k, ef_search=setting) if hnsw
                      else self.search(queries, k, nprobe=setting))
            each = np.array([len(set(a) & set(b)) / k for a, b in zip(got, exact)])
            mean = float(each.mean())
            if bound is None:
                return mean, mean >= target
            # one-sided 95% lower bound of the mean over queries like these
            sd = float(each.std(ddof=1)) if len(each) > 1 else 0.0
            return mean, mean - 1.645 * sd / math.sqrt(len(each)) >= bound

        top = 1024 if hnsw else self.nlist
        low, setting = (0, 16) if hnsw else (0, max(1, self.nlist // 64))  # low: known short
        recall, enough = measure(setting)
        while not enough and setting < top:
            low, setting = setting, min(top, setting * 2)
            recall, enough = measure(setting)
        while enough and setting - low > max(1, setting // 8):  # narrow the last step
            mid = (low + setting) // 2
            r, ok = measure(mid)
            if ok:
                setting, recall = mid, r
            else:
                low = mid
        if hnsw:
            self.ef_search = max(setting, k)
        else:
            self.nprobe = setting
        self.recall = round(recall, 4)
        return recall

    def write(self, f: BinaryIO) -> None:
        np.save(f, self.ids)
        if self.kind == "ivf":  # the trained centroids and each id's list, not the vectors
            ivf = faiss.downcast_index(self.index)
            np.save(f, ivf.quantizer.reconstruct_n(0, ivf.nlist))  # type: ignore[attr-defined]
            np.save(f, self._lists())
            return
        # HNSW: the graph and each node's id; of the vectors only the tombstones' (the database
        # no longer has them), the live ones are the database's
        hnsw: Any = faiss.downcast_index(self.index.index)
        labels = faiss.vector_to_array(self.index.id_map).astype(np.int64)
        dead = np.flatnonzero(np.isin(labels, self.deleted))
        g = hnsw.hnsw
        np.save(f, labels)
        np.save(f, dead)
        np.save(f, _hnsw_vectors(hnsw, self.dim)[dead])
        for part in _HNSW_ARRAYS:
            np.save(f, faiss.vector_to_array(getattr(g, part)))
        np.save(f, np.array([g.entry_point, g.max_level, g.nb_neighbors(1)], dtype=np.int64))

    def _lists(self) -> np.ndarray:
        """The IVF list of each id of ``self.ids`` (in that order)."""

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
             nprobe: int | None = None, recall: float | None = None,
             ef_search: int | None = None) -> FaissIndex:
        ids = np.load(f)
        if kind == "hnsw":
            return cls._read_hnsw(f, dim, ids, vectors_of, recall, ef_search)
        if kind != "ivf":
            raise ValueError(f"unknown index kind {kind!r}")
        centroids, lists = np.load(f), np.load(f)
        if centroids.ndim != 2 or centroids.shape[1] != dim or len(lists) != len(ids):
            raise ValueError("a damaged IVF index file")
        quantizer = faiss.IndexFlatIP(dim)
        quantizer.add(np.ascontiguousarray(centroids, dtype=np.float32))
        ivf = faiss.IndexIVFFlat(quantizer, dim, len(centroids), faiss.METRIC_INNER_PRODUCT)
        ivf.is_trained = True
        # ids the database no longer holds are left out
        found, vectors = gathered(vectors_of(ids), len(ids), dim)
        keep = np.isin(ids, found, assume_unique=True)
        ids, lists = ids[keep], np.ascontiguousarray(lists[keep], dtype=np.int64)
        if len(ids):
            x = np.ascontiguousarray(vectors, dtype=np.float32)
            ivf.add_core(len(ids), faiss.swig_ptr(x), faiss.swig_ptr(ids),  # type: ignore[attr-defined]
                         faiss.swig_ptr(lists))
        return cls(kind, dim, ivf, trained_on, ids, nprobe, recall)

    @classmethod
    def _read_hnsw(cls, f: BinaryIO, dim: int, ids: np.ndarray, vectors_of: VectorSource,
                   recall: float | None, ef_search: int | None) -> FaissIndex:
        """The graph from the file, the live nodes' vectors from the database. A node whose
        vector the database no longer has (another process deleted it since the file was
        saved) keeps a zero vector and becomes a tombstone.

        The graph is read, and its storage made, on a second thread while this one reads the
        vectors (faiss and numpy let go of the GIL): at a million vectors the storage's 1.5 GB
        take a second of page faults, the database's rows as long. Vectors read before the
        storage is there wait for it (at most half of them; then the reads wait)."""
        labels, dead, dead_vectors = np.load(f), np.load(f), np.load(f)
        n = len(labels)
        if dead_vectors.shape != (len(dead), dim) or len(ids) + len(dead) != n:
            raise ValueError("a damaged HNSW index file")

        made = threading.Event()  # the storage is there (the graph may still be filled)

        def read_graph() -> Any:
            parts = {name: np.load(f) for name in _HNSW_ARRAYS}
            entry_point, max_level, m = (int(v) for v in np.load(f))
            if (m not in (HNSW_M, HNSW_M_LARGE) or len(parts["levels"]) != n
                    or len(parts["offsets"]) != n + 1):
                raise ValueError("a damaged HNSW index file")
            hnsw = _new_hnsw(dim, m)
            index = faiss.IndexIDMap2(hnsw)  # (wraps an empty index only: filled now)
            flat: Any = faiss.downcast_index(hnsw.storage)  # the vectors go straight into it
            flat.codes.resize(n * dim * 4)  # (zeroed)
            flat.ntotal = hnsw.ntotal = n
            storage.append(_hnsw_vectors(hnsw, dim))  # (a view of it)
            made.set()
            for name, values in parts.items():
                target = getattr(hnsw.hnsw, name)
                target.clear()
                faiss.copy_array_to_vector(values, target)
            hnsw.hnsw.entry_point, hnsw.hnsw.max_level = entry_point, max_level
            return index

        storage: list[np.ndarray] = []
        order = np.argsort(labels, kind="stable")
        found_parts: list[np.ndarray] = []
        placed: list[np.ndarray] = []  # their positions in the graph
        waiting: list[tuple[np.ndarray, np.ndarray]] = []  # (positions, vectors) read before
        held = 0  # the storage was made, and their bytes
        with ThreadPoolExecutor(1) as pool:
            graph = pool.submit(read_graph)

            def flush() -> np.ndarray:
                """The storage, once made, with the vectors waiting written into it."""
                while not made.wait(0.01):
                    if graph.done():
                        graph.result()  # raises what the thread raised
                for at, got in waiting:
                    storage[0][at] = got
                waiting.clear()
                return storage[0]

            for found_part, vectors in vectors_of(ids):
                at = order[np.searchsorted(labels, found_part, sorter=order)]
                found_parts.append(found_part)
                placed.append(at)
                waiting.append((at, vectors))
                held += vectors.nbytes
                if made.is_set() or graph.done() or 2 * held >= n * dim * 4:
                    flush()
            matrix = flush()
            index = graph.result()  # (raises what the thread raised)
        found = np.concatenate(found_parts) if found_parts else np.zeros(0, dtype=np.int64)
        unset = np.ones(n, dtype=bool)
        if placed:
            unset[np.concatenate(placed)] = False
        matrix[dead] = dead_vectors
        unset[dead] = False
        matrix[unset] = 0.0  # nodes whose vector the database no longer has
        faiss.copy_array_to_vector(labels.astype(np.int64), index.id_map)
        index.ntotal = n
        index.construct_rev_map()
        out = cls("hnsw", dim, index, 0, found, None, recall, ef_search)
        out.deleted = np.union1d(labels[dead], np.setdiff1d(ids, found, assume_unique=True))
        return out


# the parts of faiss's HNSW structure saved in an index file (the rest is set by M)
_HNSW_ARRAYS = ("assign_probas", "cum_nneighbor_per_level", "levels", "offsets", "neighbors")


def _hnsw_vectors(hnsw: Any, dim: int) -> np.ndarray:
    """The vectors an HNSW index holds, by internal position (a view, not a copy)."""
    flat: Any = faiss.downcast_index(hnsw.storage)
    if hnsw.ntotal == 0:
        return np.zeros((0, dim), dtype=np.float32)
    return np.asarray(faiss.rev_swig_ptr(flat.get_xb(), hnsw.ntotal * dim)).reshape(-1, dim)


def _reserve(hnsw: Any, n: int) -> None:
    """Room in an empty HNSW index for ``n`` vectors and their links (level 0: 2M a node, the
    levels above about one more), so that adding chunks never copies a grown array while the
    old one is held (100,000 vectors added 16,384 at a time peaked at 235 MB over the start,
    against 162 MB reserved). Resizing down keeps the room."""
    flat: Any = faiss.downcast_index(hnsw.storage)
    for array, size in ((flat.codes, n * flat.code_size),
                        (hnsw.hnsw.neighbors, n * (hnsw.hnsw.nb_neighbors(0) + 2))):
        array.resize(size)
        array.resize(0)


def _new_hnsw(dim: int, m: int = HNSW_M) -> Any:
    hnsw = faiss.IndexHNSWFlat(dim, m, faiss.METRIC_INNER_PRODUCT)
    # 200 (as Milvus): on 100k real sentence vectors, held-out recall@10 0.992 at ef 128 where
    # 80 needed ef 640 for 0.988; building takes twice as long
    hnsw.hnsw.efConstruction = 200
    return hnsw


def build_index(kind: str, dim: int, vectors: np.ndarray, ids: np.ndarray,
                held_out: int = 512, seed: int = 0) -> VectorIndex:
    """An index of ``kind`` holding ``vectors`` under ``ids``, its search setting tuned (an
    HNSW graph as :func:`build_hnsw` builds it)."""
    if kind == "hnsw":
        return build_hnsw(dim, (vectors[i:i + ADD_ROWS] for i in range(0, len(vectors), ADD_ROWS)),
                          ids, held_out=held_out, seed=seed)
    index = new_index(kind, dim, vectors)
    index.add(vectors, np.asarray(ids, dtype=np.int64))
    if isinstance(index, FaissIndex):
        index.tune(vectors)
    return index


# vectors given to faiss at a time when a graph is built (a new array of them each time): at
# 100,000 given vectors a build peaked at 580 MB with 16,384 against 632 MB with 65,536
ADD_ROWS = 16_384


def build_hnsw(dim: int, chunks: Iterable[np.ndarray], ids: np.ndarray, *,
               held_out: int = 512, seed: int = 0) -> FaissIndex:
    """An HNSW graph of vectors that come a chunk at a time (in the order of ``ids``), so that
    besides the graph's own copy no array of them all is needed (a million 384-number vectors
    are 1.5 GB). It is built without ``held_out`` of them (at most a tenth), tuned with those as
    queries (real vectors it does not hold, like a user's query; their exact neighbours by a
    scan of the graph's vectors), then given them. Its degree is :func:`graph_degree` of
    their number."""
    ids = np.asarray(ids, dtype=np.int64)
    n_held = min(held_out, len(ids) // 10)
    held = np.zeros(len(ids), dtype=bool)
    if n_held >= 10:
        held[np.random.default_rng(seed).choice(len(ids), n_held, replace=False)] = True
    index = FaissIndex.build("hnsw", dim, np.zeros((0, dim), dtype=np.float32),
                             m=graph_degree(len(ids)))
    _reserve(faiss.downcast_index(index.index.index), len(ids))
    queries: list[np.ndarray] = []
    start = 0
    for chunk in chunks:
        end = start + len(chunk)
        h = held[start:end]
        index.add(chunk[~h] if h.any() else chunk, ids[start:end][~h])
        queries.append(np.array(chunk[h], dtype=np.float32))
        start = end
    if start != len(ids):
        raise ValueError(f"{start} vectors for {len(ids)} ids")
    q = np.concatenate(queries) if queries else np.zeros((0, dim), dtype=np.float32)
    if n_held >= 10 and index.ntotal > 10:
        graph: Any = index.index
        stored = _hnsw_vectors(faiss.downcast_index(graph.index), dim)
        _, pos = faiss.knn(q, stored, 10, metric=faiss.METRIC_INNER_PRODUCT)
        index.tune(stored, queries=q, exact=faiss.vector_to_array(graph.id_map)[pos])
    elif index.ntotal:
        index.tune(_hnsw_vectors(faiss.downcast_index(index.index.index), dim))
    index.add(q, ids[held])
    return index


def new_index(kind: str, dim: int, sample: np.ndarray) -> VectorIndex:
    """An empty index of ``kind`` (``flat``, ``hnsw`` or ``ivf``); IVF trains on ``sample``."""
    if kind == "flat":
        return ExactIndex(dim)
    return FaissIndex.build(kind, dim, sample)
