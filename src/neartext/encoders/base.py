"""The encoder contract every backend fulfils, and the settings that shape its vectors."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

import numpy as np

from neartext.data.encoder_settings import EncoderSettings

__all__ = ["Encoder", "EncoderBase", "EncoderSettings", "Kind", "settings_digest", "usable_cores",
           "weights_digest"]

Kind = Literal["query", "document"]
@runtime_checkable
class Encoder(Protocol):
    """Turns texts into vectors. ``kind`` selects the query or document side (prefixes)."""

    @property
    def dim(self) -> int: ...

    @property
    def fingerprint(self) -> str:
        """Changes whenever the vectors would: weights, pooling, prefixes, length, normalization."""
        ...

    @property
    def settings(self) -> EncoderSettings: ...

    @property
    def max_tokens(self) -> int | None: ...

    def encode(
        self, texts: Sequence[str], kind: Kind = "document", *, show_progress: bool = False
    ) -> np.ndarray:
        """Vectors of shape ``(len(texts), dim)``, float32."""
        ...

    def count_truncated(self, texts: Sequence[str]) -> int:
        """How many of ``texts`` are longer than the model reads (and so are truncated)."""
        ...


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


class EncoderBase:
    """What every backend shares: the properties of :class:`Encoder` over ``_dim``,
    ``_fingerprint`` and ``_settings``, and applying the query/document prefix."""

    _dim: int
    _fingerprint: str
    _settings: EncoderSettings

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    @property
    def settings(self) -> EncoderSettings:
        return self._settings

    def encode(
        self, texts: Sequence[str], kind: Kind = "document", *, show_progress: bool = False
    ) -> np.ndarray:
        """Vectors of ``texts`` with the ``kind``'s prefix applied, float32, C-contiguous."""
        prefix = self._settings.query_prefix if kind == "query" else self._settings.document_prefix
        batch = [prefix + t for t in texts] if prefix else list(texts)
        if not batch:
            return np.zeros((0, self._dim), dtype=np.float32)
        return np.ascontiguousarray(self._encode(batch, show_progress), dtype=np.float32)

    def _encode(self, batch: list[str], show_progress: bool) -> np.ndarray:
        """The backend's forward pass over prefixed, non-empty ``batch``."""
        raise NotImplementedError


_HASHED_SUFFIXES = frozenset({".safetensors", ".bin", ".json", ".txt", ".model", ".pt"})
_NOT_HASHED = {"README.md", "metrics.json", "training_config.json", "neartext_model.json"}
_digest_cache: dict[tuple[str, int, int], str] = {}


def weights_digest(model_dir: Path, suffixes: frozenset[str] = _HASHED_SUFFIXES) -> str:
    """SHA-256 over the files that define a model's outputs (weights, configs, tokenizer):
    those under ``model_dir`` whose suffix is in ``suffixes``."""
    h = hashlib.sha256()
    for f in sorted(p for p in model_dir.rglob("*") if p.is_file()):
        if f.suffix not in suffixes or f.name in _NOT_HASHED:
            continue
        st = f.stat()
        key = (str(f), st.st_size, st.st_mtime_ns)
        if key not in _digest_cache:
            fh = hashlib.sha256()
            with f.open("rb") as fp:
                while chunk := fp.read(1 << 22):
                    fh.update(chunk)
            _digest_cache[key] = fh.hexdigest()
        h.update(str(f.relative_to(model_dir)).encode() + b"\0" + _digest_cache[key].encode())
    return h.hexdigest()


def settings_digest(settings: EncoderSettings, weights_digest: str) -> str:
    """Fingerprint from the weights' digest and the settings that change vectors."""
    d = settings.to_dict()
    d.pop("batch_size", None)
    d.pop("model", None)  # the same weights under another name or path give the same vectors
    payload = json.dumps({"weights": weights_digest, "settings": d}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:24]
