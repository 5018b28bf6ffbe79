"""One matrix product for every scoring path (search, mining)."""

from __future__ import annotations

import sys

import numpy as np


def scores(queries: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """``queries @ matrix.T`` as float32, shape ``(len(queries), len(matrix))``.

    When torch is loaded (it runs the encoder) the product runs on torch's thread pool: a second
    BLAS pool spinning next to torch's slows both (measured: 16 ms vs 12 ms p50 for encode + exact
    search over 100k vectors on 2 cores). Otherwise numpy's BLAS.
    """
    torch = sys.modules.get("torch")
    if torch is not None:
        q = np.ascontiguousarray(queries, dtype=np.float32)
        m = np.ascontiguousarray(matrix, dtype=np.float32)
        if q.flags.writeable and m.flags.writeable:
            with torch.no_grad():
                return (torch.from_numpy(q) @ torch.from_numpy(m).T).numpy()
    return queries @ matrix.T
