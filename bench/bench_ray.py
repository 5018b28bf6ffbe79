"""``neartext embed`` in one process against ``--ray`` with encoder actors (issue 22), in one
run, same texts, same machine: wall time of the whole command (reading, model loading, Ray's
start and the Parquet write included), and the per-actor throughput with 1 and 2 actors.

Texts: the first N distinct questions of ../shared/datasets/quora_duplicates/eval.csv.

    python bench/bench_ray.py [--n 20000] [--repeats 2]
    python bench/bench_ray.py --mine 100000   # mining: one process vs Ray
    python bench/bench_ray.py --driver 2000,20000   # index: the driver's memory per row

Writes bench/results/ray.{json,txt} (ray-mine.{json,txt} with --mine, ray-driver.{json,txt}
with --driver).
"""

from __future__ import annotations

import argparse
import csv
import os
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


def mine(n: int) -> None:
    """``mine --method approx`` in one process against ``mine --ray`` (the cells' self-joins as
    Ray tasks, 2 CPUs) on n real MiniLM vectors of bench_mining's corpus, in one run: whole
    command time and whether the pairs are the same. Writes bench/results/ray-mine.{json,txt}."""
    import json

    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    from bench_mining import CACHE, vectors

    v = np.load(vectors(n))[:n]
    texts = json.loads((CACHE / f"texts_{n}.json").read_text())[:n]
    r: dict = {"vectors": n, "threshold": 0.8, "machine": machine()}
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "v.parquet"
        pq.write_table(pa.table({"id": [f"d{i}" for i in range(n)], "text": texts,
                                 "vector": [row.tolist() for row in v]}), src)
        col = Path(tmp) / "col"
        subprocess.run([sys.executable, "-m", "neartext", "index", str(src), "-c", str(col),
                        "--vectors", "vector", "--vectors-from", "all-MiniLM-L6-v2", "--id", "id",
                        "--index", "flat", "-q"], check=True)
        runs = {}
        for name, extra, out in (("one process", ["--method", "approx"], "one.parquet"),
                                 ("Ray, 2 CPUs", ["--ray"], "shards/")):
            t = time.perf_counter()
            subprocess.run([sys.executable, "-m", "neartext", "mine", str(col), "--threshold",
                            "0.8", *extra, "-o", f"{tmp}/{out}", "-q"], check=True,
                           capture_output=True)
            runs[name] = round(time.perf_counter() - t, 1)
            table = pq.read_table(Path(tmp) / out)
            r[f"pairs ({name})"] = table.num_rows
            r.setdefault("sets", []).append(set(zip(table.column("id1").to_pylist(),
                                                    table.column("id2").to_pylist())))
        sets = r.pop("sets")
        r["same_pairs"] = sets[0] == sets[1]
        r["seconds"] = runs
    base = runs["one process"]
    text = "\n".join([
        f"| {n} real vectors, whole `neartext mine --threshold 0.8` | seconds | ratio | pairs |",
        "|---|---|---|---|",
        *(f"| {k} | {t} | {t / base:.2f} | {r[f'pairs ({k})']} |" for k, t in runs.items()),
        "", f"Same pairs: {r['same_pairs']}.", machine_line(r["machine"])])
    save("ray-mine", r, text)


PEAK = ("import os, resource, sys\n"
        "import neartext.engine.ingest\n"
        "neartext.engine.ingest.PART_BYTES = int(os.environ.get('PART_BYTES', 256 << 20))\n"
        "from neartext.cli import main\n"
        "rc = main(sys.argv[1:])\n"
        "print('peak-rss-kb', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "
        "file=sys.stderr)\n"
        "sys.exit(rc)\n")


PARTED = "--ray, 2 actors, in parts of 1,000 rows"
HOW = {"one process": [], "--ray, 2 actors": ["--ray"], PARTED: ["--ray"]}


def driver(sizes: list[int], milvus: bool = False) -> None:
    """``neartext index DIR -c DIR`` (the corpus in files of 1,000 rows) in one process, with
    ``--ray`` (2 actors) reading it at once, and with ``--ray`` building it in parts of a file
    each, for each corpus size, in one run: the peak memory of the command's own process (with
    Ray: the driver; Ray's workers are other processes) and its time. The growth per row
    between the sizes is what a larger corpus adds to the driver. ``milvus``: into a Milvus
    Lite server (a process of its own, holding the index) instead of local directories.
    Writes bench/results/ray-driver.* (ray-driver-milvus.*)"""
    rows = texts(max(sizes))
    r: dict = {"machine": machine(), "runs": [], "target": "milvus" if milvus else "local"}
    with tempfile.TemporaryDirectory() as tmp:
        server, port = None, 0
        if milvus:
            from bench_milvus import free_port, start

            port = free_port()
            server, _ = start([str(Path(sys.executable).with_name("milvus-lite")), "server",
                               "--data-dir", f"{tmp}/server", "--host", "127.0.0.1", "--port",
                               str(port)], port, "Milvus Lite server")
        try:
            _driver_runs(Path(tmp), sizes, rows, r, f"milvus://127.0.0.1:{port}/c" if milvus
                         else f"{tmp}/c")
        finally:
            if server is not None:
                server.terminate()
                server.wait(60)
    _driver_table(sizes, r, "ray-driver-milvus" if milvus else "ray-driver")


def _driver_runs(tmp: Path, sizes: list[int], rows: list[str], r: dict, prefix: str) -> None:
    for n in sizes:
        corpus = Path(tmp) / f"q{n}"
        corpus.mkdir()
        for start in range(0, n, 1000):
            with (corpus / f"{start:08d}.csv").open("w", newline="", encoding="utf-8") as f:
                w = csv.writer(f)
                w.writerow(["id", "text"])
                w.writerows((f"q{i}", rows[i]) for i in range(start, min(n, start + 1000)))
        for k, (name, extra) in enumerate(HOW.items()):
            env = {**os.environ, "PART_BYTES": "1" if name == PARTED else str(256 << 20)}
            t = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-c", PEAK, "index", str(corpus), "-c",
                 f"{prefix}{n}_{k}", "--text", "text", "--id", "id", "-q", *extra],
                capture_output=True, text=True, env=env)
            if done.returncode != 0:
                raise RuntimeError(done.stderr[-2000:])
            peak = int(done.stderr.split("peak-rss-kb")[-1].split()[0])
            r["runs"].append({"rows": n, "how": name, "peak_mb": round(peak / 1024),
                              "seconds": round(time.perf_counter() - t, 1)})
            print(r["runs"][-1], flush=True)


def _driver_table(sizes: list[int], r: dict, result: str) -> None:
    lo, hi = min(sizes), max(sizes)
    lines = [f"| `neartext index` into {r['target']}, Quora questions | rows | peak MB of the "
             "command's process "
             "| seconds |", "|---|---|---|---|"]
    lines += [f"| {x['how']} | {x['rows']} | {x['peak_mb']} | {x['seconds']} |"
              for x in r["runs"]]
    for name in HOW:
        a, b = (next(x for x in r["runs"] if x["how"] == name and x["rows"] == n)
                for n in (lo, hi))
        per = (b["peak_mb"] - a["peak_mb"]) * 1024 * 1024 / (hi - lo)
        r[f"bytes_per_row ({name})"] = round(per)
        lines.append(f"\n{name}: {per / 1024:.1f} KB more per row from {lo} to {hi} rows "
                     f"(100M rows: {per * 1e8 / 1e9:.0f} GB, extrapolated)")
    lines.append(f"Target: {r['target']}. " + machine_line(r["machine"]))
    save(result, r, "\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--mine", type=int, metavar="N",
                    help="instead: mining N real vectors in one process vs on Ray")
    ap.add_argument("--driver", metavar="N1,N2",
                    help="instead: the driver's peak memory for index at these corpus sizes")
    ap.add_argument("--milvus", action="store_true", help="with --driver: into Milvus")
    args = ap.parse_args()
    if args.driver:
        driver([int(x) for x in args.driver.split(",")], args.milvus)
        return
    if args.mine:
        mine(args.mine)
        return
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
