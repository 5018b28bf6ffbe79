"""A model's ONNX twin: the sentence-transformers model exported to ONNX (fp32) once, in the
user's cache, and used instead of the model to encode texts, so that a process which embeds
documents (``index``, ``upsert``, ``embed``, a Ray encoder actor, the service) or queries starts
without importing torch and sentence-transformers (several seconds per process).

The twin of the model whose fingerprint is ``FP`` lives in ``<cache>/onnx/FP/`` (the cache of
:mod:`neartext.encoders.deferred`). It is made by the CLI after a command that had to load a
model a second time on this machine
(:func:`neartext.export.query_encoder.prepare_model_twin`), and kept only when its query and
document vectors are the model's within 1e-5 on a fixed, mixed set of texts; a model that cannot
be exported so is marked ``FP.failed`` and never tried again. It is used only through a
:class:`~neartext.encoders.deferred.DeferredEncoder` (whose description says which fingerprint
the model has); anything else asked of the model (training, its tokenizer) loads the model.

``NEARTEXT_DOCUMENT_ENCODER=model`` keeps documents on the model itself,
``NEARTEXT_QUERY_ENCODER=model`` queries (and no twin or query encoder is made when both are).

Example::

    twin = load_twin(fingerprint, settings, load_encoder)   # an OnnxEncoder, or None: the model
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from pathlib import Path

from neartext.encoders.base import Encoder, EncoderSettings, Kind
from neartext.encoders.base import cache_dir as user_cache
from neartext.errors import NeartextError

ONNX_META = "neartext_onnx.json"  # what an ONNX export holds (written by export/onnx.py)
SOURCE_KEY = "source_fingerprint"  # in an export's ONNX_META: the model it was made from
MAX_DIFFERENCE = 1e-5  # largest difference of a vector's element allowed from the model's
ENV = {"query": "NEARTEXT_QUERY_ENCODER", "document": "NEARTEXT_DOCUMENT_ENCODER"}


def enabled(kind: Kind) -> bool:
    """Whether texts of ``kind`` may be encoded by an export instead of the model itself
    (``NEARTEXT_QUERY_ENCODER`` / ``NEARTEXT_DOCUMENT_ENCODER``: ``auto``, the default, or
    ``model``)."""
    return os.environ.get(ENV[kind], "auto").strip().lower() != "model"


def twins_dir() -> Path:
    """Where the user's cache keeps the models' twins."""
    return user_cache() / "onnx"


Load = Callable[[EncoderSettings], Encoder]  # the registry's load_encoder


def load_export(directory: Path, fingerprint: str, settings: EncoderSettings,
                load_encoder: Load) -> Encoder | None:
    """The ONNX export in ``directory`` made from the model of ``fingerprint``, encoding with
    ``settings``' normalization, batch size and prefixes (loaded by ``load_encoder``); None when
    there is none, it was made from another model, or it cannot be read (the model itself
    answers then)."""
    meta_path = directory / ONNX_META
    if not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get(SOURCE_KEY) != fingerprint:
            return None
        return load_encoder(EncoderSettings(
            model=str(directory), normalize=settings.normalize, batch_size=settings.batch_size,
            query_prefix=settings.query_prefix, document_prefix=settings.document_prefix))
    except (OSError, ValueError, NeartextError):
        return None


def made_twin(fingerprint: str) -> Path | None:
    """The directory of the twin made from the model of ``fingerprint``, or None (none made)."""
    found = twins_dir() / fingerprint
    return found if (found / ONNX_META).is_file() else None


def load_twin(fingerprint: str, settings: EncoderSettings, load_encoder: Load) -> Encoder | None:
    """The twin of the model of ``fingerprint`` (see the module docs), or None."""
    return load_export(twins_dir() / fingerprint, fingerprint, settings, load_encoder)


class TwinOf:
    """The twin of one model for a :class:`~neartext.encoders.deferred.DeferredEncoder`: looked
    for once, at the first text to encode, and given for the kinds it is enabled for.

    Example::

        twin = TwinOf(enc.fingerprint, enc.settings, enc.dim, load_encoder)
        twin("document")    # an OnnxEncoder, or None: use the model
    """

    def __init__(self, fingerprint: str, settings: EncoderSettings, dim: int,
                 load_encoder: Load) -> None:
        self._args = (fingerprint, settings, load_encoder)
        self._dim = dim
        self._twin: Encoder | None = None
        self._looked = False
        self._lock = threading.Lock()

    def __call__(self, kind: Kind) -> Encoder | None:
        if not enabled(kind):
            return None
        with self._lock:
            if not self._looked:
                twin = load_twin(*self._args)
                self._twin = twin if twin is not None and twin.dim == self._dim else None
                self._looked = True
        return self._twin
