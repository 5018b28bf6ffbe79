"""``neartext embed``: a corpus file to a Parquet file of vectors, for other pipelines; in this
process, or on a Ray cluster (:mod:`neartext.compute`) when one machine is not enough.

Rows are read and checked as ``neartext index`` reads them (a bad row is named with its number
before any work starts). The output has one row per text: ``id, start, end, hash, vector``, the
model's name and fingerprint in the file's metadata (the format of ``neartext export vectors``,
which ``neartext index --vectors vector --vectors-from same`` reads back). It is written
atomically: an interrupted run leaves nothing at the output path.

Example:
    >>> from neartext.embedding import embed_file                       # doctest: +SKIP
    >>> embed_file("demo/feedback.csv", "vectors.parquet", ray="local").rows  # doctest: +SKIP
    247
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .corpus import read_corpus
from .encoders import EncoderSettings, canonical_name, load_encoder
from .errors import InputError
from .ingest import EMBED_CHUNK, text_hash
from .progress import progress_bar
from .vectors import vector_file

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
    actors; ``progress``: rows done of all, rate and time left (:mod:`neartext.progress`)."""
    t0 = time.perf_counter()
    if actors < 1 or batch_size < 1:
        raise InputError("--actors and --batch-size must be at least 1")
    records = read_corpus(path, text, id_column, encoding=encoding)
    texts = [r.text for r in records]
    # the model is loaded here first: it must exist (named if not) and it gives the fingerprint
    settings = EncoderSettings(model=model, batch_size=min(batch_size, 64))
    encoder = load_encoder(settings)
    vectors = np.zeros((len(texts), encoder.dim), dtype=np.float32)
    with progress_bar(len(texts), "embedding", "text", enabled=progress) as bar:
        if ray is None:
            for start in range(0, len(texts), EMBED_CHUNK):
                part = texts[start : start + EMBED_CHUNK]
                vectors[start : start + len(part)] = encoder.encode(part, kind="document")
                bar.update(len(part))
            on = "this process"
        else:
            from .compute import embed_stream, ray_session

            with ray_session(ray):
                for rows, vecs in embed_stream(texts, encoder.settings, actors=actors,
                                               batch_size=batch_size,
                                               gpus_per_actor=gpus_per_actor):
                    vectors[rows] = vecs
                    bar.update(len(rows))
            on = f"Ray {ray}, {actors} actors"
    name = canonical_name(encoder.settings.model)
    with vector_file(output, encoder.dim, name, encoder.fingerprint) as write:
        for start in range(0, len(records), WRITE_BATCH):
            write([{"id": r.id, "start": 0, "end": len(r.text), "hash": text_hash(r.text),
                    "vector": v.astype(np.float32).tolist()}
                   for r, v in zip(records[start:start + WRITE_BATCH],
                                   vectors[start:start + WRITE_BATCH])])
    return EmbedReport(str(output), len(records), name, encoder.fingerprint,
                       time.perf_counter() - t0, on)
