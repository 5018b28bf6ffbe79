"""How a local collection stores its vectors: the one place that turns vectors into the bytes
SQLite keeps and back.

``float32`` (the default) stores them as they are; ``float16`` halves the space (relative error
about 5e-4 per component); ``int8`` quarters it: each vector as 8-bit steps of its own largest
component, plus that scale. Search works on the decoded float32 vectors, so the index and every
score path are unchanged; bench/bench_ann.py measures what each costs in recall and score.

    >>> import numpy as np
    >>> c = codec("int8", 3)
    >>> v = np.array([[0.6, -0.8, 0.0]], dtype=np.float32)
    >>> [round(float(x), 2) for x in c.decode(c.encode(v))[0]]
    [0.6, -0.8, 0.0]
    >>> len(c.encode(v)[0]), len(codec("float32", 3).encode(v)[0])
    (7, 12)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from neartext.data.manifest import PRECISIONS, check_precision

__all__ = ["PRECISIONS", "VectorCodec", "codec"]


@dataclass(frozen=True)
class VectorCodec:
    """Encode ``(n, dim)`` float vectors to one ``bytes`` each, and decode them back."""

    precision: str
    dim: int

    @property
    def row_bytes(self) -> int:
        return {"float32": 4 * self.dim, "float16": 2 * self.dim, "int8": 4 + self.dim}[
            self.precision]

    def encode(self, vectors: np.ndarray) -> list[bytes]:
        v = np.asarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        if self.precision == "float32":
            return [row.tobytes() for row in v]
        if self.precision == "float16":
            return [row.tobytes() for row in v.astype(np.float16)]
        scale = np.abs(v).max(axis=1) / 127.0
        scale[scale == 0] = 1.0
        codes = np.clip(np.rint(v / scale[:, None]), -127, 127).astype(np.int8)
        return [s.tobytes() + c.tobytes() for s, c in zip(scale.astype(np.float32), codes)]

    def decode(self, blobs: Sequence[bytes], *, writeable: bool = True) -> np.ndarray:
        """``(len(blobs), dim)`` float32 vectors (a new, writeable array; with ``writeable``
        False, float32 ones may be a read-only view of the joined bytes: one copy less)."""
        if not blobs:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.decode_joined(b"".join(blobs), len(blobs), writeable=writeable)

    def decode_joined(self, raw: bytes, count: int, *, writeable: bool = True) -> np.ndarray:
        """:meth:`decode` of ``count`` vectors' bytes given one after the other in ``raw``.

        >>> c = codec("float16", 2)
        >>> c.decode_joined(b"".join(c.encode(np.ones((3, 2)))), 3).shape
        (3, 2)
        """
        if len(raw) != count * self.row_bytes:
            raise ValueError(f"stored vectors are not {self.precision} of dimension {self.dim}")
        if self.precision == "float32":
            view = np.frombuffer(raw, dtype=np.float32).reshape(-1, self.dim)
            return view.copy() if writeable else view
        if self.precision == "float16":
            return np.frombuffer(raw, dtype=np.float16).reshape(-1, self.dim).astype(np.float32)
        rows = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 4 + self.dim)
        scale = rows[:, :4].copy().view(np.float32)
        out: np.ndarray = rows[:, 4:].view(np.int8).astype(np.float32) * scale
        return out

    def decode_one(self, blob: bytes) -> np.ndarray:
        one: np.ndarray = self.decode([blob])[0]
        return one


def codec(precision: str, dim: int) -> VectorCodec:
    """The codec for ``precision`` (``float32``, ``float16`` or ``int8``); InputError naming the
    choices for anything else."""
    return VectorCodec(check_precision(precision), dim)
