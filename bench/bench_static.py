"""Static model benchmark (issue 7, part 4): all-MiniLM-L6-v2 against its model2vec distillation
(``neartext distill``, PCA 256), STS-B test Spearman and encoding speed in one run (alternating
rounds over the 2,758 test sentences, best round each).

Usage: python bench/bench_static.py [--rounds 3]
Writes bench/results/static.json. Nothing else should run meanwhile.
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
    from neartext import load_encoder
    from neartext.encoders.static import distill_model
    from neartext.evaluate import evaluate_sts, load_pairs

    static_dir = CACHE / "minilm-static"
    t0 = time.perf_counter()
    if not static_dir.is_dir():
        CACHE.mkdir(exist_ok=True)
        distill_model("default", static_dir)
    distill_s = time.perf_counter() - t0
    data = load_pairs(need(SHARED / "stsbenchmark" / "sts-test.csv"))
    texts = data.text1 + data.text2
    models = {"all-MiniLM-L6-v2": load_encoder("default"),
              "distilled (static, 256-d)": load_encoder(str(static_dir))}
    res = {}
    for name, enc in models.items():
        res[name] = {"spearman": round(evaluate_sts(enc, data)["spearman"], 2), "times": []}
    for r in range(args.rounds):
        for name in (list(models) if r % 2 == 0 else list(reversed(models))):
            t = time.perf_counter()
            models[name].encode(texts)
            res[name]["times"].append(time.perf_counter() - t)
    for v in res.values():
        v["texts_per_s"] = round(len(texts) / min(v.pop("times")), 1)
    result = {"machine": machine(), "texts": len(texts), "distill_seconds": round(distill_s, 1),
              "results": res}
    save("static", result)
    for k, v in res.items():
        print(f"{k:>28}: STS-B test {v['spearman']:.2f}, {v['texts_per_s']:.0f} texts/s")
    print(machine_line(result["machine"]))


if __name__ == "__main__":
    main()
