"""What a new collection is made of, decided before it is built: the corpus read and cleaned
first (bad input fails before a model loads), the store created with the manifest of its
encoder and settings, and the options that only apply when creating.

Example::

    parts, vectors_from, hint = corpus_first("demo/feedback.csv", ["text"], "id")
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from neartext.data.address import Address
from neartext.data.cleaning import CleaningOptions, chunk_spans
from neartext.data.corpus import id_column_hint
from neartext.data.manifest import Manifest
from neartext.data.ranking import check_threshold
from neartext.data.vectors import file_model_of
from neartext.encoders import Encoder, EncoderSettings, canonical_name, load_encoder, vectors_model
from neartext.engine.compute import RayCompute
from neartext.engine.ingest import Part, read_parts
from neartext.errors import InputError, ModelMismatch
from neartext.store import Store
from neartext.store.codec import codec
from neartext.store.factory import create_store

#: options of ``index`` that shape a new collection, refused for an existing one
SHAPING = ("chunk", "overlap", "index", "cleaning", "milvus", "precision")


def corpus_first(corpus: str | Path, text: Sequence[str] | None, id_column: str | None, *,
                 encoding: str = "utf-8", vectors: str | None = None,
                 vectors_from: str | None = None, cleaning: CleaningOptions | None = None,
                 compute: RayCompute | None = None, chunk: int | None = None, overlap: int = 0,
                 skip_near_duplicates: float | None = None
                 ) -> tuple[Iterator[Part], str | None, str | None]:
    """The corpus of a new collection, its first part read and cleaned now (on Ray, a
    directory in parts): the parts, which model made the rows' vectors, and a hint about the
    id column. Options are checked first."""
    check_threshold(skip_near_duplicates)
    if chunk is not None:
        chunk_spans("x", chunk, overlap)  # validates size/overlap
    parts = read_parts(corpus, text, id_column, encoding=encoding, vectors=vectors,
                       cleaning=cleaning or CleaningOptions(), compute=compute, in_parts=True)
    first = next(parts)
    hint = id_column_hint(corpus, first.records, id_column)
    return itertools.chain([first], parts), file_model_of(corpus, vectors, vectors_model(vectors_from)), hint


def new_store(p: Address, model: str | EncoderSettings | Encoder, chunk: int | None,
              overlap: int, index: str, cleaning: CleaningOptions | None,
              source: dict[str, Any] | None, milvus: dict[str, Any] | None = None,
              precision: str = "float32") -> tuple[Store, Encoder]:
    """An empty store at ``p`` with the manifest of ``model`` and the settings, and the
    encoder (loaded after the settings are checked)."""
    if chunk is not None:
        chunk_spans("x", chunk, overlap)  # validates size/overlap
    codec(precision, 1)  # a known precision, before the model loads
    if precision != "float32" and p.kind != "local":
        raise InputError(f"{p}: --precision {precision} applies to local collections; "
                         "Milvus stores float32 vectors (its index types quantize)")
    # (a model loaded before is known by its description: loaded only if a text needs encoding)
    encoder = model if isinstance(model, Encoder) else load_encoder(
        model if isinstance(model, EncoderSettings) else EncoderSettings(model=model),
        deferred=True)
    manifest = Manifest.new(encoder, canonical_name(encoder.settings.model), index=index,
                            precision=precision, chunk=chunk, overlap=overlap,
                            cleaning=cleaning, source=source)
    return create_store(p, manifest.to_dict(), milvus), encoder


def sync_options(path: object, encoder_options: dict[str, Any] | None,
                 options: dict[str, Any]) -> dict[str, Any]:
    """The ``options`` of a sync of an existing collection; an :class:`InputError` naming
    those given that only apply when creating one (re-indexing keeps its settings)."""
    given = [("--no-normalize" if k == "normalize" else "--" + k.replace("_", "-"))
             for k in (encoder_options or {})]
    given += [{"cleaning": "cleaning options",
               "milvus": "--index-param/--search-param"}.get(k, f"--{k}")
              for k in SHAPING if options.get(k)]
    if given:
        raise InputError(
            f"{path}: the collection exists, and {', '.join(given)} only apply when creating "
            "one; re-indexing keeps its settings (index into a new directory to change them)")
    return {k: v for k, v in options.items() if k not in SHAPING}


def checked_encoder(address: object, manifest: Manifest, model: str | Encoder | None) -> Encoder:
    """The encoder of the collection ``manifest`` describes: ``model`` (loaded from where it
    names, or one already loaded), else its recorded model; :class:`ModelMismatch` if it gives
    other vectors than the collection's."""
    m = manifest.model
    enc = model if isinstance(model, Encoder) else load_encoder(manifest.encoder_settings(model),
                                                                deferred=True)
    if enc.fingerprint != m.fingerprint:
        raise ModelMismatch(
            f"{address}: built with model '{m.name}' (fingerprint {m.fingerprint}), but "
            f"'{enc.settings.model}' gives other vectors (fingerprint {enc.fingerprint}); "
            "use the collection's model, or re-embed with 'neartext reindex'")
    return enc
