"""One matrix product for every scoring path (search, mining)."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import faiss
import numpy as np

FEW_QUERIES = 20  # fewer queries than this are scored without a BLAS thread pool (see top_k)


def _torch_product(queries: np.ndarray, matrix: np.ndarray) -> Any:
    """``queries @ matrix.T`` as a torch tensor when torch is already loaded, else None."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    q = np.ascontiguousarray(queries, dtype=np.float32)
    m = np.ascontiguousarray(matrix, dtype=np.float32)
    if not (q.flags.writeable and m.flags.writeable):  # torch.from_numpy wants writeable arrays
        return None
    with torch.no_grad():
        return torch.from_numpy(q) @ torch.from_numpy(m).T


@contextmanager
def faiss_threads_for(n_queries: int) -> Iterator[None]:
    """faiss on one OpenMP thread while it answers fewer than :data:`FEW_QUERIES` queries.

    faiss splits its work by query, so for one query a second thread has nothing to do but
    wake and spin; when another process keeps the cores busy that costs milliseconds (measured
    on 2 cores beside a running encoder: an HNSW search at 20k took 8.0 ms p50 on two threads,
    0.11 ms on one). The setting is the calling thread's own (OpenMP), so concurrent searches of
    a server do not change each other's.
    """
    if n_queries >= FEW_QUERIES:
        yield
        return
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


_SMALL_WORK = threading.Lock()
_small_work_count = 0
_threads_before = 0


@contextmanager
def one_torch_thread(torch: Any) -> Iterator[None]:
    """torch on one intra-op thread while small tensors are worked on (training an adapter).

    torch splits an operation over its thread pool above a few tens of thousands of elements:
    a 384 x 384 adapter's every update, a wake-up of the second core for microseconds of work.
    Measured on 2 cores (one adapter, 247 pairs, 10 epochs): 5.0-5.7 s on two threads while the
    other core was busy, 2.5 s on one. torch's setting is the process's: nested or concurrent
    users share one count, and the last one out restores the thread count found by the first.
    """
    global _small_work_count, _threads_before
    with _SMALL_WORK:
        if _small_work_count == 0:
            _threads_before = torch.get_num_threads()
            torch.set_num_threads(1)
        _small_work_count += 1
    try:
        yield
    finally:
        with _SMALL_WORK:
            _small_work_count -= 1
            if _small_work_count == 0:
                torch.set_num_threads(_threads_before)


def scores(queries: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """``queries @ matrix.T`` as float32, shape ``(len(queries), len(matrix))``.

    When torch is loaded (it runs the encoder) the product runs on torch's thread pool: a second
    BLAS pool spinning next to torch's slows both (measured: 16 ms vs 12 ms p50 for encode + exact
    search over 100k vectors on 2 cores). Otherwise numpy's BLAS.
    """
    product = _torch_product(queries, matrix)
    if product is not None:
        return np.asarray(product.numpy())
    return np.asarray(queries @ matrix.T)


def inner_products(matrix: np.ndarray, vector: np.ndarray) -> np.ndarray:
    """``matrix @ vector`` as float32 on the calling thread (faiss's SIMD loop): no BLAS
    thread pool woken for one vector (one that another process kept waiting took 3 ms for
    1,500 x 384 where this takes 0.04; numpy's single-threaded ``einsum`` takes 0.12).

    >>> inner_products(np.eye(3, dtype=np.float32), np.array([1.0, 2.0, 3.0])).tolist()
    [1.0, 2.0, 3.0]
    """
    m = np.ascontiguousarray(matrix, dtype=np.float32)
    x = np.ascontiguousarray(vector, dtype=np.float32).reshape(-1)
    out = np.empty(len(m), dtype=np.float32)
    if len(m) and m.shape[1] == len(x):
        # (faiss's SWIG module declares no types: mypy sees no such function)
        faiss.fvec_inner_products_ny(  # type: ignore[attr-defined]
            faiss.swig_ptr(out), faiss.swig_ptr(x), faiss.swig_ptr(m), len(x), len(m))
    elif len(m):
        raise ValueError(f"a vector of {len(x)} dimensions against rows of {m.shape[1]}")
    return out


def top_k(queries: np.ndarray, matrix: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best scores of each query against ``matrix`` rows and their row positions,
    best first: ``(scores, positions)``, both of shape ``(len(queries), k)``; ``k <= len(matrix)``.

    A few queries go to faiss's scan (SIMD, on the calling thread), torch loaded or not:
    numpy's BLAS would wake a thread pool that keeps spinning after the product and slows
    whatever runs next (measured: an HNSW search right after a filtered one took 3.7 ms instead
    of 0.2 ms on 2 cores), and torch's pool took 4.2-4.6 ms for one query against 20,000
    vectors where the scan takes 1.2-1.5 (and 18.7-20.6 ms where it takes 15.9-18.2 with the
    query encoded by the torch model just before). A batch goes to torch's thread pool when
    torch is loaded (``topk`` is several times faster than numpy's single-threaded
    ``argpartition`` over 100k columns and needs no negated copy), else to numpy.
    """
    if len(queries) < FEW_QUERIES:
        with faiss_threads_for(len(queries)):
            found_s, found_i = faiss.knn(np.ascontiguousarray(queries, dtype=np.float32),
                                         np.ascontiguousarray(matrix, dtype=np.float32), k,
                                         metric=faiss.METRIC_INNER_PRODUCT)
        return found_s, found_i.astype(np.int64)
    product = _torch_product(queries, matrix)
    if product is not None:
        values, idx = sys.modules["torch"].topk(product, k, dim=1, largest=True, sorted=True)
        return values.numpy(), idx.numpy().astype(np.int64)
    s = scores(queries, matrix)
    n = s.shape[1]
    top = np.argpartition(-s, k - 1, axis=1)[:, :k] if k < n else np.broadcast_to(np.arange(n), s.shape)
    top_s = np.take_along_axis(s, top, axis=1)
    order = np.argsort(-top_s, axis=1, kind="stable")
    return np.take_along_axis(top_s, order, axis=1), np.take_along_axis(top, order, axis=1)
