"""Encoders turn texts into vectors; one module per backend, a registry of built-in names."""

from __future__ import annotations

from neartext.encoders.base import Encoder, EncoderSettings, Kind
from neartext.encoders.registry import (
    BUILTIN_MODELS,
    backend_of,
    canonical_name,
    load_encoder,
    resolve_model_path,
    vectors_model,
)

__all__ = [
    "BUILTIN_MODELS", "Encoder", "backend_of", "EncoderSettings", "Kind", "canonical_name", "load_encoder",
    "resolve_model_path", "vectors_model",
]  # fmt: skip
