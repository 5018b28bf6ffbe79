"""A collection's query encoder: its model exported to ONNX and kept beside the collection, so
that a search in a new process encodes its queries with onnxruntime and tokenizers, without
importing torch (a cold ``neartext search`` in under a second instead of several).

The export is made once, after a search that had to load the model
(:func:`neartext.export.query_encoder.prepare_query_encoder`), in
``<state>/cache/query-encoder/<fingerprint>/`` and used only when it was made from the model
whose fingerprint the collection records now and its query vectors matched the model's (within
1e-5) when it was made. Anything else (no export yet, another version's, an unreadable one, a
model that cannot be exported) falls back to the model itself, as before.

``NEARTEXT_QUERY_ENCODER=model`` turns this off: queries are encoded by the model itself and no
export is made.

Example::

    enc = cached_query_encoder(col.path, col.manifest)   # None: use col.encoder
"""

from __future__ import annotations

from pathlib import Path

from neartext.data.manifest import Manifest
from neartext.encoders import Encoder, EncoderSettings, load_encoder
from neartext.encoders.twin import ENV as TWIN_ENV
from neartext.encoders.twin import MAX_DIFFERENCE, ONNX_META, SOURCE_KEY, load_export
from neartext.encoders.twin import enabled as twin_enabled

__all__ = ["ENV", "MAX_DIFFERENCE", "ONNX_META", "SOURCE_KEY", "cache_dir", "cached_query_encoder",
           "enabled", "export_dir", "failed_marker"]

ENV = TWIN_ENV["query"]  # "auto" (the default) or "model"


def enabled() -> bool:
    """Whether searches may use (and make) the ONNX query encoder (``NEARTEXT_QUERY_ENCODER``)."""
    return twin_enabled("query")


def cache_dir(state: Path) -> Path:
    """Where a collection whose local state is in ``state`` keeps its query encoders."""
    return state / "cache" / "query-encoder"


def export_dir(state: Path, fingerprint: str) -> Path:
    """The export made from the model of ``fingerprint``."""
    return cache_dir(state) / fingerprint


def failed_marker(state: Path, fingerprint: str) -> Path:
    """Written instead of an export when the model cannot be exported faithfully (its reason
    inside), so that no later search tries again."""
    return cache_dir(state) / f"{fingerprint}.failed"


def cached_query_encoder(state: Path, manifest: Manifest) -> Encoder | None:
    """The ONNX query encoder made from the collection's current model, or None (none made,
    another model's, unreadable, or turned off): then queries go through the model itself."""
    if not enabled():
        return None
    fingerprint = manifest.model.fingerprint
    s = manifest.model.settings
    settings = EncoderSettings(model=str(export_dir(state, fingerprint)),
                               normalize=bool(s.get("normalize", True)),
                               batch_size=int(s.get("batch_size") or 32))
    return load_export(export_dir(state, fingerprint), fingerprint, settings, load_encoder)
