"""Models exported with ``neartext export onnx``, run with onnxruntime and tokenizers only (no
torch): pooling and normalization are inside the graph.

Example::

    enc = load_encoder("models/v2-onnx")     # runs model_int8.onnx if it was quantized
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from neartext.encoders.base import EncoderBase, EncoderSettings, settings_digest, usable_cores, weights_digest
from neartext.encoders.registry import ONNX_META
from neartext.errors import InputError, ModelNotFound


def threads() -> int:
    """Threads of one forward pass: ``OMP_NUM_THREADS`` when set (a Ray actor given one CPU),
    else the cores this process may run on."""
    try:
        return max(1, int(os.environ.get("OMP_NUM_THREADS", "")))
    except ValueError:
        return usable_cores()


class OnnxEncoder(EncoderBase):
    """Encoder over an exported ONNX model. The export's prefixes apply unless settings give
    others; ``max_seq_length`` may lower the exported length; pooling cannot change."""

    def __init__(self, settings: EncoderSettings, model_dir: Path) -> None:
        if settings.pooling:
            raise InputError(f"model '{settings.model}' is an ONNX export: its pooling is in the graph")
        try:
            meta = json.loads((model_dir / ONNX_META).read_text(encoding="utf-8"))
            self.tokenizer: Any = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = threads()
            self.session: Any = ort.InferenceSession(str(model_dir / meta["file"]), opts,
                                                     providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises a type of its own per failure (not RuntimeError)
            raise ModelNotFound(f"model '{settings.model}': cannot load {model_dir}: {e}") from None
        self.inputs: list[str] = meta["inputs"]
        self._max: int = min(settings.max_seq_length or meta["max_seq_length"], meta["max_seq_length"])
        self.tokenizer.enable_truncation(self._max)
        self.tokenizer.enable_padding()
        self._normalized = bool(meta.get("normalized_in_graph"))
        self._dim = int(meta["dim"])
        q = meta["query_prefix"] if settings.query_prefix is None else settings.query_prefix
        d = meta["document_prefix"] if settings.document_prefix is None else settings.document_prefix
        self._settings = EncoderSettings(**{**settings.to_dict(), "query_prefix": q,
                                            "document_prefix": d})
        self._fingerprint = settings_digest(self._settings, weights_digest(
            model_dir, frozenset({".onnx", ".json", ".txt"})))

    @property
    def max_tokens(self) -> int | None:
        return self._max

    def _encode(self, batch: list[str], show_progress: bool) -> np.ndarray:
        out = np.zeros((len(batch), self._dim), dtype=np.float32)
        order = sorted(range(len(batch)), key=lambda i: len(batch[i]))  # less padding per pass
        size = self._settings.batch_size
        for start in range(0, len(order), size):
            rows = order[start:start + size]
            enc = self.tokenizer.encode_batch([batch[i] for i in rows])
            feed = {"input_ids": np.array([e.ids for e in enc], dtype=np.int64),
                    "attention_mask": np.array([e.attention_mask for e in enc], dtype=np.int64),
                    "token_type_ids": np.array([e.type_ids for e in enc], dtype=np.int64)}
            out[rows] = self.session.run(None, {n: feed[n] for n in self.inputs})[0]
        if self._settings.normalize and not self._normalized:
            out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out

    def count_truncated(self, texts: Sequence[str]) -> int:
        prefix = self._settings.document_prefix or ""
        long = [prefix + t for t in texts if len((prefix + t).encode()) > self._max - 2]
        if not long:
            return 0
        self.tokenizer.no_truncation()
        try:
            return sum(1 for e in self.tokenizer.encode_batch(long) if len(e.ids) > self._max)
        finally:
            self.tokenizer.enable_truncation(self._max)
