"""MLflow serving benchmark (issue 7, part 1): latency of one query through ``mlflow models serve``
(the collection exported with ``neartext export mlflow``) against the same search through
``neartext serve``, side by side: both servers up at once, requests sent one at a time in
alternating blocks of 20, the first 2 of each block not counted.

Usage: python bench/bench_mlflow.py [--requests 300] [--collection demo/feedback]
Writes bench/results/mlflow.json. Nothing else should run meanwhile.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_serve import _free_port  # noqa: E402
from common import ROOT, machine, machine_line, percentile, save  # noqa: E402

QUERIES = ["I was charged twice", "the app crashes when I attach a photo", "dark mode please",
           "sync is slow between my phone and laptop", "I cannot log in after a password reset"]


def _post(url: str, body: dict) -> float:
    req = urllib.request.Request(url, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    t0 = time.perf_counter()
    with urllib.request.urlopen(req, timeout=60) as r:
        r.read()
    return time.perf_counter() - t0


def _wait(url: str, proc: subprocess.Popen) -> None:
    for _ in range(600):
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            if proc.poll() is not None:
                sys.exit(f"server exited: {proc.stderr.read()[-2000:] if proc.stderr else ''}")
            time.sleep(0.5)
    sys.exit(f"{url} did not come up")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--collection", default=str(ROOT / "demo" / "feedback"))
    args = ap.parse_args()
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    work = Path(tempfile.mkdtemp(prefix="nt-bench-mlflow-"))
    model = work / "model"
    subprocess.run([str(bin_dir / "neartext"), "export", "mlflow", args.collection, "-o", str(model),
                    "-q"], check=True, env=env, stderr=subprocess.DEVNULL)
    pm, pn = _free_port(), _free_port()
    mlf = subprocess.Popen([str(bin_dir / "mlflow"), "models", "serve", "-m", str(model),
                            "--env-manager", "local", "-h", "127.0.0.1", "-p", str(pm)],
                           env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    nts = subprocess.Popen([str(bin_dir / "neartext"), "serve", f"c={args.collection}", "--port",
                            str(pn)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           text=True)
    try:
        _wait(f"http://127.0.0.1:{pm}/ping", mlf)
        _wait(f"http://127.0.0.1:{pn}/health", nts)
        targets = {
            "mlflow /invocations": lambda q: _post(f"http://127.0.0.1:{pm}/invocations",
                                                   {"inputs": [q],
                                                    "params": {"top_k": 5, "similarity_threshold": 0.0}}),
            "neartext serve /search": lambda q: _post(f"http://127.0.0.1:{pn}/collections/c/search",
                                                      {"query": q, "k": 5}),
        }
        times: dict[str, list[float]] = {k: [] for k in targets}
        n = 0
        while n < args.requests:
            for name, call in targets.items():
                for i in range(20):
                    dt = call(QUERIES[(n + i) % len(QUERIES)])
                    if i >= 2:
                        times[name].append(dt * 1000)
            n += 20
    finally:
        for p in (mlf, nts):
            p.terminate()
            p.wait(30)
    res = {k: {"p50_ms": round(percentile(v, 50), 2), "p99_ms": round(percentile(v, 99), 2),
               "requests": len(v)} for k, v in times.items()}
    ratio = res["mlflow /invocations"]["p50_ms"] / res["neartext serve /search"]["p50_ms"]
    result = {"machine": machine(), "collection": args.collection, "top_k": 5, "latency": res,
              "p50_ratio_mlflow_over_neartext": round(ratio, 2)}
    save("mlflow", result)
    for k, v in res.items():
        print(f"{k:>24}: p50 {v['p50_ms']:.1f} ms, p99 {v['p99_ms']:.1f} ms ({v['requests']} requests)")
    print(f"mlflow / neartext p50: {ratio:.2f}x\n{machine_line(result['machine'])}")


if __name__ == "__main__":
    main()
