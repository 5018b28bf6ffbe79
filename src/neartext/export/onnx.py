"""ONNX export of a sentence-transformers model, pooling and normalization inside the graph.

The directory holds ``model.onnx`` (and ``model_int8.onnx`` with ``--quantize int8``: dynamic
quantization, per-channel int8 weights of the linear layers), the tokenizer files, and
``neartext_onnx.json`` (which file to run, prefixes, max length). neartext's ONNX backend
(``encoders/onnx.py``) runs it with onnxruntime and tokenizers only. Export checks parity against
the torch model on a fixed, deliberately mixed set of texts (several languages, a very long one,
one text at a time and padded together): cosine >= 0.9999 for every text in fp32, or it fails and
writes nothing; in int8 a mean under 0.98 fails and one under 0.99 is reported as a warning.

Example::

    export_onnx("models/v2", "models/v2-onnx", quantize="int8")
    enc = load_encoder("models/v2-onnx")
"""

from __future__ import annotations

import json
import logging
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from onnxruntime.quantization import QuantType, quantize_dynamic

from neartext.data.results import OnnxExport
from neartext.encoders import Encoder, backend_of, load_encoder, resolve_model_path
from neartext.encoders.registry import ONNX_META
from neartext.errors import InputError
from neartext.util.atomic import staged_dir
from neartext.util.tables import check_output_dir

_EXPORTING = threading.Lock()  # torch's ONNX exporter keeps its state in globals: one at a time
FP32_MIN_COSINE = 0.9999
INT8_MEAN_COSINE = 0.98  # below: refused
INT8_WARN_COSINE = 0.99  # below: a warning in the result
# Parity texts: short and long, several languages and scripts, digits and punctuation.
PARITY_TEXTS = [
    "The app crashes every time I open a note with a picture in it.",
    "I was charged twice for my yearly subscription.",
    "Please add a dark mode.", "ok", "Refund!!!", "Кошка спит на подоконнике.",
    "Error E-4127 appears when the printer driver starts; version 3.14.159 is installed.",
    " ".join(["Sync between my phone and my laptop takes hours, and notes appear twice"] * 12),
    "Wie kann ich mein Passwort zurücksetzen?", "日本語のテキストも試します。",
    "A short question?", "Notebooks full of photos take ages to load on Android.",
]


def export_onnx(model: str, output: str | Path, *, quantize: str | None = None,
                force: bool = False, opset: int = 17, encoder: Encoder | None = None,
                meta_extra: dict[str, Any] | None = None) -> OnnxExport:
    """Export ``model`` (a name or local path of a sentence-transformers model) to ``output``;
    ``encoder``: that model already loaded, with its settings (pooling, length, prefixes);
    ``meta_extra``: more keys for the export's description."""

    if quantize not in (None, "int8"):
        raise InputError(f"--quantize: only int8 is supported (got {quantize})")
    out = check_output_dir(output, force)
    if backend_of(model) != "sbert":
        raise InputError(f"'{model}' cannot be exported to ONNX: it is not a sentence-transformers "
                         "(transformer) model")
    src = resolve_model_path(model)
    enc: Any = encoder or load_encoder(model)
    st = enc.model
    names = ["input_ids", "attention_mask", "token_type_ids"]
    sample = st.tokenizer(PARITY_TEXTS[:2], padding=True, truncation=True, return_tensors="pt")
    names = [n for n in names if n in sample]

    class Graph(torch.nn.Module):  # the whole sentence-transformers pipeline, tensors in and out
        def __init__(self, m: Any) -> None:
            super().__init__()
            self.m = m

        def forward(self, *inputs: Any) -> Any:
            return self.m(dict(zip(names, inputs)))["sentence_embedding"]

    with staged_dir(out) as staged:
        axes = {n: {0: "batch", 1: "tokens"} for n in names}
        axes["sentence_embedding"] = {0: "batch"}

        with _EXPORTING, warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer notes about shape-dependent branches
            torch.onnx.export(Graph(st).eval(), tuple(sample[n] for n in names),
                              str(staged / "model.onnx"), input_names=names,
                              output_names=["sentence_embedding"], dynamic_axes=axes,
                              opset_version=opset, dynamo=False)
        st.tokenizer.save_pretrained(str(staged))
        files = {"fp32": "model.onnx"}
        if quantize:
            # per-channel int8 weights of the linear layers only (attention's activation x
            # activation products stay float): quantizing every op per tensor gave all-MiniLM-L6-v2
            # a mean cosine of 0.941 with the torch model
            root = logging.getLogger()
            level = root.level
            root.setLevel(logging.ERROR)  # onnxruntime's advice to pre-process is logged on root
            try:
                quantize_dynamic(str(staged / "model.onnx"), str(staged / "model_int8.onnx"),
                                 weight_type=QuantType.QInt8, per_channel=True,
                                 reduce_range=False, op_types_to_quantize=["MatMul"],
                                 extra_options={"MatMulConstBOnly": True})
            finally:
                root.setLevel(level)
            files["int8"] = "model_int8.onnx"
        ref = st.encode(PARITY_TEXTS, convert_to_numpy=True, normalize_embeddings=False)
        parity = {}
        for kind, name in files.items():
            sess = ort.InferenceSession(str(staged / name), providers=["CPUExecutionProvider"])
            n = int(st.max_seq_length or 512)
            got = np.concatenate([_run(sess, st.tokenizer, [t], names, n) for t in PARITY_TEXTS]
                                 + [_run(sess, st.tokenizer, PARITY_TEXTS, names, n)])
            want = np.concatenate([ref, ref])
            cos = np.sum(got * want, 1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1))
            parity[kind] = {"min_cosine": float(cos.min()), "mean_cosine": float(cos.mean())}
        if parity["fp32"]["min_cosine"] < FP32_MIN_COSINE:
            raise InputError(f"'{model}' cannot be exported faithfully: fp32 ONNX output reaches "
                             f"cosine {parity['fp32']['min_cosine']:.6f} with the torch model "
                             f"(needs {FP32_MIN_COSINE})")
        if quantize and parity["int8"]["mean_cosine"] < INT8_MEAN_COSINE:
            raise InputError(f"int8 quantization of '{model}' loses too much: mean cosine "
                             f"{parity['int8']['mean_cosine']:.4f} (needs {INT8_MEAN_COSINE})")
        meta = {"format": "neartext-onnx", "base": str(src), "file": files.get("int8", "model.onnx"),
                "files": files, "inputs": names, "dim": int(ref.shape[1]),
                "max_seq_length": int(st.max_seq_length or 512),
                "query_prefix": enc.settings.query_prefix or "",
                "document_prefix": enc.settings.document_prefix or "",
                "normalized_in_graph": any(type(m).__name__ == "Normalize" for m in st),
                "parity": parity, **(meta_extra or {})}
        (staged / ONNX_META).write_text(json.dumps(meta, indent=2), encoding="utf-8")
    warnings_ = []
    if quantize and parity["int8"]["mean_cosine"] < INT8_WARN_COSINE:
        warnings_.append(f"int8 mean cosine {parity['int8']['mean_cosine']:.4f} on the parity texts "
                         f"is under {INT8_WARN_COSINE}: check accuracy on your data "
                         "(neartext eval sts/retrieval --model DIR)")
    return OnnxExport(str(out), str(src), files, parity, warnings_)


def _run(sess: Any, tokenizer: Any, texts: list[str], names: list[str], max_len: int) -> np.ndarray:
    tok = tokenizer(texts, padding=True, truncation=True, max_length=max_len, return_tensors="np")
    return np.asarray(sess.run(None, {n: tok[n].astype(np.int64) for n in names})[0])
