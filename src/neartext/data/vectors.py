"""Vectors a user brings: checked once here before anything is written, and written out.

A corpus row may carry its vector (``Record.vector``; a list column of a ``.jsonl`` or
``.parquet`` corpus given with ``--vectors COLUMN``). neartext then stores that vector instead
of running the encoder. A vector is only comparable with the collection's others if the same
model made it, so the caller names the model (``vectors_from``: the collection's model name, its
fingerprint, or ``same``); a file written by ``neartext export vectors`` names it itself.

Example:
    >>> import numpy as np
    >>> from neartext.data.corpus import Record
    >>> rs = [Record("a", "hi", vector=np.array([3.0, 4.0]))]
    >>> checked_vectors(rs, 2, "rows").tolist()
    [[0.6000000238418579, 0.800000011920929]]
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from neartext.data.corpus import Record, as_vector
from neartext.errors import InputError, MissingExtra
from neartext.util.atomic import staged_file
from neartext.util.optional import arrow, parquet
from neartext.util.tables import check_output_path

FINGERPRINT_KEY = b"neartext.model_fingerprint"  # in the Parquet schema metadata of an export
MODEL_KEY = b"neartext.model"




def checked_vectors(records: Sequence[Record], dim: int, source: str) -> np.ndarray | None:
    """The records' own vectors, checked (all or none of them, ``dim`` numbers each, finite,
    not zero) and scaled to unit length as the collection's vectors are: one ``(n, dim)``
    float32 array in the records' order, or None when they bring none. Checked as one array
    (a million rows: no object per vector); an error names the first bad row."""
    given = sum(1 for r in records if r.vector is not None)
    if not given:
        return None
    if given != len(records):
        missing = next(r for r in records if r.vector is None)
        raise InputError(f"{source}: row {missing.where or missing.id!r} has no vector while "
                         f"{given} other rows have one; give a vector on every row or none")
    out = np.empty((len(records), dim), dtype=np.float32)
    for i, r in enumerate(records):
        v = r.vector
        if not (isinstance(v, np.ndarray) and v.ndim == 1 and v.size == dim):
            v = as_vector(v, _where(r, source))
            if v.size != dim:
                raise InputError(f"{_where(r, source)}: the vector has {v.size} numbers; the "
                                 f"collection's have {dim}")
        out[i] = v
    finite = np.isfinite(out).all(axis=1)
    if not finite.all():
        r = records[int(np.flatnonzero(~finite)[0])]
        v = np.asarray(r.vector, dtype=np.float64)
        bad = int(np.flatnonzero(~np.isfinite(v.astype(np.float32)))[0])
        raise InputError(f"{_where(r, source)}: the vector holds {v[bad]} at position {bad + 1}"
                         + ("" if not np.isfinite(v[bad]) else " (beyond 32-bit floats)"))
    norms = np.linalg.norm(out, axis=1)
    if not norms.all():
        r = records[int(np.flatnonzero(norms == 0)[0])]
        raise InputError(f"{_where(r, source)}: the vector is all zeros")
    out /= norms[:, None]
    return out


def _where(r: Record, source: str) -> str:
    return f"{source}: row {r.where}" if r.row else f"{source}: document {r.id!r}"


def query_vectors(vectors: Any, dim: int) -> np.ndarray:
    """Query vectors as a ``(n, dim)`` float32 array (one vector may be given flat); an
    :class:`InputError` for another dimension, NaN or infinity.

    >>> query_vectors([1.0, 0.0], 2).shape
    (1, 2)
    """
    try:
        v = np.asarray(vectors, dtype=np.float32)
    except (TypeError, ValueError):
        raise InputError("query vectors must be numbers") from None
    if v.ndim == 1:
        v = v[None, :]
    if v.ndim != 2 or v.shape[1] != dim:
        raise InputError(f"query vectors must have {dim} numbers each (got shape {v.shape})")
    bad = np.argwhere(~np.isfinite(v))
    if len(bad):
        raise InputError(f"query vector {bad[0][0] + 1}: {v[tuple(bad[0])]} at position "
                         f"{bad[0][1] + 1}")
    return np.ascontiguousarray(v)


# queries a search setting is tuned on at the least (neartext.store's tune_index): a query the
# graph misses outright is rare and costs a whole point of recall in a hundred queries (1M
# vectors: one of 300 real questions got 0.0 at ef_search 96; tuned on the 150 that did not
# hold it, the setting gave the other 150 recall 0.984). Several hundred are better.
MIN_TUNING_QUERIES = 100


def check_tuning_count(n: int) -> None:
    """Refuse fewer than :data:`MIN_TUNING_QUERIES` queries to tune a search setting on."""
    if n < MIN_TUNING_QUERIES:
        raise InputError(f"{n} queries to tune the search on: give at least "
                         f"{MIN_TUNING_QUERIES} (with fewer, one query is more than a point of "
                         "recall and the setting is chosen by chance)")


def tuning_vectors(vectors: Any, dim: int) -> np.ndarray:
    """Query vectors to tune a search setting on: :func:`query_vectors`, enough of them
    (:func:`check_tuning_count`), none all zeros.

    >>> tuning_vectors(np.eye(2).repeat(50, axis=0), 2).shape
    (100, 2)
    """
    q = query_vectors(vectors, dim)
    check_tuning_count(len(q))
    zero = np.flatnonzero(~np.linalg.norm(q, axis=1).astype(bool))
    if len(zero):
        raise InputError(f"query vector {zero[0] + 1}: all zeros")
    return q


def check_vectors_model(vectors_from: str | None, name: str, fingerprint: str) -> None:
    """Refuse vectors unless the caller said they come from the collection's model."""
    if vectors_from is None:
        raise InputError(f"the rows carry vectors: say which model made them with --vectors-from "
                         f"(the collection's model is {name}, fingerprint {fingerprint[:12]}; "
                         "'same' if they come from it)")
    if vectors_from not in ("same", name, fingerprint) and not (
            len(vectors_from) >= 8 and fingerprint.startswith(vectors_from)):
        raise InputError(f"vectors from {vectors_from} cannot go into a collection of {name} "
                         f"(fingerprint {fingerprint[:12]}): vectors of another model do not "
                         "compare with these; re-embed the texts instead")


def file_model(path: str | Path) -> tuple[str, str] | None:
    """``(fingerprint, name)`` of the model a Parquet file records (as ``neartext export
    vectors`` writes them), if it records one."""
    if Path(path).suffix.lower() != ".parquet":
        return None
    try:
        pq = parquet()
    except MissingExtra:
        return None
    meta = pq.read_schema(path).metadata or {}
    value = meta.get(FINGERPRINT_KEY)
    if not value:
        return None
    return value.decode(), (meta.get(MODEL_KEY) or b"").decode()


@contextlib.contextmanager
def vector_file(output: str | Path, dim: int, model: str, fingerprint: str
                ) -> Iterator[Callable[[list[dict[str, Any]]], None]]:
    """A Parquet file of vectors, written atomically (nothing at ``output`` unless the block
    completes): ``id, start, end, hash, vector`` rows, the model's name and fingerprint in the
    file's metadata (what ``neartext index --vectors`` reads back). Yields ``write(rows)``."""

    out = check_output_path(output, (".parquet",))
    pa, pq = arrow(), parquet()
    schema = pa.schema([("id", pa.string()), ("start", pa.int64()), ("end", pa.int64()),
                        ("hash", pa.string()), ("vector", pa.list_(pa.float32(), dim))],
                       metadata={FINGERPRINT_KEY: fingerprint.encode(), MODEL_KEY: model.encode()})
    with staged_file(out, ".parquet") as tmp, pq.ParquetWriter(tmp, schema) as writer:
        wrote = False

        def write(rows: list[dict[str, Any]]) -> None:
            nonlocal wrote
            writer.write_table(pa.Table.from_pylist(rows, schema=schema))
            wrote = True

        yield write
        if not wrote:  # an empty file still has its schema
            write([])


def file_model_of(path: str | Path, vectors: str | None, vectors_from: str | None) -> str | None:
    """Which model made a file's vectors: as the caller says, else as a ``neartext export
    vectors`` file records (a contradiction is refused)."""
    if vectors is None:
        return vectors_from

    recorded = file_model(path)
    if recorded is None:
        return vectors_from
    fingerprint, name = recorded
    if vectors_from not in (None, "same", name) and not fingerprint.startswith(vectors_from):
        raise InputError(f"{path}: its vectors were made by {name or 'the model'} (fingerprint "
                         f"{fingerprint[:12]}), not {vectors_from}")
    return fingerprint
