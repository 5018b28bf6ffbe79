"""Static embedding models (model2vec): a vector per token, averaged; no transformer at run time.

``neartext distill`` makes one from any local sentence-transformers model
(:mod:`neartext.export.static`); the result works by path wherever a model does
(``--model models/v2-static``). Tens of times faster than the model it came from, a few points
less accurate (see the README's benchmark).

Example::

    enc = load_encoder("models/minilm-static")
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from model2vec import StaticModel

from neartext.encoders.base import EncoderBase, EncoderSettings, settings_digest, weights_digest
from neartext.errors import InputError, ModelNotFound

DEFAULT_MAX_TOKENS = 512


class StaticEncoder(EncoderBase):
    """Encoder over ``model2vec.StaticModel``. ``max_seq_length`` caps the tokens read (default
    512); pooling cannot be changed."""

    def __init__(self, settings: EncoderSettings, model_dir: Path) -> None:
        if settings.pooling:
            raise InputError(f"model '{settings.model}' is a static model: it has no pooling to override")
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
