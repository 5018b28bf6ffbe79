"""Processes that embed, side by side in one run: the model itself (torch and
sentence-transformers imported in every process: every build before the model's ONNX twin, and
today with ``NEARTEXT_DOCUMENT_ENCODER=model NEARTEXT_QUERY_ENCODER=model``) against its ONNX
twin in the user's cache (made once, after the model's second load on the machine). Three jobs
as a user runs them, each a whole ``neartext`` process: a new collection of the demo (247
texts), a new collection of 2,000 Quora questions (throughput), and an upsert of 10 new texts
into an existing collection (a cron job). Rounds alternate the variants; medians of seconds and
peak RSS, their ratios, and the vectors compared (the same searches, scores within 1e-5).

    python bench/bench_twin.py [--rounds 3]

Writes bench/results/twin.{json,txt}.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import RESULTS, ROOT, SHARED, machine, machine_line, median, need

DEMO = ROOT / "demo" / "feedback.csv"
VARIANTS = {"model (torch), as before": "model", "ONNX twin": "auto"}
QUERIES = ["the app crashes when I open it", "how do I get my money back", "dark theme"]


def run(args: list[str], mode: str, cache: Path) -> tuple[float, float]:
    """Seconds and peak RSS (MB) of one whole ``neartext`` process."""
    env = {**os.environ, "NEARTEXT_CACHE_DIR": str(cache), "NEARTEXT_DOCUMENT_ENCODER": mode,
           "NEARTEXT_QUERY_ENCODER": mode}
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "neartext", *args, "-q"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t
    err = proc.stderr.read().decode() if proc.stderr else ""
    if status != 0:
        raise RuntimeError(f"neartext {' '.join(args)}: {err[-2000:]}")
    return seconds, usage.ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    quora = need(SHARED / "quora_duplicates" / "eval.csv")
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        texts: list[str] = []
        with quora.open(encoding="utf-8") as f:
            for row in csv.DictReader(f):
                texts += [row["question1"], row["question2"]]
        q2k = tmp / "quora2k.csv"
        with q2k.open("w", encoding="utf-8", newline="") as f:
            w = csv.writer(f)
            w.writerow(["id", "text"])
            w.writerows((f"q{i}", t) for i, t in enumerate(dict.fromkeys(texts)) if i < 2000)
        new10 = tmp / "new10.csv"
        with new10.open("w", encoding="utf-8", newline="") as f:
            w = csv.writer(f)
            w.writerow(["id", "text"])
            w.writerows((f"new-{i}", f"Ticket {i}: the export to PDF stops at page {i + 3}.")
                        for i in range(10))
        cache = tmp / "user-cache"
        for n in range(2):  # the model recorded, then loaded again: its twin is made
            run(["index", str(DEMO), "-c", str(tmp / f"warm{n}"), "--text", "text", "--id", "id"],
                "auto", cache)
        assert (cache / "onnx").is_dir(), "no twin was made"
        jobs = {
            "index demo (247 texts), new collection":
                lambda c: ["index", str(DEMO), "-c", str(c), "--text", "text", "--id", "id"],
            "index 2,000 Quora questions, new collection":
                lambda c: ["index", str(q2k), "-c", str(c), "--text", "text", "--id", "id"],
            "upsert 10 texts into the demo collection":
                lambda c: ["upsert", str(c), str(new10), "--text", "text", "--id", "id"],
        }
        times = {(j, v): [] for j in jobs for v in VARIANTS}
        rss = {(j, v): [] for j in jobs for v in VARIANTS}
        built: dict[str, Path] = {}
        runs = 0
        for _ in range(a.rounds):
            for job, argv in jobs.items():
                for variant, mode in VARIANTS.items():
                    runs += 1
                    target = tmp / f"run{runs}"
                    if job.startswith("upsert"):
                        shutil.copytree(tmp / "warm0", target)
                    s, m = run(argv(target), mode, cache)
                    times[(job, variant)].append(s)
                    rss[(job, variant)].append(m)
                    built[f"{job}|{variant}"] = target
        same = compare(built[f"index demo (247 texts), new collection|{v}"] for v in VARIANTS)
    rows = []
    for job in jobs:
        base_t = median(times[(job, "model (torch), as before")])
        base_m = median(rss[(job, "model (torch), as before")])
        for variant in VARIANTS:
            t, m = median(times[(job, variant)]), median(rss[(job, variant)])
            rows.append({"job": job, "variant": variant, "median_s": round(t, 2),
                         "peak_rss_mb": round(m), "time_vs_model": round(t / base_t, 3),
                         "rss_vs_model": round(m / base_m, 3)})
    result = {"machine": machine(), "rounds": a.rounds, "same_answers": same, "rows": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "twin.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["Whole `neartext` processes that embed (all-MiniLM-L6-v2), median of "
             f"{a.rounds} alternating rounds; baseline: the model itself in every process "
             "(torch), as before the ONNX twin.", "",
             "| job | variant | median s | × baseline | peak RSS MB | × baseline |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['job']} | {r['variant']} | {r['median_s']} | {r['time_vs_model']} | "
              f"{r['peak_rss_mb']} | {r['rss_vs_model']} |" for r in rows]
    lines += ["", f"The demo collections built both ways answer alike (ids; scores within 1e-5, "
                  f"searched with the model): {same}.", machine_line(result["machine"])]
    (RESULTS / "twin.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def compare(paths: object) -> bool:
    """Whether the collections answer the same searches alike, queries encoded by the model."""
    from neartext import Collection, load_encoder

    enc = load_encoder("default")
    answers = []
    for p in paths:  # type: ignore[attr-defined]
        with Collection.open(p, model=enc) as col:
            answers.append([col.search(q, k=5) for q in QUERIES])
    first, *others = answers
    return all([r.id for r in x] == [r.id for r in y]
               and max(abs(r.score - s.score) for r, s in zip(x, y)) <= 1e-5
               for other in others for x, y in zip(first, other))


if __name__ == "__main__":
    main()
