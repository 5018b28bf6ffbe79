"""A collection's vectors out: ``neartext export vectors`` (what ``index --vectors`` reads back).

Example::

    export_vectors(Collection.open("feedback/"), "vectors.parquet")   # -> rows written
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from neartext.collection import Collection
from neartext.data.vectors import vector_file


def vector_rows(col: Collection, batch_size: int = 1024) -> Iterator[dict[str, Any]]:
    """Every passage's row for an export: id, start, end, content hash, vector (the model's:
    a current both-side adapter's mapping of the stored vectors is undone)."""
    _, adapter = col.current()
    for _docs, passages in col.store.export(batch_size):
        if not passages:
            continue
        vecs = np.stack([p.vector for p in passages]).astype(np.float32)
        if adapter is not None and adapter.documents_too:
            vecs = adapter.invert(vecs)
        for p, v in zip(passages, vecs):
            yield {"id": p.doc_id, "start": p.start, "end": p.end, "hash": p.hash,
                   "vector": v.tolist()}


def export_vectors(col: Collection, output: str | Path) -> int:
    """Write the collection's vectors to a Parquet file (atomically): one row per passage,
    ``id, start, end, hash, vector``, the model's name and fingerprint in the file's metadata;
    returns the number of rows."""
    n = 0
    m = col.manifest
    with vector_file(output, m.dim, m.model.name, m.model.fingerprint) as write:
        batch: list[dict[str, Any]] = []
        for row in vector_rows(col):
            batch.append(row)
            if len(batch) == 4096:
                write(batch)
                n += len(batch)
                batch = []
        if batch:
            write(batch)
            n += len(batch)
    return n
