"""An encoder known by what it is (its resolved settings, fingerprint and dimension) before it is
loaded, so that work which embeds nothing never imports torch.

The first time a model is loaded with some settings, :func:`remember` writes that description
to a small JSON file in the user's cache (``NEARTEXT_CACHE_DIR``, else
``$XDG_CACHE_HOME/neartext``, else ``~/.cache/neartext``), keyed by the backend, a digest of the
model's files and the settings given. Later, :func:`deferred_encoder` answers with a
:class:`DeferredEncoder` from that description: a build whose rows bring their own vectors
creates its collection (manifest: model, fingerprint, dimension, prefixes) without loading the
model; the model loads only if a text does need encoding, and a fingerprint that no longer
matches is a :class:`~neartext.errors.ModelMismatch`. Nothing recorded (a first run, an
unwritable cache): the model is loaded as before.

Example::

    enc = deferred_encoder(EncoderSettings(model="default"), load)  # no torch yet, if recorded
    enc.fingerprint, enc.dim                                          # from the description
    enc.encode(["hello"])                                             # loads the model now
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from neartext.encoders.base import (
    _HASHED_SUFFIXES,
    Encoder,
    EncoderBase,
    EncoderSettings,
    Kind,
    cache_dir,
    weights_digest,
)
from neartext.errors import ModelMismatch

KEY_SUFFIXES = _HASHED_SUFFIXES | {".npz", ".onnx"}  # every backend's weight files


def _record_path(backend: str, settings: EncoderSettings, model_dir: Path) -> Path:
    given = settings.to_dict()
    given.pop("model", None)  # another name or path of the same files: the same description
    given.pop("batch_size", None)
    key = json.dumps({"backend": backend, "files": weights_digest(model_dir, KEY_SUFFIXES),
                      "settings": given}, sort_keys=True)
    return cache_dir() / "encoders" / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.json"


def remember(backend: str, given: EncoderSettings, model_dir: Path, encoder: Encoder) -> None:
    """Record ``encoder``'s description for ``given`` settings (quietly nothing when the cache
    cannot be written: it only saves time)."""
    path = _record_path(backend, given, model_dir)
    if recalled(backend, given, model_dir) is not None:
        return
    record = {"dim": encoder.dim, "fingerprint": encoder.fingerprint,
              "max_tokens": encoder.max_tokens, "settings": encoder.settings.to_dict()}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(record), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass


def forget(backend: str, given: EncoderSettings, model_dir: Path) -> None:
    """Remove the description recorded for these settings and files (it proved wrong)."""
    _record_path(backend, given, model_dir).unlink(missing_ok=True)


def recalled(backend: str, given: EncoderSettings, model_dir: Path) -> dict[str, Any] | None:
    """The description recorded for these settings and files, or None."""
    try:
        record = json.loads(_record_path(backend, given, model_dir).read_text(encoding="utf-8"))
        EncoderSettings(**record["settings"])
        int(record["dim"]), str(record["fingerprint"]), record["max_tokens"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return dict(record)


class DeferredEncoder(EncoderBase):
    """An :class:`~neartext.encoders.base.Encoder` from its recorded description (``dim``,
    ``fingerprint``, ``settings`` as every backend's); the model is loaded (by ``load``) at the
    first call that needs it. Anything else asked of it is asked of the loaded encoder."""

    def __init__(self, given: EncoderSettings, record: dict[str, Any],
                 load: Callable[[EncoderSettings], Encoder],
                 forget: Callable[[], None] = lambda: None) -> None:
        self._given, self._load, self._forget = given, load, forget
        self._dim = int(record["dim"])
        self._fingerprint = str(record["fingerprint"])
        self._max_tokens: int | None = record["max_tokens"]
        self._settings = EncoderSettings(
            **{**record["settings"], "model": given.model, "batch_size": given.batch_size})
        self._real: Encoder | None = None
        self._loading = threading.Lock()  # threads that need it at once load it once
        #: the model's ONNX twin for texts of a kind, or None (:mod:`neartext.encoders.twin`): set
        #: by the registry for models that can have one; until the model itself is loaded,
        #: texts go through the twin when it gives one
        self.twin: Callable[[Kind], Encoder | None] | None = None
        #: called (in the loading thread) once the model is loaded, e.g. by a service
        self.when_loaded: list[Callable[[], None]] = []

    @property
    def loaded(self) -> bool:
        """Whether the model has been loaded."""
        return self._real is not None

    def real(self) -> Encoder:
        """The loaded encoder (loading it now if needed)."""
        if self._real is not None:
            return self._real
        with self._loading:
            if self._real is None:
                real = self._load(self._given)
                if real.fingerprint != self._fingerprint:
                    self._forget()  # the next run loads the model and records it afresh
                    raise ModelMismatch(
                        f"model '{self._given.model}' now gives other vectors (fingerprint "
                        f"{real.fingerprint}) than recorded in {cache_dir() / 'encoders'} "
                        f"({self._fingerprint}); the record is removed: run again")
                self._real = real
                for hook in self.when_loaded:
                    hook()
        return self._real

    @property
    def max_tokens(self) -> int | None:
        return self._max_tokens

    def encoding(self, kind: Kind) -> Encoder:
        """What encodes texts of ``kind``: the model's twin when it has one (and it is enabled
        for that kind) and the model was not loaded already, else the model (loaded now)."""
        if self._real is None and self.twin is not None:
            twin = self.twin(kind)
            if twin is not None:
                return twin
        return self.real()

    def encode(self, texts: Sequence[str], kind: Kind = "document", *,
               show_progress: bool = False) -> np.ndarray:
        if not texts:
            return np.zeros((0, self._dim), dtype=np.float32)
        return self.encoding(kind).encode(texts, kind, show_progress=show_progress)

    def count_truncated(self, texts: Sequence[str]) -> int:
        return self.encoding("document").count_truncated(texts) if texts else 0

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.real(), name)
