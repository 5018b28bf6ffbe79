"""A simulated feedback loop (issue 19): ratings arrive in rounds, ``improve`` runs after each
one, and the search that users get is measured on queries nobody rated.

Data: ParaPhraser (../shared/datasets/paraphraser_ru), pairs of classes 0 and 1 as (query =
text_1, gold passage = text_2); every distinct text_2 is a document of one collection. Queries
are split 80/20 (seeded, by query): the 20% are the clean evaluation set, never rated; the 80%
are the pool users come from.

Each round, 100 pool queries not asked before are searched with the collection's current
version (top 5, as the bot shows them), and their user rates two results: 👍 the gold passage
and 👎 the best-ranked wrong one (200 ratings). In the noisy round, 30% of the round's
ratings are flipped (👍 on the wrong passage, 👎 on the gold). Then ``neartext.ops.improve.improve``
runs (all ratings so far, its held-out gate), and MRR@10 of the clean set is measured with the
version now current and, when the gate refused, with the refused candidate as well (what
promoting it would have given).

    python bench/bench_feedback_loop.py [--model all-MiniLM-L6-v2] [--rounds 8] [--noisy 5]
                                        [--choose-best]

Writes bench/results/feedback-loop-MODEL.{json,txt,png}; with ``--choose-best`` (the same loop
with the choice rule ``tune`` had before ``neartext.ops.learning.choose_row``: the baseline),
feedback-loop-MODEL-choose-best.{json,txt,png}.
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_adapters import paraphraser, split  # noqa: E402
from common import RESULTS, machine, machine_line, save  # noqa: E402

PER_ROUND = 100  # queries a round; two ratings each
FLIPPED = 0.3


def clean_mrr(col, held, version=None) -> float:
    from neartext.algo.metrics import retrieval_metrics

    queries = list(dict.fromkeys(q for q, _ in held))
    gold: dict[str, set[str]] = {}
    for q, p in held:
        gold.setdefault(q, set()).add(p)
    rows = col.search_many(queries, 10, version=version)
    ranked = {q: [r.id for r in row] for q, row in zip(queries, rows)}
    return round(retrieval_metrics(ranked, {q: dict.fromkeys(g, 1.0) for q, g in gold.items()})
                 ["mrr@10"], 4)


def run(model: str, rounds: int, noisy: int, pairs: int, seed: int = 0) -> dict:
    from neartext import Collection, Record
    from neartext.data.ranking import Ranking
    from neartext.engine.feedback import FeedbackStore
    from neartext.ops.improve import improve
    from neartext.ops.versions import version_view

    data = paraphraser(pairs)
    train, held, passages = split(data, seed)
    pid = {p: f"p{i}" for i, p in enumerate(passages)}
    held = [(q, pid[p]) for q, p in held]
    pool: dict[str, str] = {}
    for q, p in train:
        pool.setdefault(q, pid[p])
    order = list(pool)
    random.Random(seed).shuffle(order)
    rng = random.Random(seed + 1)
    out: dict = {"model": model, "documents": len(passages), "eval_queries":
                 len(dict.fromkeys(q for q, _ in held)), "per_round": 2 * PER_ROUND,
                 "noisy_round": noisy, "flipped": FLIPPED, "rounds": []}
    with tempfile.TemporaryDirectory() as tmp:
        col = Collection.create(Path(tmp) / "col", model=model)
        t = time.perf_counter()
        col.upsert([Record(pid[p], p, {}) for p in passages])
        out["index_s"] = round(time.perf_counter() - t, 1)
        start = clean_mrr(col, held)
        out["rounds"].append({"round": 0, "version": 1, "mrr@10": start, "promoted": None})
        print(f"round 0: clean MRR@10 {start}", flush=True)
        for r in range(1, rounds + 1):
            asked = order[(r - 1) * PER_ROUND:r * PER_ROUND]
            shown = col.search_many(asked, 5)
            ratings = []
            for q, hits in zip(asked, shown):
                wrong = next((h.id for h in hits if h.id != pool[q]), None)
                ratings.append((q, pool[q], True))
                if wrong is not None:
                    ratings.append((q, wrong, False))
            if r == noisy:  # a share of this round's ratings says the opposite
                for i in rng.sample(range(len(ratings)), int(FLIPPED * len(ratings))):
                    q, d, good = ratings[i]
                    ratings[i] = (q, d, not good)
            fb = FeedbackStore(col.path)
            for q, d, good in ratings:
                fb.add(q, d, good)
            fb.close()
            t = time.perf_counter()
            report, line = improve(col, min_new=1)
            seconds = round(time.perf_counter() - t, 1)
            assert report is not None, line
            row = {"round": r, "noisy": r == noisy, "ratings": len(ratings),
                   "promoted": report.promoted, "version": col.manifest.version,
                   "ranking": report.ranking, "gate_gain": report.gain,
                   "gate_lower_95": report.gain_lower_95,
                   "improve_s": seconds, "reason": report.reason,
                   "mrr@10": clean_mrr(col, held)}
            current = {"adapter": "current", "search": col.manifest.ranking().setting().to_dict()}
            if not report.promoted and report.chosen != current:
                # what the gate refused: its best option (the new adapter or the current one,
                # with the ranking measured best), had it been promoted
                now, adapter = col.current()
                if report.chosen["adapter"] == "new":
                    _, now, adapter = version_view(col, str(col.path / "adapters" /
                                                             "candidate.npz"))
                refused = dataclasses.replace(now, search=Ranking.from_dict(report.chosen["search"]))
                row["candidate_mrr@10"] = clean_mrr(col, held, (refused, adapter))
            out["rounds"].append(row)
            print(f"round {r}{' (noisy)' if r == noisy else ''}: {row['reason']}; clean MRR@10 "
                  f"{row['mrr@10']}" + (f", refused candidate {row['candidate_mrr@10']}"
                                        if "candidate_mrr@10" in row else ""), flush=True)
        col.close()
    return out


def plot(r: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = r["rounds"]
    fig, ax = plt.subplots(figsize=(7.5, 4.2), dpi=120)
    xs = [x["round"] for x in rows]
    ax.plot(xs, [x["mrr@10"] for x in rows], "-", color="#3465a4", lw=2,
            label="search users get (current version)")
    for x in rows[1:]:
        kept = x["promoted"]
        ax.plot(x["round"], x["mrr@10"], "o" if kept else "s", ms=8,
                color="#4e9a06" if kept else "#888a85")
        if "candidate_mrr@10" in x:
            ax.plot(x["round"], x["candidate_mrr@10"], "x", ms=9, mew=2, color="#cc0000")
    ax.plot([], [], "o", color="#4e9a06", label="promoted")
    ax.plot([], [], "s", color="#888a85", label="kept (not promoted)")
    ax.plot([], [], "x", color="#cc0000", mew=2, label="refused candidate, had it been promoted")
    if r["noisy_round"] and r["noisy_round"] <= len(rows) - 1:
        ax.axvspan(r["noisy_round"] - 0.4, r["noisy_round"] + 0.4, color="#fce94f", alpha=0.4,
                   label=f"{int(r['flipped'] * 100)}% of the round's ratings flipped")
    ax.set_xlabel(f"round ({r['per_round']} ratings each)")
    ax.set_ylabel("MRR@10 on queries nobody rated")
    ax.set_title(f"neartext improve after each round: ParaPhraser ru, {r['model']}, "
                 f"{r['documents']} documents", fontsize=10)
    ax.set_xticks(xs)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def table(r: dict) -> str:
    lines = ["| round | ratings | gate (held-out gain, 95% low) | best option | improve s | "
             "MRR@10, unrated queries | had it been promoted |", "|---|---|---|---|---|---|---|",
             f"| 0 | | | semantic | | {r['rounds'][0]['mrr@10']} | |"]
    for x in r["rounds"][1:]:
        gate = ("promoted" if x["promoted"] else "refused") + \
            f" ({x['gate_gain']:+.4f}, low {x['gate_lower_95']:+.4f})"
        lines.append(f"| {x['round']}{' noisy' if x['noisy'] else ''} | {x['ratings']} | {gate} "
                     f"| {x['ranking']} | {x['improve_s']} | {x['mrr@10']} | "
                     f"{x.get('candidate_mrr@10', '')} |")
    lines.append(f"\n{r['model']}, {r['documents']} documents, {r['eval_queries']} evaluation "
                 f"queries (never rated). Gate: the MRR@10 gain of the best option over the "
                 f"current version on held-out rated queries, and the lower end of its 95% "
                 f"bootstrap interval; promoted when the gain is at least 0.005 and the lower "
                 f"end above 0.")
    lines.append(machine_line(r["machine"]))
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="all-MiniLM-L6-v2")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--noisy", type=int, default=5)
    ap.add_argument("--pairs", type=int, default=6000)
    ap.add_argument("--choose-best", action="store_true",
                    help="the baseline: improve chooses the best measured ranking of all, as "
                         "tune did before choose_row (bench/baselines.py); written as "
                         "feedback-loop-MODEL-choose-best")
    args = ap.parse_args()
    if args.choose_best:
        from baselines import choose_best

        from neartext.ops import tune

        tune.choose_row = choose_best
    r = run(args.model, args.rounds, args.noisy, args.pairs)
    r["machine"] = machine()
    r["choice"] = "best of all (before)" if args.choose_best else "choose_row"
    name = (f"feedback-loop-{args.model.lower().replace('/', '-')}"
            + "-choose-best" * args.choose_best)
    plot(r, RESULTS / f"{name}.png")
    save(name, r, table(r))


if __name__ == "__main__":
    main()
