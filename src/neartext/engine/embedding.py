"""``neartext embed``: a corpus file to a Parquet file of vectors, for other pipelines; in this
process, or on a Ray cluster (:mod:`neartext.engine.compute`) when one machine is not enough.

Rows are read and checked as ``neartext index`` reads them (a bad row is named with its number
before any embedding). The output has one row per text: ``id, start, end, hash, vector``, the
model's name and fingerprint in the file's metadata (the format of ``neartext export vectors``,
which ``neartext index --vectors vector --vectors-from same`` reads back). It is written
atomically: an interrupted run leaves nothing at the output path.

In this process the rows keep the corpus' order. On Ray, files are read by Ray tasks (a file
each, its rows longest text first) into Ray's object store, embedded by encoder actors and
streamed into the file batch by batch, in that order: the driver never holds the corpus nor
loads the model, so the corpus' size is bounded by the cluster, not by one machine.

Example:
    >>> from neartext.engine.embedding import embed_file                       # doctest: +SKIP
    >>> embed_file("demo/feedback.csv", "vectors.parquet", ray="local").rows  # doctest: +SKIP
    247
"""

from __future__ import annotations

import itertools
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from neartext.data.corpus import read_corpus
from neartext.data.hashing import text_hash
from neartext.data.vectors import vector_file
from neartext.encoders import EncoderSettings, canonical_name, load_encoder
from neartext.encoders.registry import resolve_model_path
from neartext.engine.compute import check_fingerprint, embed_rows_on_ray, ray_session, read_on_ray
from neartext.engine.ingest import EMBED_CHUNK
from neartext.errors import InputError
from neartext.util.progress import progress_bar
from neartext.util.tables import check_output_path

WRITE_BATCH = 4096


@dataclass
class EmbedReport:
    """What ``embed_file`` did."""

    output: str
    rows: int
    model: str
    fingerprint: str
    seconds: float
    on: str  # "this process" or the Ray address and actors

    def summary(self) -> str:
        return (f"wrote {self.rows} vectors of {self.model} to {self.output} in "
                f"{self.seconds:.1f} s ({self.on})")

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))


def embed_file(path: str | Path, output: str | Path, *, model: str = "default",
               text: list[str] | None = None, id_column: str | None = None,
               ray: str | None = None, actors: int = 2, batch_size: int = 256,
               gpus_per_actor: float = 0.0, encoding: str = "utf-8",
               progress: bool = False) -> EmbedReport:
    """Embed every row of ``path`` (a corpus file or directory) with ``model`` into ``output``
    (``.parquet``); with ``ray`` (``local``, ``auto`` or a cluster address) on ``actors`` encoder
    actors; ``progress``: rows done of all, rate and time left (:mod:`neartext.util.progress`)."""
    t0 = time.perf_counter()
    if actors < 1 or batch_size < 1:
        raise InputError("--actors and --batch-size must be at least 1")
    check_output_path(output, (".parquet",))
    settings = EncoderSettings(model=model, batch_size=min(batch_size, 64))
    if ray is not None:
        # the model is named here if it is not there; only the actors load it (their
        # fingerprint goes to the file): this process never needs torch or the model's memory
        resolve_model_path(settings.model)
        name = canonical_name(settings.model)
        rows, fingerprint = _embed_on_ray(path, output, settings, name, text, id_column,
                                          encoding, ray, actors, batch_size, gpus_per_actor,
                                          progress)
        return EmbedReport(str(output), rows, name, fingerprint, time.perf_counter() - t0,
                           f"Ray {ray}, {actors} actors")
    encoder = load_encoder(settings, deferred=True)
    name = canonical_name(encoder.settings.model)
    records = read_corpus(path, text, id_column, encoding=encoding)
    texts = [r.text for r in records]
    vectors = np.zeros((len(texts), encoder.dim), dtype=np.float32)
    with progress_bar(len(texts), "embedding", "text", enabled=progress) as bar:
        for start in range(0, len(texts), EMBED_CHUNK):
            part = texts[start : start + EMBED_CHUNK]
            vectors[start : start + len(part)] = encoder.encode(part, kind="document")
            bar.update(len(part))
    with vector_file(output, encoder.dim, name, encoder.fingerprint) as write:
        for start in range(0, len(records), WRITE_BATCH):
            write([{"id": r.id, "start": 0, "end": len(r.text), "hash": text_hash(r.text),
                    "vector": v.astype(np.float32).tolist()}
                   for r, v in zip(records[start:start + WRITE_BATCH],
                                   vectors[start:start + WRITE_BATCH])])
    return EmbedReport(str(output), len(records), name, encoder.fingerprint,
                       time.perf_counter() - t0, "this process")


def _embed_on_ray(path: str | Path, output: str | Path, settings: EncoderSettings, name: str,
                  text: list[str] | None, id_column: str | None, encoding: str, ray: str,
                  actors: int, batch_size: int, gpus_per_actor: float, progress: bool
                  ) -> tuple[int, str]:
    """Read by Ray tasks, embedded by encoder actors, streamed into the file as batches finish
    (each file's longest texts first): this process holds one batch at a time, never the
    corpus. Returns the rows and the model's fingerprint (the first batch's; every batch must
    carry the same)."""

    with ray_session(ray):
        ds, rows = read_on_ray(path, text, id_column, encoding=encoding)
        batches = embed_rows_on_ray(ds, settings, actors=actors, batch_size=batch_size,
                                    gpus_per_actor=gpus_per_actor)
        # closed inside the session: a write that fails (a full disk) must not leave Ray's
        # iterator to be cleaned up after Ray is gone
        with closing(batches), progress_bar(rows, "embedding", "text", enabled=progress) as bar:
            first = next(batches, None)
            if first is None:  # no rows: the schema still needs the model's dimension
                encoder = load_encoder(settings)
                dim, fingerprint = encoder.dim, encoder.fingerprint
            else:
                dim, fingerprint = int(first["vector"].shape[1]), str(first["fingerprint"][0])
            with vector_file(output, dim, name, fingerprint) as write:
                for b in itertools.chain([first] if first is not None else [], batches):
                    check_fingerprint(b, fingerprint, settings.model)
                    write([{"id": i, "start": 0, "end": int(n), "hash": h,
                            "vector": v.astype(np.float32).tolist()}
                           for i, n, h, v in zip(b["id"].tolist(), b["length"].tolist(),
                                                 b["hash"].tolist(), b["vector"])])
                    bar.update(len(b["id"]))
    return rows, fingerprint
