"""A cold ``neartext search`` (a new process, as a shell runs it) on the demo collection, side by
side in one run: the query encoded by the model itself (torch and sentence-transformers
imported: every search before the ONNX query encoder, and today with
``NEARTEXT_QUERY_ENCODER=model``) against the ONNX export a first search leaves beside the
collection. A keyword search (no model at all) is the floor. And the same search of the
collection once ``neartext tune`` promoted a learned ranker for it (pairs: each demo text's
first three words as the query), which applies a LightGBM model too. And the demo collection
built with ``use-multilingual`` (no torch, no export): its tokenizer read from the tables
neartext keeps in the user's cache, against the same cache with those tables unavailable (a
file in their place), which parses the tokenizer's model in Python in every process, as before
they were kept. Rounds alternate the variants so that a noisy machine weighs on each alike;
medians, their ratio, and the answers compared. neartext's modules are compiled to bytecode
first (``common.compile_package``).

    python bench/bench_cold_search.py [--rounds 7]

Writes bench/results/cold-search.{json,txt}.
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

from common import RESULTS, ROOT, compile_package, machine, machine_line, median

DEMO = ROOT / "demo" / "feedback.csv"
QUERY = "the app crashes when I open it"
VARIANTS = {  # name: (extra arguments, NEARTEXT_QUERY_ENCODER, the collection and its cache)
    "model (torch), as before": ([], "model", "demo"),
    "ONNX query encoder": ([], "auto", "demo"),
    "keyword (no model)": (["--mode", "keyword"], "auto", "demo"),
    "tuned: learned ranker, ONNX query encoder": ([], "auto", "tuned"),
    "use-multilingual, tokenizer parsed (as before)": ([], "auto", "use-parsed"),
    "use-multilingual, tokenizer from its tables": ([], "auto", "use"),
}


def search(col: Path, extra: list[str], mode: str, cache: Path | None = None
           ) -> tuple[float, list, str]:
    """Seconds of a whole ``neartext search`` process, its answer and its stderr."""
    env = {**os.environ, "NEARTEXT_QUERY_ENCODER": mode,
           **({"NEARTEXT_CACHE_DIR": str(cache)} if cache else {})}
    t = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "neartext", "search", str(col), QUERY, "-k", "5",
                           "--json", *extra], capture_output=True, text=True, env=env, check=True)
    return time.perf_counter() - t, json.loads(done.stdout), done.stderr


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    compile_package()
    with tempfile.TemporaryDirectory() as tmp:
        # a cache of its own: with the user's, the model's twin made by earlier runs answers
        # the first search, which then loads no model and exports nothing
        os.environ["NEARTEXT_CACHE_DIR"] = str(Path(tmp) / "cache")
        col = Path(tmp) / "feedback"
        subprocess.run([sys.executable, "-m", "neartext", "index", str(DEMO), "-c", str(col),
                        "--text", "text", "--id", "id", "-q"], check=True, capture_output=True)
        first, answer, err = search(col, [], "auto")  # loads the model, then makes the export
        assert "exported to ONNX" in err, err
        tuned = Path(tmp) / "tuned"
        shutil.copytree(col, tuned)
        pairs = Path(tmp) / "pairs.csv"
        with DEMO.open(encoding="utf-8") as f, pairs.open("w", newline="", encoding="utf-8") as o:
            w = csv.writer(o)
            w.writerow(["query", "passage"])
            w.writerows((" ".join(r["text"].split()[:3]), r["text"]) for r in csv.DictReader(f))
        done = subprocess.run([sys.executable, "-m", "neartext", "tune", str(tuned), "--pairs",
                               str(pairs), "--force", "--json"], capture_output=True, text=True,
                              check=True)
        assert json.loads(done.stdout)["chosen"]["search"].get("fusion") == "learned", done.stdout
        search(tuned, [], "auto")  # its own export of the query encoder, once
        use = Path(tmp) / "use"
        subprocess.run([sys.executable, "-m", "neartext", "index", str(DEMO), "-c", str(use),
                        "--text", "text", "--id", "id", "--model", "use-multilingual", "-q"],
                       check=True, capture_output=True)
        search(use, [], "auto")  # the weights' copy and the tokenizer's tables made
        parsed_cache = Path(tmp) / "cache-parsed"
        shutil.copytree(Path(tmp) / "cache", parsed_cache)
        [tables] = parsed_cache.glob("use-multilingual/*/tokenizer-*")
        shutil.rmtree(tables)
        tables.write_text("tables unavailable: the tokenizer's model is parsed\n")
        where = {"demo": (col, None), "tuned": (tuned, None), "use": (use, None),
                 "use-parsed": (use, parsed_cache)}
        times: dict[str, list[float]] = {v: [] for v in VARIANTS}
        answers: dict[str, list] = {}
        for _ in range(args.rounds):
            for name, (extra, mode, target) in VARIANTS.items():
                seconds, got, _ = search(*where[target][:1], extra, mode, where[target][1])
                times[name].append(seconds)
                answers[name] = got
        assert answers["use-multilingual, tokenizer from its tables"] == \
            answers["use-multilingual, tokenizer parsed (as before)"]
    base = median(times["model (torch), as before"])
    same = [r["id"] for r in answers["ONNX query encoder"]] == [r["id"] for r in answer] and max(
        abs(a["score"] - b["score"]) for a, b in zip(answers["ONNX query encoder"], answer)) <= 1e-5
    rows = [{"variant": v, "median_s": round(median(t), 3), "min_s": round(min(t), 3),
             "max_s": round(max(t), 3), "vs_model": round(median(t) / base, 3)}
            for v, t in times.items()]
    result = {"machine": machine(), "rounds": args.rounds, "query": QUERY,
              "first_search_with_export_s": round(first, 2), "same_answers": same, "rows": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "cold-search.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"Cold `neartext search` on the demo collection (247 texts, all-MiniLM-L6-v2; "
             "the last two rows: built with use-multilingual), "
             f"whole process, median of {args.rounds} alternating rounds; baseline: the query "
             "encoded by the model itself (torch), as every search did before. neartext's "
             "modules compiled to bytecode first, as installing it leaves them.", "",
             "| variant | median s | min s | max s | × baseline |", "|---|---|---|---|---|"]
    lines += [f"| {r['variant']} | {r['median_s']} | {r['min_s']} | {r['max_s']} | "
              f"{r['vs_model']} |" for r in rows]
    lines += ["", f"The first search (loads the model, answers, then exports it once): "
                  f"{first:.2f} s. Same answers (ids; scores within 1e-5): {same}.",
              machine_line(result["machine"])]
    (RESULTS / "cold-search.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
