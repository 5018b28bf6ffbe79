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

import json
import os
from pathlib import Path

from neartext.data.manifest import Manifest
from neartext.encoders import Encoder, EncoderSettings, load_encoder
from neartext.encoders.registry import ONNX_META
from neartext.errors import NeartextError

ENV = "NEARTEXT_QUERY_ENCODER"  # "auto" (the default) or "model"
SOURCE_KEY = "source_fingerprint"  # in the export's ONNX_META: the model it was made from
MAX_DIFFERENCE = 1e-5  # largest difference of a query vector's element allowed from the model's


def enabled() -> bool:
    """Whether searches may use (and make) the ONNX query encoder (``NEARTEXT_QUERY_ENCODER``)."""
    return os.environ.get(ENV, "auto").strip().lower() != "model"


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
    fingerprint = manifest.model.fingerprint
    d = export_dir(state, fingerprint)
    if not enabled() or not (d / ONNX_META).is_file():
        return None
    try:
        meta = json.loads((d / ONNX_META).read_text(encoding="utf-8"))
        if meta.get(SOURCE_KEY) != fingerprint:
            return None
        s = manifest.model.settings
        return load_encoder(EncoderSettings(model=str(d), normalize=bool(s.get("normalize", True)),
                                            batch_size=int(s.get("batch_size") or 32)))
    except (OSError, ValueError, NeartextError):
        return None  # the model itself answers; the next export replaces this one
