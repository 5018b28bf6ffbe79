"""The memes user's loop end to end, through the CLI as she runs it (issue 35): `neartext index`
of a Russian set of her shape with use-multilingual, `neartext eval collection` of every fixed
ranking on held-out queries (the baseline: the best of them, in the same run), `neartext tune`
on 2,000 training pairs (the issue's training target: ≤ 60 s for 2,000 pairs, the whole process
timed), and `neartext eval collection` of the tuned version on the same held-out queries, which
`tune` never saw.

Data: the situations set of bench_ranker.py (``situations_ru``: STS-B in Russian, pairs scored 3
or more, each gold sentence among two other sentences; 4,028 documents, 3,000 queries), the
queries shuffled (seeded) into 2,000 for `tune` and 1,000 held out. ``--set descriptions``: the
same loop on ParaPhraser in descriptions (``paraphraser_in_descriptions``), where some documents
answer two queries, so `tune` also fits and measures its learned rankings remembering the
queries (the training time where that is so). ``--set long``: 1,000 ParaPhraser queries, each
gold headline among eleven others (``paraphraser_in_long_descriptions``: descriptions of about
700 characters), 700 of them given to `tune`.

``--chunk N [--overlap M]`` runs the whole loop twice in one run, on the same split: on the
collection as above (the baseline) and on one indexed in passages of N words (`neartext index
--chunk N --overlap M`), whose semantic channel then scores each document by its passage most
alike the query, and reports both side by side.

    python bench/bench_tune_cli.py [--set situations|descriptions|long]
                                   [--chunk N [--overlap M]] [--out tune-cli]
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ranker import (  # noqa: E402
    paraphraser_in_descriptions,
    paraphraser_in_long_descriptions,
    situations_ru,
)
from common import machine, machine_line, save  # noqa: E402

TRAIN = 2000  # training pairs (at most 70% of the set's queries: --set long, 700 of 1,000)
#: the sets (--set): how each is built, and its name in the output
SETS = {"situations": (situations_ru, "situations_ru"),
        "descriptions": (paraphraser_in_descriptions, "ParaPhraser in descriptions"),
        "long": (paraphraser_in_long_descriptions, "ParaPhraser in long descriptions")}
FIXED = {"semantic": ["--mode", "semantic"], "keyword": ["--mode", "keyword"],
         "chars": ["--mode", "chars"],
         **{f"hybrid blend alpha {a}": ["--mode", "hybrid", "--alpha", str(a)]
            for a in (0.3, 0.5, 0.7, 0.9)},
         "hybrid rrf": ["--mode", "hybrid", "--fusion", "rrf"]}


def neartext(*args: str) -> tuple[str, float]:
    """Run the CLI as a user does (a fresh process); its output and wall seconds."""
    exe = Path(sys.executable).with_name("neartext")
    t0 = time.perf_counter()
    done = subprocess.run([str(exe), *args], capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - t0
    if done.returncode:
        raise SystemExit(f"neartext {' '.join(args)} failed:\n{done.stderr}")
    return done.stdout, seconds


def loop(tmp: Path, path: Path, columns: list[str], index_args: list[str], train: int
         ) -> dict:
    """Index (with ``index_args``), measure every fixed ranking on the held-out queries, tune
    on the training pairs and measure the tuned version: what the memes user does."""
    col = str(tmp / ("col" + "".join(index_args).replace("-", "_")))
    _, index_s = neartext("index", str(path), "-c", col, "--text", ",".join(columns),
                          "--id", "id", "--model", "use-multilingual", "-q", *index_args)

    def mrr(*how: str) -> dict:
        out, _ = neartext("eval", "collection", col, "--pairs", str(tmp / "held.csv"),
                          "--gold-id", "doc_id", "-q", "--json", *how)
        d = json.loads(out)
        return {k: round(d[k], 4) for k in ("mrr@10", "ndcg@10", "recall@1", "recall@10")}

    before = {name: mrr(*how) for name, how in FIXED.items()}
    report, tune_s = neartext("tune", col, "--pairs", str(tmp / "train.csv"),
                              "--gold-id", "doc_id", "-q", "--json")
    tuned = json.loads(report)
    after = mrr()
    best = max(before, key=lambda k: before[k]["mrr@10"])
    single = max(("semantic", "keyword", "chars"), key=lambda k: before[k]["mrr@10"])
    return {"index_args": index_args, "train": train, "index_s": round(index_s, 1),
            "tune_s": round(tune_s, 1), "before": before, "best_fixed": best,
            "best_single": single, "after": after,
            "chosen": tuned["ranking"], "promoted": tuned["promoted"],
            "tune_says": tuned["reason"],
            "gain_vs_best_fixed": round(after["mrr@10"] - before[best]["mrr@10"], 4),
            "gain_vs_best_single": round(after["mrr@10"] - before[single]["mrr@10"], 4)}


def lines_of(run: dict, title: str) -> list[str]:
    out = [title, "| ranking (held-out queries) | MRR@10 | nDCG@10 | recall@1 | recall@10 |",
           "|---|---|---|---|---|"]
    for name, m in [*run["before"].items(), (f"tuned: {run['chosen']}", run["after"])]:
        out.append(f"| {name} | {m['mrr@10']:.4f} | {m['ndcg@10']:.4f} | "
                   f"{m['recall@1']:.3f} | {m['recall@10']:.3f} |")
    return out + [
        f"- tuned vs the best fixed ranking ({run['best_fixed']}): MRR@10 "
        f"{run['gain_vs_best_fixed']:+.4f}; vs the best single channel ({run['best_single']}): "
        f"{run['gain_vs_best_single']:+.4f}",
        f"- `neartext tune`, whole process: {run['tune_s']} s for {run['train']} pairs "
        f"(target ≤ 60 s); `neartext index`: {run['index_s']} s",
        f"- `tune` said: {run['tune_says']}"]


def gain(a: dict, b: dict) -> str:
    """MRR@10 of ``a`` over ``b``, signed."""
    return f"{a['mrr@10'] - b['mrr@10']:+.4f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--set", choices=tuple(SETS), default="situations")
    ap.add_argument("--chunk", type=int, help="also run the loop on passages of N words")
    ap.add_argument("--overlap", type=int, default=0, help="with --chunk: words shared by "
                    "adjacent passages")
    ap.add_argument("--out", default="tune-cli")
    args = ap.parse_args()
    data, set_name = SETS[args.set]
    with tempfile.TemporaryDirectory() as tmp_:
        tmp = Path(tmp_)
        path, columns, queries, gold = data(tmp)
        qids = sorted(queries, key=lambda q: (len(q), q))
        random.Random(1).shuffle(qids)
        train = min(TRAIN, int(0.7 * len(qids)))
        for file, part in (("train.csv", qids[:train]), ("held.csv", qids[train:])):
            with (tmp / file).open("w", newline="", encoding="utf-8") as f:
                w = csv.writer(f)
                w.writerow(["query", "doc_id"])
                w.writerows((queries[q][0], next(iter(gold[q]))) for q in part)
        with path.open(encoding="utf-8", newline="") as f:
            documents = sum(1 for _ in csv.reader(f)) - 1
        res = {"machine": machine(), "documents": documents, "training_pairs": train,
               "held_out_queries": len(qids) - train, **loop(tmp, path, columns, [], train)}
        if args.chunk:
            res["chunked"] = loop(tmp, path, columns, ["--chunk", str(args.chunk),
                                                       "--overlap", str(args.overlap)], train)
    title = (f"{set_name} through the CLI: {res['documents']} documents, use-multilingual; "
             f"`tune` on {train} pairs, every ranking measured on the other "
             f"{res['held_out_queries']} queries")
    lines = lines_of(res, title)
    if args.chunk:
        chunked = res["chunked"]
        lines += ["", *lines_of(chunked, f"The same split, the collection indexed in passages "
                                         f"of {args.chunk} words (overlap {args.overlap})")]
        fixed = [f"{k} {gain(chunked['before'][k], res['before'][k])}"
                 for k in ("semantic", "hybrid blend alpha 0.3", "hybrid blend alpha 0.5")]
        best_fixed = gain(chunked["before"][chunked["best_fixed"]],
                          res["before"][res["best_fixed"]])
        lines.append("- in passages against whole documents (the baseline above), MRR@10: "
                     f"{'; '.join(fixed)}; the best fixed ranking {best_fixed}; tuned "
                     f"{gain(chunked['after'], res['after'])}")
    lines += ["", machine_line(res["machine"])]
    text = "\n".join(lines)
    save(args.out, res, text)
    print(text)


if __name__ == "__main__":
    main()
