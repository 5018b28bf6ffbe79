"""The sentence-transformers backend: any sentence-transformers model from a local directory."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from sentence_transformers import SentenceTransformer
from transformers.utils import logging as hf_logging

from neartext.encoders.base import EncoderBase, EncoderSettings, settings_digest, weights_digest
from neartext.errors import ModelNotFound

_E5 = re.compile(r"(^|[-_/])(multilingual-)?e5([-_]|$)", re.IGNORECASE)


def _embedding_dim(model: Any) -> int:
    """The output dimension (the method was renamed in sentence-transformers 6)."""
    get = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return int(get())


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """No weight-loading progress bars or tokenizer length warnings from transformers."""
    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()


def load_sentence_transformer(model_dir: Path, name: str | None = None) -> Any:
    """A ``SentenceTransformer`` from a local directory, on the CPU, never touching a hub."""
    name = name or str(model_dir)
    if not (model_dir / "config.json").is_file() and not (model_dir / "modules.json").is_file():
        raise ModelNotFound(f"model '{name}': {model_dir} holds no model (no config.json)")
    try:
        with _quiet_transformers():
            return SentenceTransformer(str(model_dir), device="cpu", local_files_only=True)
    except Exception as e:  # the library raises many types for unreadable models
        raise ModelNotFound(f"model '{name}': cannot load {model_dir}: {e}") from None


class SentenceTransformerEncoder(EncoderBase):
    """Encoder over ``sentence_transformers.SentenceTransformer``, loaded offline from a directory.

    Prefixes: when none are given, the model's own ``prompts`` (``query``, ``document`` /
    ``passage``) are used, and e5-style models get ``query: `` / ``passage: ``.
    """

    def __init__(self, settings: EncoderSettings, model_dir: Path) -> None:
        self.model = load_sentence_transformer(model_dir, settings.model)
        self._setup(settings, model_dir, weights_digest(model_dir))

    @classmethod
    def wrap(cls, model: Any, settings: EncoderSettings, model_dir: Path,
             tag: str = "unsaved") -> SentenceTransformerEncoder:
        """An encoder over an already loaded model (e.g. one being trained). Its fingerprint
        names ``tag``, not the weights, so never index a collection with it."""
        self = cls.__new__(cls)
        self.model = model
        self._setup(replace(settings, pooling=None, max_seq_length=None), model_dir,
                    f"{tag}:{id(model)}")
        return self

    def _setup(self, settings: EncoderSettings, model_dir: Path, weights: str) -> None:
        self._dim = _embedding_dim(self.model)
        if settings.pooling:
            self._override_pooling(settings.pooling, settings.model)
        if settings.max_seq_length:
            self.model.max_seq_length = settings.max_seq_length
        q, d = self._resolved_prefixes(settings, model_dir)
        self._settings = replace(settings, query_prefix=q, document_prefix=d)
        self.model_dir = model_dir
        self._fingerprint = settings_digest(self._settings, weights)

    def _resolved_prefixes(self, s: EncoderSettings, model_dir: Path) -> tuple[str, str]:
        # Saved models often carry empty prompts ({"query": ""}): those say nothing.
        prompts = {k: v for k, v in (getattr(self.model, "prompts", None) or {}).items() if v}
        e5 = bool(_E5.search(model_dir.name)) and not prompts
        q = s.query_prefix
        if q is None:
            q = prompts.get("query", "query: " if e5 else "")
        d = s.document_prefix
        if d is None:
            d = prompts.get("document", prompts.get("passage", "passage: " if e5 else ""))
        return q, d

    def _override_pooling(self, mode: str, name: str) -> None:
        for i, module in enumerate(self.model):
            if type(module).__name__ == "Pooling":
                self.model[i] = type(module)(self._dim, pooling_mode=mode)
                return
        raise ModelNotFound(f"model '{name}' has no pooling layer to override")

    @property
    def max_tokens(self) -> int | None:
        n = self.model.max_seq_length
        return int(n) if n else None

    def _encode(self, batch: list[str], show_progress: bool) -> np.ndarray:
        vecs = self.model.encode(
            batch,
            batch_size=self._settings.batch_size,
            show_progress_bar=show_progress,
            convert_to_numpy=True,
            normalize_embeddings=self._settings.normalize,
        )
        return np.ascontiguousarray(vecs, dtype=np.float32)

    def count_truncated(self, texts: Sequence[str]) -> int:
        limit = self.max_tokens
        if not limit:
            return 0
        prefix = self._settings.document_prefix or ""
        # A token covers at least one UTF-8 byte, so shorter texts cannot exceed the limit.
        long = [prefix + t for t in texts if len((prefix + t).encode()) > limit - 2]
        if not long:
            return 0
        tok: Any = self.model.tokenizer
        ids = tok(long, add_special_tokens=True, truncation=False)["input_ids"]
        return sum(1 for x in ids if len(x) > limit)
