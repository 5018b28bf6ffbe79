"""The learned fusion's features (issue 19): the base features against base + text features,
and both against the fixed rankings, on the same held-out queries in one run.

The learned fusion (``neartext tune``) scores each hybrid candidate by a logistic regression over
features. The base features are the cosine, keyword coverage, both reciprocal ranks and "every
query word present"; the text features add whether the query's words stand in the document as
one phrase, how much of the query the document's first line covers (the title, when the
collection was built from several text columns) and whether the first line is the query.

Data (../shared/datasets), each built as a neartext collection with all-MiniLM-L6-v2:
  - Cranfield (BEIR layout): 1,400 abstracts built from two text columns, title and body (the
    body with the title it repeats removed), 225 queries with graded judgements;
  - Quora duplicates (eval.csv, the first 3,000 pairs): question1 -> question2, one column.
Queries are split into 5 folds by query (seeded); the weights are fitted on four folds' queries
(their candidates, as ``tune`` fits them) and every query is measured once, held out, through
the real search path. Fixed rankings need no fitting and are measured on all queries. Each set of
features is fitted two ways: pointwise (a class-weighted logistic regression of relevance, what
``tune`` fitted before) and pairwise (RankNet's loss over relevant/irrelevant candidate pairs of
one query, what it fits now). Gains are paired per query with a 95% bootstrap interval.

    python bench/bench_ranker.py [--only cranfield|quora] [--out ranker]
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED, machine, machine_line, need, save  # noqa: E402

FOLDS = 5
# (label, features, pairwise fit): what tune fitted before (pointwise, base features) and now
BEFORE = "learned pointwise, base features"
SHIPPED = "learned pairwise, base + text features"
VARIANTS = [(BEFORE, "base", False), ("learned pairwise, base features", "base", True),
            ("learned pointwise, base + text features", "all", False), (SHIPPED, "all", True)]


def cranfield(tmp: Path) -> tuple[Path, list[str], dict[str, list[str]], dict[str, dict]]:
    """A two-column corpus file (title, body), its text columns, the queries and their gold."""
    c = SHARED / "cranfield"
    rows = []
    for line in need(c / "corpus.jsonl").read_text(encoding="utf-8").splitlines():
        d = json.loads(line)
        title, text = d.get("title", "").strip(), d.get("text", "").strip()
        body = text[len(title):].strip() if title and text.startswith(title) else text
        rows.append((d["_id"], title, body))
    path = tmp / "cranfield.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "title", "body"])
        w.writerows(rows)
    queries = {}
    for line in need(c / "queries.jsonl").read_text(encoding="utf-8").splitlines():
        q = json.loads(line)
        queries[q["_id"]] = q["text"]
    gold: dict[str, dict] = {}
    with need(c / "qrels" / "test.tsv").open(encoding="utf-8") as f:
        for r in csv.DictReader(f, delimiter="\t"):
            gold.setdefault(r["query-id"], {})[r["corpus-id"]] = float(r["score"])
    return path, ["title", "body"], {q: [queries[q]] for q in gold}, gold


def quora(tmp: Path) -> tuple[Path, list[str], dict[str, list[str]], dict[str, dict]]:
    with need(SHARED / "quora_duplicates" / "eval.csv").open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))[:3000]
    ids: dict[str, str] = {}
    queries, gold = {}, {}
    for i, r in enumerate(rows):
        pid = ids.setdefault(r["question2"], f"p{len(ids)}")
        queries[f"q{i}"] = [r["question1"]]
        gold[f"q{i}"] = {pid: 1.0}
    path = tmp / "quora.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "text"])
        w.writerows((pid, text) for text, pid in ids.items())
    return path, ["text"], queries, gold


def run(name: str, data, tmp: Path) -> dict:
    from neartext import Collection
    from neartext.adapters import split_groups
    from neartext.hybrid import BASE_FEATURES, FEATURES
    from neartext.searching import fusion_features
    from neartext.tuning import SETTINGS, describe, evaluate_setting, fit_logistic, fit_pairwise

    path, columns, queries, gold = data(tmp)
    t0 = time.perf_counter()
    col, _ = Collection.from_file(tmp / name, path, columns, "id")
    build = time.perf_counter() - t0
    qids = sorted(queries)
    texts = [queries[q][0] for q in qids]
    golds = [set(gold[q]) for q in qids]
    with col:
        vecs = col.encoder.encode(texts)
        out: dict = {"documents": len(col), "queries": len(qids), "columns": columns,
                     "build_s": round(build, 1)}
        rr: dict[str, np.ndarray] = {}
        ndcg: dict[str, list[float]] = {}
        for setting in SETTINGS:
            m, r = evaluate_setting(col, texts, vecs, golds, None, setting)
            rr[describe(setting)] = r
            ndcg[describe(setting)] = [m["ndcg@10"]]
        # 5 folds by query: fit on four, measure the fifth
        fold = np.zeros(len(qids), dtype=int)
        rest = np.ones(len(qids), dtype=bool)
        for f in range(FOLDS - 1):  # each fold takes 1/(folds left) of what is not assigned
            idx = np.flatnonzero(rest)
            held = split_groups([qids[i] for i in idx], 1.0 / (FOLDS - f), seed=f)
            chosen = idx[np.asarray(held, dtype=bool)]
            fold[chosen] = f
            rest[chosen] = False
        fold[rest] = FOLDS - 1
        all_rows = fusion_features(col.store, vecs, texts, names=FEATURES)
        ys = [np.array([d in g for d in docs], dtype=np.float64)
              for (docs, _), g in zip(all_rows, golds)]
        fit_s: dict[str, float] = {}
        for label, which, pairwise in VARIANTS:
            names = BASE_FEATURES if which == "base" else FEATURES
            cols = [FEATURES.index(n) for n in names]
            r_all = np.zeros(len(qids))
            nd = []
            t0 = time.perf_counter()
            for f in range(FOLDS):
                train = np.flatnonzero(fold != f)
                test = np.flatnonzero(fold == f)
                x = np.concatenate([all_rows[i][1][:, cols] for i in train])
                y = np.concatenate([ys[i] for i in train])
                if pairwise:
                    fitted = fit_pairwise([all_rows[i][1][:, cols] for i in train],
                                          [ys[i] for i in train])
                else:
                    fitted = fit_logistic(x, y)
                w = [float(v) for v in fitted]
                setting = {"mode": "hybrid", "fusion": "learned", "weights": w,
                           "features": list(names)}
                m, r = evaluate_setting(col, [texts[i] for i in test], vecs[test],
                                        [golds[i] for i in test], None, setting)
                r_all[test] = r
                nd.append(m["ndcg@10"] * len(test))
            fit_s[label] = round(time.perf_counter() - t0, 1)
            rr[label] = r_all
            ndcg[label] = [sum(nd) / len(qids)]
        out["mrr@10"] = {k: round(float(v.mean()), 4) for k, v in rr.items()}
        out["ndcg@10"] = {k: round(float(v[0]), 4) for k, v in ndcg.items()}
        out["learned_s"] = fit_s
        out["gains"] = {}
        for new, old in ((SHIPPED, BEFORE), (SHIPPED, "learned pairwise, base features"),
                         (SHIPPED, "learned pointwise, base + text features")):
            d = rr[new] - rr[old]
            boots = np.random.default_rng(0).choice(d, (2000, len(d))).mean(axis=1)
            out["gains"][f"{new} vs {old}"] = {
                "mrr@10": round(float(d.mean()), 4),
                "ci95": [round(float(np.quantile(boots, 0.025)), 4),
                         round(float(np.quantile(boots, 0.975)), 4)]}
        fixed = [k for k in rr if not k.startswith("learned")]
        best = max(fixed, key=lambda k: float(rr[k].mean()))
        out["best_fixed"] = best
        # search latency of a learned hybrid search, with and without the text features
        lat = {}
        for label, names in (("base", BASE_FEATURES), ("text", FEATURES)):
            setting = {"mode": "hybrid", "fusion": "learned",
                       "weights": [1.0] + [0.0] * len(names), "features": list(names)}
            times = []
            for i in range(min(200, len(texts))):
                t0 = time.perf_counter()
                evaluate_setting(col, [texts[i]], vecs[i:i + 1], [golds[i]], None, setting)
                times.append(time.perf_counter() - t0)
            lat[label] = round(float(np.median(times)) * 1000, 2)
        out["learned_search_p50_ms"] = lat
    print(name, json.dumps(out, ensure_ascii=False), flush=True)
    return out


def table(res: dict) -> str:
    lines = []
    for name, r in res["data"].items():
        lines.append(f"{name}: {r['documents']} documents ({', '.join(r['columns'])}), "
                     f"{r['queries']} queries")
        lines.append("| ranking | MRR@10 | nDCG@10 | vs best fixed (MRR@10) |")
        lines.append("|---|---|---|---|")
        best = r["mrr@10"][r["best_fixed"]]
        for k, v in r["mrr@10"].items():
            lines.append(f"| {k} | {v:.4f} | {r['ndcg@10'][k]:.4f} | {v / best:.3f} |")
        for what, g in r["gains"].items():
            lines.append(f"- {what}: MRR@10 {g['mrr@10']:+.4f} (95% CI {g['ci95'][0]:+.4f} .. "
                         f"{g['ci95'][1]:+.4f})")
        lines.append(f"- learned hybrid search p50: {r['learned_search_p50_ms']['base']} ms "
                     f"(base features) vs {r['learned_search_p50_ms']['text']} ms (with text "
                     f"features)")
        lines.append("")
    lines.append(machine_line(res["machine"]))
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", choices=("cranfield", "quora"))
    ap.add_argument("--out", default="ranker")
    args = ap.parse_args()
    res: dict = {"machine": machine(), "data": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name, data in (("cranfield", cranfield), ("quora_3000", quora)):
            if args.only and not name.startswith(args.only):
                continue
            res["data"][name] = run(name, data, Path(tmp))
    text = table(res)
    save(args.out, res, text)
    print(text)


if __name__ == "__main__":
    main()
