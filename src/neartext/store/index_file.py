"""The index file of a local collection: a magic line, the length of a JSON header, the header
(what the index holds: generation, kind, vectors, search setting), then the index as
:meth:`VectorIndex.write` writes it. One file, replaced by rename, so the header always
describes the index beside it.

Example::

    save_index(index, path / "index.bin", {"generation": 7})
    index, header = load_index(path / "index.bin", 384, vectors_of)   # header["generation"] == 7
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any, BinaryIO

from neartext.store.vector_index import ExactIndex, FaissIndex, VectorIndex, VectorSource
from neartext.util.atomic import staged_file

# Version 3 holds no vectors for flat and IVF indexes (they are read from the database); version 4
# holds an HNSW index as its graph without the live vectors.
_MAGIC = b"NEARTEXT-INDEX 4\n"


def save_index(index: VectorIndex, path: Path, header: dict[str, Any]) -> None:
    """Write ``index`` with ``header`` (what it holds: generation, kind, ...) to ``path``
    atomically: a temporary file renamed into place, removed if anything fails."""
    head = json.dumps({**header, "kind": index.kind, "ntotal": index.ntotal,
                       "trained_on": getattr(index, "trained_on", 0),
                       "nprobe": getattr(index, "nprobe", None),
                       "recall": getattr(index, "recall", None),
                       "tuned_on": getattr(index, "tuned_on", 0),
                       "ef_search": getattr(index, "ef_search", None) if index.kind == "hnsw"
                       else None}).encode()
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
                            header.get("nprobe"), header.get("recall"), header.get("ef_search")))
    if index.ntotal > int(header.get("ntotal", -1)):
        raise ValueError("the index holds more vectors than its header says")
    return index, header
