"""neartext against the vector stores users would pick instead, on the same vectors: qdrant-client
(local mode), LanceDB, txtai (faiss) and Chroma, each in its own virtual environment (``make bench-peers``
creates them in bench/.peers), so only each tool's own cost counts (the vectors are given:
20,000 Quora questions embedded once with the default model, bench/.cache). Build, disk, open,
query p50 with the query vector given, a filter keeping 10%, recall@10 against exact search, an
update giving 1% of the documents new vectors;
the stores take turns in alternating order over the rounds; medians of the rounds.

    python bench/bench_peers.py [--rounds 3] [--queries 300] [--stores neartext,qdrant,...,chroma]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench_ann import vectors  # noqa: E402
from common import ROOT, machine, machine_line, save  # noqa: E402

PEERS = ROOT / "bench" / ".peers"
PYTHON = {"neartext": Path(sys.executable), "qdrant": PEERS / "qdrant" / "bin" / "python",
          "lancedb": PEERS / "lancedb" / "bin" / "python", "txtai": PEERS / "txtai" / "bin" / "python",
          "chroma": PEERS / "chroma" / "bin" / "python"}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--stores", default="neartext,qdrant,lancedb,txtai,chroma")
    args = ap.parse_args()
    stores = [s for s in args.stores.split(",") if s]
    missing = [s for s in stores if not PYTHON[s].is_file()]
    if missing:
        raise SystemExit(f"no environment for {', '.join(missing)}: run `make bench-peers`")
    x = vectors(20000)
    rng = np.random.default_rng(0)
    q = x[rng.choice(len(x), args.queries, replace=False)] + 0.02 * rng.standard_normal(
        (args.queries, x.shape[1])).astype(np.float32)
    q = (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)
    exact = np.argsort(-(q @ x.T), axis=1)[:, :10]
    runs: dict[str, list[dict]] = {s: [] for s in stores}
    with tempfile.TemporaryDirectory(prefix="neartext-peers-") as tmp:
        t = Path(tmp)
        np.save(t / "x.npy", x)
        np.save(t / "q.npy", q)
        np.save(t / "exact.npy", exact)
        for r in range(args.rounds):
            for store in (stores if r % 2 == 0 else stores[::-1]):
                out = subprocess.run(
                    [str(PYTHON[store]), str(ROOT / "bench" / "peers" / "worker.py"), store,
                     str(t / "x.npy"), str(t / "q.npy"), str(t / "exact.npy"), str(t / store)],
                    capture_output=True, text=True)
                if out.returncode != 0:
                    raise SystemExit(f"{store}: {out.stderr[-2000:]}")
                res = json.loads(out.stdout.strip().splitlines()[-1])
                print(res, flush=True)
                runs[store].append(res)
    keys = ["build_s", "open_s", "disk_mb", "p50_ms", "p50_filtered_ms", "recall_at_10",
            "update_s", "update_found"]
    med = {s: {k: float(np.median([r[k] for r in runs[s]])) for k in keys} for s in stores}
    for s in stores:
        med[s]["filtered_always_k"] = all(r["filtered_always_k"] for r in runs[s])
    rows = [f"| {len(x):,} vectors (given) | " + " | ".join(stores) + " |",
            "|---|" + "---|" * len(stores)]
    for k, label in (("disk_mb", "disk, MB"), ("build_s", "build, s"), ("open_s", "open, s"),
                     ("update_s", "update 1% (200 new vectors), s"),
                     ("p50_ms", "query p50, ms"), ("p50_filtered_ms", "filtered (10%) p50, ms"),
                     ("recall_at_10", "recall@10 vs exact")):
        rows.append(f"| {label} | " + " | ".join(f"{med[s][k]:g}" for s in stores) + " |")
    rows.append("| filtered: always k | " + " | ".join(
        "yes" if med[s]["filtered_always_k"] else "no" for s in stores) + " |")
    m = machine()
    table = "\n".join(rows) + f"\n\nMedians of {args.rounds} rounds. {machine_line(m)}"
    print(table)
    everyone = stores == list(PYTHON)  # a run of some stores does not replace the full table
    save("peers" if everyone else "peers-" + "-".join(stores),
         {"runs": runs, "medians": med, "machine": m}, table)


if __name__ == "__main__":
    main()
