"""How `neartext tune` chooses among the rankings it measured (issue 35), against how it chose
before, from the same `tune` runs: the best held-out MRR@10 of all (the baseline,
bench/baselines.py ``choose_best``) against the learned ranking unless a fixed one ranks better
beyond the noise (``neartext.ops.learning.choose_row``).

Each set is split into 5 folds by query. On each fold, `tune` runs (the library's, as the CLI
calls it: its adapter, its mined negatives, its held-out split, its fits) on a fresh copy of the
collection with the other folds' queries as training pairs; both rules' choices among the
rankings it measured are then searched with the fold's own queries, which `tune` never saw.
Reported: MRR@10 over all of them and where the single channels' first results differ (the
semantic one with the fold's adapter), and the paired gain with its 95% bootstrap interval; and,
where the channels differ, the issue's targets for the tuned ranking: its gain over the best
single channel and over the best fixed ranking (every fixed ranking `tune` measures, with and
without the fold's adapter, the best on those very queries).

With ``--without-neighbours`` (or ``--without-known``), each fold's `tune` runs a second time on
another fresh copy with the learned rankings' features as they were before the neighbour
features (the remembered queries' features) — the same run's baseline for them, chosen by the
same rule — and the report adds that comparison.

With ``--splits N``, each set is split into 5 folds N times over (other seeds; the first split
is the one above) and `tune` runs on every fold of each (its seed changes with the split): the
targets are then also given as the mean over the splits of each split's gain, with a 95%
bootstrap interval over queries (one resample for all splits). Which queries land in which
fold moves a small set's result: the mean over splits is less of a draw.

    python bench/bench_tune_choice.py [--only cranfield|paraphraser|stsb|descriptions|situations]
        [--without-neighbours | --without-known] [--splits N]
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import functools
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from baselines import choose_best  # noqa: E402
from bench_ranker import (  # noqa: E402
    FOLDS,
    SINGLES,
    cranfield,
    first_results,
    folds_of,
    paired_gain,
    paraphraser,
    paraphraser_in_descriptions,
    situations_ru,
    stsb_ru,
)
from common import machine, machine_line, save  # noqa: E402

BEFORE, NOW = "best of all (before)", "learned unless a fixed one is better beyond the noise"
#: the features the same run's baseline goes without (``--without-neighbours``,
#: ``--without-known``), and its label
WITHOUT = "neighbour features"
NO_NEIGHBOURS = f"{NOW}, without the {WITHOUT}"
SETS = {"cranfield": (cranfield, "default"),
        "cranfield_use": (cranfield, "use-multilingual"),
        "paraphraser_ru": (paraphraser, "use-multilingual"),
        "stsb_ru": (stsb_ru, "use-multilingual"),
        "descriptions_ru": (paraphraser_in_descriptions, "use-multilingual"),
        "titles_ru": (functools.partial(paraphraser_in_descriptions, titled=True),
                      "use-multilingual"),
        "situations_ru": (situations_ru, "use-multilingual")}


@contextlib.contextmanager
def without_neighbours():
    """`tune`'s learned rankings fitted on their features without the neighbour features (or
    the remembered queries' features, as :data:`WITHOUT` says)."""
    from neartext.data.ranking import KNOWN_FEATURES, NEIGHBOUR_FEATURES
    from neartext.ops import learning

    dropped = NEIGHBOUR_FEATURES if WITHOUT == "neighbour features" else KNOWN_FEATURES
    kept = learning.RANKER_FEATURES, learning.LINEAR_FEATURES
    learning.RANKER_FEATURES, learning.LINEAR_FEATURES = (
        tuple(n for n in names if n not in dropped) for names in kept)
    try:
        yield
    finally:
        learning.RANKER_FEATURES, learning.LINEAR_FEATURES = kept


def run(name: str, data, model: str, tmp: Path, baseline: bool = False, split: int = 0) -> dict:
    """Both rules' choices on every fold of one set; per-query reciprocal ranks and choices
    (and, given ``baseline``, the choice of a `tune` without the neighbour features); ``split``
    names the split into folds (:func:`folds_of`). The per-query figures are returned under
    ``raw`` (not saved)."""
    from neartext import Collection
    from neartext.data.ranking import TEXT_MODES, Ranking
    from neartext.ops import tune as tuning
    from neartext.ops.learning import choose_row

    path, columns, queries, gold = data(tmp)
    base_dir = tmp / name
    if not base_dir.exists():  # (built once for every split)
        Collection.from_file(base_dir, path, columns, "id", model=model)[0].close()
    qids = sorted(queries)
    texts = [queries[q][0] for q in qids]
    golds = [set(gold[q]) for q in qids]
    fold = folds_of(qids, split)
    rr = {BEFORE: np.zeros(len(qids)), NOW: np.zeros(len(qids))}
    if baseline:
        rr[NO_NEIGHBOURS] = np.zeros(len(qids))
    first: dict[str, list] = {s: [None] * len(qids) for s in SINGLES}
    folds, tune_s = [], []
    fixed: dict[str, np.ndarray] = {}
    seen: dict = {}
    chooser, trainer = tuning.choose_row, tuning.train_adapter

    def recording_choice(rows):  # what tune measured, kept for the comparison
        seen["rows"] = rows
        return chooser(rows)

    def recording_training(*a, **kw):
        seen["trained"] = trainer(*a, **kw)
        return seen["trained"]

    tuning.choose_row, tuning.train_adapter = recording_choice, recording_training
    try:
        for f in range(FOLDS):
            train, test = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
            seed = f + 1000 * split
            here = tmp / f"{name}-{f}"
            shutil.copytree(base_dir, here)
            pairs = tmp / f"{name}-{f}.csv"
            with pairs.open("w", newline="", encoding="utf-8") as fh:
                w = csv.writer(fh)
                w.writerow(["query", "doc_id"])
                w.writerows((texts[i], d) for i in train for d in sorted(gold[qids[i]]))
            test_texts, test_golds = [texts[i] for i in test], [golds[i] for i in test]
            chosen_without = None
            if baseline:
                again = tmp / f"{name}-{f}-without"
                shutil.copytree(base_dir, again)
                with Collection.open(again) as col, without_neighbours():
                    tuning.tune(col, pairs, gold_id_column="doc_id", seed=seed)
                    rows, i = seen["rows"], choose_row(seen["rows"])
                    base = col.encoder.encode(test_texts, kind="query")
                    ad = seen["trained"].adapter if rows[i][0] == "new" else None
                    _, rr[NO_NEIGHBOURS][test] = tuning.evaluate_setting(
                        col, test_texts, base, test_golds, ad, rows[i][1])
                    chosen_without = (f"{rows[i][0]} adapter + {rows[i][1].describe()} "
                                      f"(held-out {rows[i][3].mean():.4f})")
                shutil.rmtree(again)
            with Collection.open(here) as col:
                t0 = time.perf_counter()
                report = tuning.tune(col, pairs, gold_id_column="doc_id", seed=seed)
                tune_s.append(round(time.perf_counter() - t0, 1))
                rows = seen["rows"]
                picks = {BEFORE: choose_best(rows), NOW: choose_row(rows)}
                new = seen["trained"].adapter
                base = col.encoder.encode(test_texts, kind="query")
                for rule, i in picks.items():
                    which, setting = rows[i][0], rows[i][1]
                    _, r = tuning.evaluate_setting(col, test_texts, base, test_golds,
                                                   new if which == "new" else None, setting)
                    rr[rule][test] = r
                for s in SINGLES:
                    for i, d in zip(test, first_results(col, test_texts, base, new,
                                                        Ranking(s))):
                        first[s][i] = d
                # the fixed rankings a person could set by hand, with and without the adapter
                for setting in tuning.settings_for(col.store):
                    for which, ad in (("no", None), ("new", new)):
                        if setting.mode in TEXT_MODES and ad is not None:
                            continue  # these ignore vectors
                        label = f"{which} adapter + {setting.describe()}"
                        _, r = tuning.evaluate_setting(col, test_texts, base, test_golds, ad,
                                                       setting)
                        fixed.setdefault(label, np.zeros(len(qids)))[test] = r
                folds.append({rule: f"{rows[i][0]} adapter + {rows[i][1].describe()} "
                                    f"(held-out {rows[i][3].mean():.4f})"
                              for rule, i in picks.items()}
                             | {"promoted": report.promoted}
                             | ({NO_NEIGHBOURS: chosen_without} if baseline else {}))
            shutil.rmtree(here)
    finally:
        tuning.choose_row, tuning.train_adapter = chooser, trainer
    differ = np.array([len({first[s][i] for s in SINGLES}) > 1 for i in range(len(qids))])
    out = {"model": model, "queries": len(qids), "differ": int(differ.sum()),
           "tune_s": tune_s, "folds": folds,
           "mrr@10": {k: round(float(v.mean()), 4) for k, v in (rr | fixed).items()},
           "mrr@10_differ": {k: round(float(v[differ].mean()), 4)
                             for k, v in (rr | fixed).items()},
           "gain": paired_gain(rr[NOW] - rr[BEFORE]),
           "gain_differ": paired_gain(rr[NOW][differ] - rr[BEFORE][differ])}
    if baseline:
        out["neighbours"] = {"gain": paired_gain(rr[NOW] - rr[NO_NEIGHBOURS]),
                             "gain_differ": paired_gain(rr[NOW][differ]
                                                        - rr[NO_NEIGHBOURS][differ])}
    # the targets where the channels differ: the tuned ranking against the best single
    # channel and the best fixed ranking, each the best on these very queries (with or without
    # the adapter: the harder comparison)
    singles = [k for k in fixed if k.split(" + ")[1] in SINGLES]
    raw = {"differ": differ}
    for what, among in (("best_single", singles), ("best_fixed", list(fixed))):
        top = max(among, key=lambda k: fixed[k][differ].mean())
        out[what] = {"ranking": top, **{rule: paired_gain(rr[rule][differ] - fixed[top][differ])
                                        for rule in rr}}
        raw[what] = rr[NOW] - fixed[top]
    # what a person could set by hand from her own pairs, without the test's labels: on each
    # fold, the fixed ranking without an adapter that ranks the other folds' queries best
    by_hand = [k for k in fixed if k.startswith("no adapter + ")]
    hand, picked = np.zeros(len(qids)), []
    for f in range(FOLDS):
        top = max(by_hand, key=lambda k, rest=fold != f: fixed[k][rest].mean())
        hand[fold == f] = fixed[top][fold == f]
        picked.append(top)
    out["hand_picked"] = {"rankings": picked, **{
        rule: paired_gain(rr[rule][differ] - hand[differ]) for rule in rr}}
    raw["hand_picked"] = rr[NOW] - hand
    out["raw"] = raw
    return out


def _mean_over_splits(diffs: list[tuple[np.ndarray, np.ndarray]], ix: np.ndarray) -> float:
    """The mean over splits of each split's mean difference on the queries ``ix`` (a resample)
    it counts (where the channels differ in that split)."""
    return float(np.mean([d[ix][m[ix]].mean() for d, m in diffs]))


def over_splits(runs: list[dict]) -> dict:
    """The targets over several splits into folds: each split's gain of the tuned ranking over
    the best single channel and the best fixed ranking where the channels differ, and their
    mean with a 95% bootstrap interval over queries (the same resample in every split)."""
    n = len(runs[0]["raw"]["differ"])
    resamples = np.random.default_rng(0).integers(0, n, (2000, n))
    out: dict = {"splits": len(runs)}
    for what in ("best_single", "best_fixed", "hand_picked"):
        diffs = [(r["raw"][what], r["raw"]["differ"]) for r in runs]
        boots = [_mean_over_splits(diffs, ix) for ix in resamples]
        out[what] = {"per_split": [r[what][NOW]["mrr@10"] for r in runs],
                     "rankings": [r[what].get("ranking", r[what].get("rankings"))
                                  for r in runs],
                     "mrr@10": round(_mean_over_splits(diffs, np.arange(n)), 4),
                     "ci95": [round(float(np.quantile(boots, 0.025)), 4),
                              round(float(np.quantile(boots, 0.975)), 4)]}
    out["differ"] = [r["differ"] for r in runs]
    return out


def table(res: dict) -> str:
    lines = [f"How tune chooses: {BEFORE} vs {NOW}; MRR@10 on each fold's queries (5 folds, "
             "tune on the others)",
             "| set | model | all queries: before / now | gain [95%] | where the channels "
             "differ: before / now | gain [95%] | choices differed on folds |",
             "|---|---|---|---|---|---|---|"]
    for name, r in res["data"].items():
        g, gd = r["gain"], r["gain_differ"]
        differed = sum(f[BEFORE] != f[NOW] for f in r["folds"])
        lines.append(f"| {name} | {r['model']} | {r['mrr@10'][BEFORE]:.4f} / "
                     f"{r['mrr@10'][NOW]:.4f} | {g['mrr@10']:+.4f} [{g['ci95'][0]:+.4f}, "
                     f"{g['ci95'][1]:+.4f}] | {r['mrr@10_differ'][BEFORE]:.4f} / "
                     f"{r['mrr@10_differ'][NOW]:.4f} ({r['differ']} queries) | "
                     f"{gd['mrr@10']:+.4f} [{gd['ci95'][0]:+.4f}, {gd['ci95'][1]:+.4f}] | "
                     f"{differed} of {FOLDS} |")
    lines += ["", "Where the channels differ, the issue's targets (+0.05 over the best single "
              "channel, +0.02 over the best fixed ranking, each the best on those queries):",
              "| set | best single channel | now − it [95%] (before) | best fixed ranking | "
              "now − it [95%] (before) |", "|---|---|---|---|---|"]
    for name, r in res["data"].items():
        cells = [f"| {name} "]
        for what in ("best_single", "best_fixed"):
            d = r[what]
            cells.append(f"| {d['ranking']} {r['mrr@10_differ'][d['ranking']]:.4f} | "
                         f"{d[NOW]['mrr@10']:+.4f} [{d[NOW]['ci95'][0]:+.4f}, "
                         f"{d[NOW]['ci95'][1]:+.4f}] ({d[BEFORE]['mrr@10']:+.4f}) ")
        lines.append("".join(cells) + "|")
    if any("neighbours" in r for r in res["data"].values()):
        lines += ["", f"The {WITHOUT}: {NOW} against the same rule in a `tune` without "
                  "them (the same folds, a second fresh copy each):",
                  "| set | all queries: without / with | gain [95%] | where the channels "
                  "differ: without / with | gain [95%] | now − best fixed without them |",
                  "|---|---|---|---|---|---|"]
        for name, r in res["data"].items():
            if "neighbours" not in r:
                continue
            g, gd = r["neighbours"]["gain"], r["neighbours"]["gain_differ"]
            fx = r["best_fixed"].get(NO_NEIGHBOURS, {"mrr@10": float("nan")})
            lines.append(f"| {name} | {r['mrr@10'][NO_NEIGHBOURS]:.4f} / {r['mrr@10'][NOW]:.4f} "
                         f"| {g['mrr@10']:+.4f} [{g['ci95'][0]:+.4f}, {g['ci95'][1]:+.4f}] | "
                         f"{r['mrr@10_differ'][NO_NEIGHBOURS]:.4f} / "
                         f"{r['mrr@10_differ'][NOW]:.4f} | {gd['mrr@10']:+.4f} "
                         f"[{gd['ci95'][0]:+.4f}, {gd['ci95'][1]:+.4f}] | "
                         f"{fx['mrr@10']:+.4f} |")
    pooled = {name: r["over_splits"] for name, r in res["data"].items() if "over_splits" in r}
    if pooled:
        lines += ["", "The targets over several splits into folds (each split's gain where the "
                  "channels differ, then their mean [95%, queries resampled]):",
                  "| set | splits | queries where the channels differ | now − best single "
                  "channel: per split | mean [95%] | now − best fixed ranking: per split | "
                  "mean [95%] | now − the fixed ranking picked by hand: per split | mean [95%] |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for name, p in pooled.items():
            cells = [f"| {name} | {p['splits']} | {', '.join(map(str, p['differ']))} "]
            for what in ("best_single", "best_fixed", "hand_picked"):
                d = p[what]
                cells.append(f"| {', '.join(f'{v:+.4f}' for v in d['per_split'])} | "
                             f"{d['mrr@10']:+.4f} [{d['ci95'][0]:+.4f}, {d['ci95'][1]:+.4f}] ")
            lines.append("".join(cells) + "|")
    lines += ["", "The best fixed ranking above is the best of every fixed one, with or without "
              "the fold's adapter, on the very queries it is compared on. Picked by hand (in "
              "the splits' table) is what a person could set from her own pairs: on each fold, "
              "the fixed ranking without an adapter that ranks the other folds' queries best.",
              ""]
    for name, r in res["data"].items():
        lines.append(f"- {name}: tune {r['tune_s']} s per fold; choices: " + "; ".join(
            f"fold {i}: " + (f"both {f[NOW]}" if f[BEFORE] == f[NOW] else
                            f"before {f[BEFORE]}, now {f[NOW]}")
            + (f" (without the {WITHOUT}: {f[NO_NEIGHBOURS]})"
               if NO_NEIGHBOURS in f else "")
            for i, f in enumerate(r["folds"])))
    return "\n".join(lines + ["", machine_line(res["machine"])])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", choices=tuple(SETS), action="append")
    ap.add_argument("--out", default="tune-choice")
    ap.add_argument("--without-neighbours", action="store_true",
                    help="also run each fold's tune without the neighbour features")
    ap.add_argument("--without-known", action="store_true",
                    help="also run each fold's tune without the remembered queries' features")
    ap.add_argument("--splits", type=int, default=1,
                    help="split each set into folds this many times over (default 1)")
    args = ap.parse_args()
    if args.without_known:
        global WITHOUT, NO_NEIGHBOURS
        WITHOUT = "remembered queries' features"
        NO_NEIGHBOURS = f"{NOW}, without the {WITHOUT}"
    res: dict = {"machine": machine(), "data": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (data, model) in SETS.items():
            if args.only and name not in args.only:
                continue
            runs = [run(name, data, model, Path(tmp),
                        args.without_neighbours or args.without_known, split)
                    for split in range(args.splits)]
            res["data"][name] = {k: v for k, v in runs[0].items() if k != "raw"}
            if args.splits > 1:
                res["data"][name]["over_splits"] = over_splits(runs)
                res["data"][name]["later_splits"] = [
                    {k: v for k, v in r.items() if k != "raw"} for r in runs[1:]]
            print(table(res), flush=True)
    text = table(res)
    save(args.out, res, text)
    print(text)


if __name__ == "__main__":
    main()
