"""Which encoder backend to deploy: torch, ONNX fp32, ONNX int8 or a static model, measured on the
user's own data (``neartext bench-encoders``).

Each backend is built from the model (``export onnx``, ``distill``), scored on the given data
(STS Spearman, or retrieval MRR@10 x 100, both in points) and timed on the same texts (best of a
few rounds). The recommendation is the fastest backend that loses at most ``tolerance`` points
against torch.

Example::

    res = compare_backends("models/v2", sts=load_pairs("sts-dev.csv"), work=Path("backends/"))
    res["recommended"]       # e.g. "onnx-int8"
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from neartext.encoders import backend_of, load_encoder
from neartext.engine.modeleval import evaluate_sts, semantic_retrieval
from neartext.errors import InputError
from neartext.export.onnx import export_onnx
from neartext.export.static import distill_model

BACKENDS = ("torch", "onnx", "onnx-int8", "static")


def recommend(results: dict[str, dict[str, float]], tolerance: float) -> str:
    """The fastest backend whose ``quality`` is within ``tolerance`` points of torch's.

    >>> recommend({"torch": {"quality": 82.0, "texts_per_s": 600},
    ...            "onnx-int8": {"quality": 81.7, "texts_per_s": 1400},
    ...            "static": {"quality": 66.1, "texts_per_s": 45000}}, tolerance=1.0)
    'onnx-int8'
    """
    base = results["torch"]["quality"]
    ok = [b for b, r in results.items() if r["quality"] >= base - tolerance]
    return max(ok, key=lambda b: results[b]["texts_per_s"])


def compare_backends(model: str, *, work: Path, sts: Any = None, retrieval: Any = None,
                     tolerance: float = 1.0, rounds: int = 2, max_texts: int = 5000
                     ) -> dict[str, Any]:
    """Build, score and time every backend of ``model`` (see the module docs)."""

    if (sts is None) == (retrieval is None):
        raise InputError("give STS pairs or retrieval pairs to measure quality on (one of them)")
    if tolerance < 0:
        raise InputError(f"tolerance must be 0 or more points (got {tolerance})")
    if backend_of(model) != "sbert":
        raise InputError(f"'{model}' is not a sentence-transformers model: there is nothing to convert")
    work.mkdir(parents=True, exist_ok=True)
    torch_enc = load_encoder(model)
    dim = torch_enc.dim
    builders = {
        "onnx": lambda p: export_onnx(model, p, force=True),
        "onnx-int8": lambda p: export_onnx(model, p, quantize="int8", force=True),
        "static": lambda p: distill_model(model, p, pca_dims=min(256, dim), force=True),
    }
    encoders: dict[str, Any] = {"torch": torch_enc}
    built: dict[str, float] = {}
    for name, build in builders.items():
        t0 = time.perf_counter()
        build(work / name)
        built[name] = round(time.perf_counter() - t0, 1)
        encoders[name] = load_encoder(str(work / name))
    if sts is not None:
        texts = list(dict.fromkeys(sts.text1 + sts.text2))[:max_texts]
        metric = "STS Spearman"

        def quality(enc: Any) -> float:
            return float(evaluate_sts(enc, sts)["spearman"])
    else:
        texts = list(retrieval.corpus.values())[:max_texts]
        metric = "retrieval MRR@10 x 100"

        def quality(enc: Any) -> float:
            return 100 * float(semantic_retrieval(enc, retrieval)["mrr@10"])
    results: dict[str, dict[str, float]] = {}
    for name, enc in encoders.items():
        results[name] = {"quality": round(quality(enc), 2)}
        enc.encode(texts[:32])  # warm up
    times: dict[str, list[float]] = {n: [] for n in encoders}
    for r in range(rounds):
        for name in (list(encoders) if r % 2 == 0 else list(reversed(encoders))):
            t0 = time.perf_counter()
            encoders[name].encode(texts)
            times[name].append(time.perf_counter() - t0)
    for name in encoders:
        results[name]["texts_per_s"] = round(len(texts) / min(times[name]), 1)
        results[name]["speed_vs_torch"] = round(
            results[name]["texts_per_s"] / (len(texts) / min(times["torch"])), 2)
        results[name]["lost_points"] = round(results["torch"]["quality"] - results[name]["quality"], 2)
    return {"model": model, "metric": metric, "texts": len(texts), "tolerance": tolerance,
            "results": results, "recommended": recommend(results, tolerance),
            "paths": {n: str(work / n) for n in builders}, "build_seconds": built}
