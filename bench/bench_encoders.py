"""Encoder backends benchmark (issue 7): all-MiniLM-L6-v2 in torch, exported to ONNX (fp32 and
int8, ``neartext export onnx``) and distilled to a static model2vec model (``neartext distill``,
PCA 256): STS-B test Spearman and encoding speed in one run (alternating rounds over the 2,758
test sentences, best round each), and each backend's cosine with the torch vectors.

Usage: python bench/bench_encoders.py [--rounds 3]
Writes bench/results/encoders.json. Nothing else should run meanwhile.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED, machine, machine_line, need, save  # noqa: E402

CACHE = Path(__file__).resolve().parent / ".cache"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    import numpy as np

    from neartext import load_encoder
    from neartext.data.evaldata import load_pairs
    from neartext.engine.modeleval import evaluate_sts
    from neartext.export.onnx import export_onnx
    from neartext.export.static import distill_model

    CACHE.mkdir(exist_ok=True)
    made = {}
    for name, make in (("minilm-static", lambda p: distill_model("default", p)),
                       ("minilm-onnx", lambda p: export_onnx("default", p)),
                       ("minilm-onnx-int8", lambda p: export_onnx("default", p, quantize="int8"))):
        t0 = time.perf_counter()
        if not (CACHE / name).is_dir():
            make(CACHE / name)
        made[name] = round(time.perf_counter() - t0, 1)
    data = load_pairs(need(SHARED / "stsbenchmark" / "sts-test.csv"))
    texts = data.text1 + data.text2
    models = {"torch (sentence-transformers)": load_encoder("default"),
              "onnx fp32": load_encoder(str(CACHE / "minilm-onnx")),
              "onnx int8": load_encoder(str(CACHE / "minilm-onnx-int8")),
              "static (model2vec, 256-d)": load_encoder(str(CACHE / "minilm-static"))}
    ref = models["torch (sentence-transformers)"].encode(texts)
    res = {}
    for name, enc in models.items():
        res[name] = {"spearman": round(evaluate_sts(enc, data)["spearman"], 2), "times": []}
        if enc.dim == ref.shape[1]:
            res[name]["mean_cosine_vs_torch"] = round(float(np.mean(np.sum(enc.encode(texts) * ref, 1))), 5)
    for r in range(args.rounds):
        for name in (list(models) if r % 2 == 0 else list(reversed(models))):
            t = time.perf_counter()
            models[name].encode(texts)
            res[name]["times"].append(time.perf_counter() - t)
    for v in res.values():
        v["texts_per_s"] = round(len(texts) / min(v.pop("times")), 1)
    base = res["torch (sentence-transformers)"]["texts_per_s"]
    for v in res.values():
        v["speed_vs_torch"] = round(v["texts_per_s"] / base, 2)
    result = {"machine": machine(), "texts": len(texts), "build_seconds": made, "results": res}
    save("encoders", result)
    for k, v in res.items():
        cos = v.get("mean_cosine_vs_torch")
        print(f"{k:>30}: STS-B test {v['spearman']:.2f}, {v['texts_per_s']:.0f} texts/s "
              f"({v['speed_vs_torch']:.2f}x){'' if cos is None else f', cosine vs torch {cos:.5f}'}")
    print(machine_line(result["machine"]))


if __name__ == "__main__":
    main()
