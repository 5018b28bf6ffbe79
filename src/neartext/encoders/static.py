"""Static embedding models (model2vec): a vector per token, averaged; no transformer at run time.

``neartext distill`` makes one from any local sentence-transformers model; the result works by
path wherever a model does (``--model models/v2-static``). Tens of times faster than the model it
came from, a few points less accurate (see the README's benchmark).

Example::

    distill_model("default", "models/minilm-static")
    enc = load_encoder("models/minilm-static")
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import staged_dir
from ..errors import InputError, MissingExtra, ModelNotFound
from ..results import StaticExport
from ..tables import check_output_dir
from .base import EncoderBase, EncoderSettings, settings_digest, weights_digest

DEFAULT_MAX_TOKENS = 512


def is_static_model(path: Path) -> bool:
    """A model2vec directory: its config.json says ``"model_type": "model2vec"``."""
    try:
        return bool(json.loads((path / "config.json").read_text()).get("model_type")
                    == "model2vec")
    except (OSError, ValueError, AttributeError):
        return False


class StaticEncoder(EncoderBase):
    """Encoder over ``model2vec.StaticModel``. ``max_seq_length`` caps the tokens read (default
    512); pooling cannot be changed."""

    def __init__(self, settings: EncoderSettings, model_dir: Path) -> None:
        if settings.pooling:
            raise InputError(f"model '{settings.model}' is a static model: it has no pooling to override")
        try:
            from model2vec import StaticModel
        except ImportError:
            raise MissingExtra("model2vec (for static models)", "static") from None
        try:
            self.model: Any = StaticModel.from_pretrained(str(model_dir))
        except Exception as e:
            raise ModelNotFound(f"model '{settings.model}': cannot load {model_dir}: {e}") from None
        self._dim = int(self.model.dim)
        self._settings = settings.__class__(**{**settings.to_dict(),
                                                "query_prefix": settings.query_prefix or "",
                                                "document_prefix": settings.document_prefix or ""})
        self._fingerprint = settings_digest(self._settings, weights_digest(model_dir))

    @property
    def max_tokens(self) -> int | None:
        return self._settings.max_seq_length or DEFAULT_MAX_TOKENS

    def _encode(self, batch: list[str], show_progress: bool) -> np.ndarray:
        vecs = np.asarray(self.model.encode(batch, show_progress_bar=show_progress,
                                            max_length=self.max_tokens, batch_size=1024),
                          dtype=np.float32)
        if self._settings.normalize:
            vecs /= np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
        return np.ascontiguousarray(vecs)

    def count_truncated(self, texts: Sequence[str]) -> int:
        limit = self.max_tokens or DEFAULT_MAX_TOKENS
        prefix = self._settings.document_prefix or ""
        long = [prefix + t for t in texts if len((prefix + t).encode()) > limit]
        if not long:
            return 0
        enc = self.model.tokenizer.encode_batch(long, add_special_tokens=False)
        return sum(1 for e in enc if len(e.ids) > limit)


def distill_model(model: str, output: str | Path, *, pca_dims: int | None = 256,
                  force: bool = False) -> StaticExport:
    """Distill a local sentence-transformers model into a static model2vec model in ``output``
    (written to ``output.partial`` first). Offline: the model's own vocabulary is used."""
    from .registry import backend_of, resolve_model_path

    out = check_output_dir(output, force)
    if backend_of(model) != "sbert":
        raise InputError(f"'{model}' is not a transformer model; distill a sentence-transformers model")
    src = resolve_model_path(model)
    if is_static_model(src):
        raise InputError(f"{src} is already a static model")
    try:
        from model2vec.distill import distill
    except ImportError:
        raise MissingExtra("model2vec[distill] (for neartext distill)", "static") from None
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    with staged_dir(out, make=False) as staged:
        static = distill(model_name=str(src), pca_dims=pca_dims, device="cpu")
        static.save_pretrained(str(staged))
    return StaticExport(str(out), str(src), int(static.dim), int(static.embedding.shape[0]))
