"""What a learned ranking adds to one search's time, against the same collection's blend (the
version without the ranker), on Quora 20k with the default model: the issue's budget is 5 ms
p50 for reranking a query's candidates at 20,000 documents.

Three rankings and a baseline, measured in one process, query by query in turn (their order
reversed every other query), over several rounds: blend; the learned ranker (LightGBM over
every channel's features); the same remembering the training queries (1,500 pairs, as ``tune``
keeps them: their documents join the candidates); and the learned ranker reading each
candidate's sentences from its text, as before the store kept them (``--no-kept`` leaves it
out). The sentences kept between searches are dropped before each search of that baseline (a
new query's candidates are mostly new).

The rankers are fitted here on 800 training queries' features (the odd queries are measured,
the even ones trained and remembered). The host is shared: each round's figures are p50s of
the same queries, and what counts is each ranking's p50 minus blend's in the same round.

    python bench/bench_rank_latency.py [--set quora|cranfield|descriptions] [--rounds 3]
                                       [--keep DIR] [--out NAME]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench_ranker import cranfield, paraphraser_in_descriptions, quora  # noqa: E402
from common import machine, machine_line, save  # noqa: E402

#: the sets: the issue's (Quora, 20,000 one-line questions) and two of longer documents, where
#: a candidate's sentences cost more to read: Cranfield's abstracts (title and body, about 1,000
#: characters) and ParaPhraser in descriptions (three headlines, the memes user's shape)
SETS = {"quora": (quora, "default"), "cranfield": (cranfield, "default"),
        "descriptions": (paraphraser_in_descriptions, "use-multilingual")}
BLEND = "blend (alpha 0.5)"
LEARNED = "learned ranker"
REMEMBERING = "learned ranker, remembering"
FROM_TEXTS = "learned ranker, sentences read from the texts"


def measure(keep: Path, rounds: int, with_texts: bool, name: str = "quora") -> dict:
    from neartext import Collection
    from neartext.algo.known import save_known
    from neartext.algo.ranker import fit_ranker, save_ranker
    from neartext.data import sentences
    from neartext.data.ranking import KNOWN_FEATURES, RANKER_FEATURES, Ranking
    from neartext.engine.searching import fusion_features
    from neartext.ops.learning import remembered
    from neartext.ops.tune import evaluate_setting
    from neartext.store.base import CandidateText

    data, model = SETS[name]
    path, columns, queries, gold = data(keep)
    where = keep / name
    if not where.exists():  # (built in a child: a search imports no torch, a build may)
        subprocess.run([sys.executable, "-c", "import sys; from neartext import Collection; "
                        "Collection.from_file(sys.argv[1], sys.argv[2], sys.argv[3].split(','), "
                        "'id', model=sys.argv[4])",
                        str(where), str(path), ",".join(columns), model], check=True)
    col = Collection.open(where)
    qids = sorted(queries)
    texts = [queries[q][0] for q in qids]
    golds = [set(gold[q]) for q in qids]
    with col:
        col.store.ensure_chars()  # (a collection kept from before the sentences' table)
        vecs = col.encoder.encode(texts, kind="query")
        train = list(range(0, len(texts), 2))[:1500]
        memory = remembered([texts[i] for i in train], [golds[i] for i in train], vecs[train])
        known = save_known(col.path, memory)
        plain = tuple(n for n in RANKER_FEATURES if n not in KNOWN_FEATURES)
        settings = {BLEND: Ranking("hybrid", "blend", alpha=0.5)}
        fitted = train[:800]
        for label, names, mem in ((LEARNED, plain, None), (REMEMBERING, RANKER_FEATURES, memory)):
            rows = fusion_features(col.store, vecs[fitted], [texts[i] for i in fitted],
                                   names=names, memory=mem)
            ys = [np.array([d in golds[i] for d in docs], float)
                  for (docs, _), i in zip(rows, fitted)]
            ranker = save_ranker(col.path, fit_ranker([x for _, x in rows], ys, seed=0).text)
            settings[label] = Ranking("hybrid", "learned", features=names, ranker=ranker,
                                      known=known if mem is not None else None)
        if with_texts:
            settings[FROM_TEXTS] = settings[LEARNED]
        store = col.store
        kept = store.candidate_texts

        def from_texts(ids, limit):  # the texts and stems, no sentences: read from the texts
            sentences._kept.cache_clear()
            return {d: CandidateText(c.text, c.stems) for d, c in kept(ids, limit).items()}

        measured = list(range(1, len(texts), 2))[:300]
        out: dict = {"set": name, "model": col.manifest.model.name, "documents": len(col),
                     "remembered_pairs": len(memory),
                     "measured_queries": len(measured), "torch_loaded": "torch" in sys.modules,
                     "rounds": []}
        for _ in range(rounds):
            lat: dict[str, list[float]] = {k: [] for k in settings}
            cpu: dict[str, list[float]] = {k: [] for k in settings}
            for n, i in enumerate(measured):
                for label in list(settings)[::1 if n % 2 else -1]:
                    store.candidate_texts = from_texts if label == FROM_TEXTS else kept
                    t0, c0 = time.perf_counter(), time.process_time()
                    evaluate_setting(col, [texts[i]], vecs[i:i + 1], [golds[i]], None,
                                     settings[label])
                    lat[label].append(time.perf_counter() - t0)
                    cpu[label].append(time.process_time() - c0)
            store.candidate_texts = kept
            p50 = {k: float(np.median(v)) * 1000 for k, v in lat.items()}
            # (the process's CPU time, all its threads': what the host's other load changes
            # least; a search's BLAS product may run on both cores)
            c50 = {k: float(np.median(v)) * 1000 for k, v in cpu.items()}
            out["rounds"].append({"p50_ms": {k: round(v, 2) for k, v in p50.items()},
                                  "over_blend_ms": {k: round(v - p50[BLEND], 2)
                                                    for k, v in p50.items() if k != BLEND},
                                  "cpu_p50_ms": {k: round(v, 2) for k, v in c50.items()},
                                  "cpu_over_blend_ms": {k: round(v - c50[BLEND], 2)
                                                        for k, v in c50.items() if k != BLEND}})
            print(out["rounds"][-1], flush=True)
        over = {k: [r["over_blend_ms"][k] for r in out["rounds"]] for k in settings if k != BLEND}
        out["over_blend_ms_median"] = {k: round(float(np.median(v)), 2) for k, v in over.items()}
        cpu_over = {k: [r["cpu_over_blend_ms"][k] for r in out["rounds"]] for k in over}
        out["cpu_over_blend_ms_median"] = {k: round(float(np.median(v)), 2)
                                           for k, v in cpu_over.items()}
    return out


def table(res: dict) -> str:
    r = res["result"]
    lines = [f"{r['set']}, {r['documents']} documents, {r['model']}; {r['measured_queries']} "
             f"queries, one search each (k 10) per ranking per round, {len(r['rounds'])} rounds; "
             f"{r['remembered_pairs']} remembered pairs",
             "| ranking | p50 over blend, ms (median of rounds) | each round | CPU time p50 over "
             "blend, ms (median of rounds) |",
             "|---|---|---|---|"]
    for k, v in r["over_blend_ms_median"].items():
        each = ", ".join(f"{x['over_blend_ms'][k]:+.2f}" for x in r["rounds"])
        lines.append(f"| {k} | {v:+.2f} | {each} | {r['cpu_over_blend_ms_median'][k]:+.2f} |")
    blend = ", ".join(f"{x['p50_ms'][BLEND]:.2f}" for x in r["rounds"])
    lines += [f"- blend's own p50 in each round: {blend} ms", "", machine_line(res["machine"])]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--keep", type=Path, help="build (or reuse) the collection here")
    ap.add_argument("--no-kept", action="store_true",
                    help="leave out the baseline reading the sentences from the texts")
    ap.add_argument("--set", choices=sorted(SETS), default="quora")
    ap.add_argument("--out", help="default: rank-latency, or rank-latency-SET")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        keep = args.keep or Path(tmp)
        keep.mkdir(parents=True, exist_ok=True)
        result = measure(keep, args.rounds, not args.no_kept, args.set)
    # (after: machine() imports torch, and a search imports none; with torch loaded a single
    # query was scored on its thread pool, every search about 3 ms slower, until c78ebe0)
    res = {"machine": machine(), "result": result}
    text = table(res)
    save(args.out or ("rank-latency" if args.set == "quora" else f"rank-latency-{args.set}"),
         res, text)
    print(text)


if __name__ == "__main__":
    main()
