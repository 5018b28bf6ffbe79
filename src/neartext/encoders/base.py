"""The encoder contract every backend fulfils, and the settings that shape its vectors."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

import numpy as np

from neartext.data.encoder_settings import EncoderSettings

__all__ = ["CACHE_ENV", "Encoder", "EncoderBase", "EncoderSettings", "Kind", "cache_dir",
           "file_digest", "settings_digest", "usable_cores", "weights_digest"]

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
CACHE_ENV = "NEARTEXT_CACHE_DIR"
_digest_cache: dict[tuple[str, int, int, int, int], str] = {}


def cache_dir() -> Path:
    """Where neartext keeps what it learns about models: ``NEARTEXT_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/neartext``, else ``~/.cache/neartext``."""
    given = os.environ.get(CACHE_ENV)
    if given:
        return Path(given)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "neartext"


def weights_digest(model_dir: Path, suffixes: frozenset[str] = _HASHED_SUFFIXES) -> str:
    """SHA-256 over the files that define a model's outputs (weights, configs, tokenizer):
    those under ``model_dir`` whose suffix is in ``suffixes``."""
    h = hashlib.sha256()
    for f in sorted(p for p in model_dir.rglob("*") if p.is_file()):
        if f.suffix not in suffixes or f.name in _NOT_HASHED:
            continue
        h.update(str(f.relative_to(model_dir)).encode() + b"\0" + file_digest(f).encode())
    return h.hexdigest()


def file_digest(f: Path) -> str:
    """SHA-256 of the file ``f``, hashed once per state of the file: kept in memory and in the
    user's cache (``digests/``), keyed by its path, size, inode, and modification and change
    times, so that a cold start does not re-read a model's weights to know them (175 MB,
    0.15–0.25 s, for the default model and its ONNX export). Any write changes the change
    time, which no program can set back; as git does with its index, a file changed in the last
    :data:`SETTLED_S` seconds is not recorded in the cache (its next change could fall in the
    same clock tick)."""
    st = f.stat()
    key = (str(f.resolve()), st.st_size, st.st_ino, st.st_mtime_ns, st.st_ctime_ns)
    if key in _digest_cache:
        return _digest_cache[key]
    record = cache_dir() / "digests" / hashlib.sha256(repr(key).encode()).hexdigest()[:32]
    try:
        known = record.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        known = ""
    if len(known) == 64 and all(c in "0123456789abcdef" for c in known):
        _digest_cache[key] = known
        return known
    digest = _digest_cache[key] = _hash_file(f)
    if time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) < SETTLED_S * 1e9:
        return digest
    try:  # only saves time: an unwritable cache is left alone
        record.parent.mkdir(parents=True, exist_ok=True)
        tmp = record.with_name(f".{record.name}.{os.getpid()}")
        tmp.write_text(digest, encoding="ascii")
        os.replace(tmp, record)
    except OSError:
        pass
    return digest


SETTLED_S = 2.0  # a file unchanged for this long is recorded by its state


def _hash_file(f: Path) -> str:
    fh = hashlib.sha256()
    with f.open("rb") as fp:
        while chunk := fp.read(1 << 22):
            fh.update(chunk)
    return fh.hexdigest()


def settings_digest(settings: EncoderSettings, weights_digest: str) -> str:
    """Fingerprint from the weights' digest and the settings that change vectors."""
    d = settings.to_dict()
    d.pop("batch_size", None)
    d.pop("model", None)  # the same weights under another name or path give the same vectors
    payload = json.dumps({"weights": weights_digest, "settings": d}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:24]
