"""``neartext embed`` in one process against ``--ray`` with encoder actors (issue 22), in one
run, same texts, same machine: wall time of the whole command (reading, model loading, Ray's
start and the Parquet write included), and the per-actor throughput with 1 and 2 actors.

Texts: the first N distinct questions of ../shared/datasets/quora_duplicates/eval.csv.

    python bench/bench_ray.py [--n 20000] [--repeats 2]

Writes bench/results/ray.{json,txt}.
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED, machine, machine_line, need, save  # noqa: E402


def texts(n: int) -> list[str]:
    out: dict[str, None] = {}
    with need(SHARED / "quora_duplicates" / "eval.csv").open(encoding="utf-8") as f:
        for r in csv.DictReader(f):
            for q in (r["question1"], r["question2"]):
                q = " ".join(q.split())
                if q:
                    out.setdefault(q)
            if len(out) >= n:
                break
    return list(out)[:n]


def run(corpus: Path, out: Path, *extra: str) -> float:
    t = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "neartext", "embed", str(corpus), "-o", str(out),
                           "--text", "text", "--id", "id", "-q", *extra],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    rows = texts(args.n)
    r: dict = {"texts": len(rows), "machine": machine()}
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "quora.csv"
        with corpus.open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["id", "text"])
            w.writerows((f"q{i}", t) for i, t in enumerate(rows))
        # the single process and 2 actors alternate, best of --repeats each (a shared machine's
        # noise only ever adds time); 1 actor once (it only gives the scaling)
        times: dict[str, list[float]] = {"single": [], "ray_2": [], "ray_1": []}
        for _ in range(args.repeats):
            times["single"].append(round(run(corpus, Path(tmp) / "a.parquet"), 1))
            times["ray_2"].append(round(run(corpus, Path(tmp) / "r2.parquet", "--ray",
                                            "--actors", "2"), 1))
            print(times, flush=True)
        times["ray_1"].append(round(run(corpus, Path(tmp) / "r1.parquet", "--ray", "--actors",
                                        "1"), 1))
        r["all_runs_s"] = times
        r["single_s"], r["ray_2_s"], r["ray_1_s"] = (min(times[k])
                                                     for k in ("single", "ray_2", "ray_1"))
    r["overhead"] = round(r["ray_2_s"] / r["single_s"], 3)
    r["scaling_1_to_2"] = round(r["ray_1_s"] / r["ray_2_s"], 3)
    text = "\n".join([
        f"| {len(rows)} Quora questions, whole `neartext embed` | seconds | texts/s | ratio |",
        "|---|---|---|---|",
        f"| one process (torch on 2 threads) | {r['single_s']} | "
        f"{round(len(rows) / r['single_s'])} | 1.00 |",
        f"| `--ray`, 2 actors (1 CPU each) | {r['ray_2_s']} | {round(len(rows) / r['ray_2_s'])} "
        f"| {r['overhead']:.2f} |",
        f"| `--ray`, 1 actor | {r['ray_1_s']} | {round(len(rows) / r['ray_1_s'])} | "
        f"{r['ray_1_s'] / r['single_s']:.2f} |",
        "",
        f"Best of {args.repeats} alternating runs (single, 2 actors; all: {times}); "
        "1 actor once.",
        f"2 actors vs 1: {r['scaling_1_to_2']:.2f}x faster.",
        machine_line(r["machine"])])
    save("ray", r, text)


if __name__ == "__main__":
    main()
