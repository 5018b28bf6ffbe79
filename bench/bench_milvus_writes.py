"""What the checks around each Milvus write cost (issue 19), against an earlier neartext, side by
side in one run on the same Milvus server.

Since new versions are swapped in on Milvus too, a write reads the holds and the manifest row
once before and once after it writes (see ``MilvusStore.write``). Measured on Milvus' C++
engine serving gRPC (``make milvus-engine``; the Milvus Lite 3 server when it is not set up),
in a fresh process per version and round, rounds alternating, the better round kept:
  - one-document writes (``Store.write`` of one document with its vector, as a service's
    single upserts are): p50 and p99 ms over 200;
  - a bulk write of 5,000 documents in one ``write`` (as ``neartext index`` writes a part).
Vectors are given (random unit vectors, 384 dimensions): the encoder costs the same in both.

Usage: python bench/bench_milvus_writes.py --baseline /path/to/old/src [--rounds 2]
Writes bench/results/milvus-writes.json and .txt.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_milvus import start_servers  # noqa: E402
from common import machine, machine_line, save  # noqa: E402

HERE = Path(__file__).resolve().parents[1] / "src"

WORKER = r'''
import json, sys, time, uuid
import numpy as np
from neartext.data.address import parse_address
from neartext.store.base import Document, Passage
from neartext.store.milvus import MilvusStore
from neartext.data.hashing import text_hash
base = sys.argv[1]
dim = 384
rng = np.random.default_rng(0)

def docs(prefix, n):
    v = rng.standard_normal((n, dim)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    out = []
    for i in range(n):
        t = f"a ticket number {i} about {prefix} and refunds"
        h = text_hash(t)
        out.append((Document(f"{prefix}{i}", t, {"n": i % 10}, h),
                    Passage(f"{prefix}{i}", 0, len(t), h, v[i])))
    return out

a = parse_address(f"{base}_{uuid.uuid4().hex[:8]}")
manifest = {"format": 1, "neartext_version": "bench", "created": "", "dim": dim,
            "model": {"name": "bench", "fingerprint": "bench", "settings": {}},
            "metric": "cosine", "index": "flat", "chunking": None, "cleaning": {}, "source": {},
            "threshold": None}
store = MilvusStore.create(a, manifest)
store.finish_build()
try:
    bulk = docs("b", 5000)
    t0 = time.perf_counter()
    store.write([d for d, _ in bulk], [p for _, p in bulk], [])
    bulk_s = time.perf_counter() - t0
    times = []
    for d, p in docs("s", 210):
        t0 = time.perf_counter()
        store.write([d], [p], [])
        times.append(time.perf_counter() - t0)
    times = sorted(times[10:])
    print(json.dumps({"single_p50_ms": 1000 * times[len(times) // 2],
                      "single_p99_ms": 1000 * times[int(len(times) * 0.99)],
                      "bulk_docs_per_s": 5000 / bulk_s}))
finally:
    store.close()
    MilvusStore.drop(a)
'''


def one(src: Path, base: str) -> dict:
    env = {"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", WORKER, base], env=env, capture_output=True,
                         text=True)
    if out.returncode:
        sys.exit(f"{src}: the worker failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--baseline", required=True, help="src directory of the earlier neartext")
    ap.add_argument("--label", default=None, help="the baseline's name (default: its folder)")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    label = args.label or Path(args.baseline).resolve().parent.name
    with tempfile.TemporaryDirectory() as tmp:
        servers = start_servers(Path(tmp))
        target = "milvus-engine" if "milvus-engine" in servers else "milvus-server"
        base = servers[target][1]
        try:
            best: dict[str, dict[str, float]] = {"baseline": {}, "this": {}}
            for _ in range(args.rounds):
                for who, src in (("baseline", Path(args.baseline)), ("this", HERE)):
                    r = one(src, base)
                    for k, v in r.items():
                        better = max if k.endswith("per_s") else min
                        best[who][k] = better(best[who].get(k, v), v)
                    print(who, r, flush=True)
        finally:
            for proc, _ in servers.values():
                proc.terminate()
                proc.wait(60)
    rows = [f"| writes on {target} | {label} (baseline) | this | this / {label} |",
            "|---|---|---|---|"]
    for k in ("single_p50_ms", "single_p99_ms", "bulk_docs_per_s"):
        a, b = best["baseline"][k], best["this"][k]
        rows.append(f"| {k} | {a:.2f} | {b:.2f} | {b / a:.2f} |")
    res = {"machine": machine(), "target": target, "baseline": label, "rounds": args.rounds,
           "results": best}
    text = "\n".join(rows) + "\n\n" + machine_line(res["machine"])
    save("milvus-writes", res, text)
    print(text)


if __name__ == "__main__":
    main()
