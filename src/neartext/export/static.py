"""Distil a sentence-transformers model into a static (model2vec) model: ``neartext distill``.
The result is used like any model, by path (:class:`neartext.encoders.static.StaticEncoder`).

Example::

    distill_model("default", "minilm-static/")   # -> StaticExport(output, base, dim, vocabulary)
"""

from __future__ import annotations

from pathlib import Path

from model2vec.distill import distill

from neartext.data.results import StaticExport
from neartext.encoders.registry import backend_of, is_static_model, resolve_model_path
from neartext.errors import InputError
from neartext.util.atomic import staged_dir
from neartext.util.tables import check_output_dir


def distill_model(model: str, output: str | Path, *, pca_dims: int | None = 256,
                  force: bool = False) -> StaticExport:
    """Distill a local sentence-transformers model into a static model2vec model in ``output``
    (written to ``output.partial`` first). Offline: the model's own vocabulary is used."""
    out = check_output_dir(output, force)
    if backend_of(model) != "sbert":
        raise InputError(f"'{model}' is not a transformer model; distill a sentence-transformers model")
    src = resolve_model_path(model)
    if is_static_model(src):
        raise InputError(f"{src} is already a static model")
    with staged_dir(out, make=False) as staged:
        static = distill(model_name=str(src), pca_dims=pca_dims, device="cpu")
        static.save_pretrained(str(staged))
    return StaticExport(str(out), str(src), int(static.dim), int(static.embedding.shape[0]))
