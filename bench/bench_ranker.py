"""The learned fusion's features (issue 19): the base features against all of them, fitted
pointwise and pairwise, and against the fixed rankings, on the same held-out queries in one run.

The learned fusion (``neartext tune``) scores each hybrid candidate by a linear function of its
features. The base features are the cosine, keyword coverage, both reciprocal ranks and "every
query word present"; all features add the cosine before the query-side adapter, whether the
query's words stand in the document as one phrase, how much of the query's weight the
document's first line holds (the title, when the collection was built from several text
columns) and whether the first line is the query.

Data (../shared/datasets), each built as a neartext collection with all-MiniLM-L6-v2:
  - Cranfield (BEIR layout): 1,400 abstracts built from two text columns, title and body (the
    body with the title it repeats removed), 225 queries with graded judgements;
  - Quora duplicates (eval.csv, the first 3,000 pairs): question1 -> question2, one column;
  - ParaPhraser (ru; classes 0 and 1, the first 3,000 pairs): text_1 -> text_2, one column,
    with a linear query-side adapter trained on each fold's training queries (where adapters
    gain with MiniLM), to weigh the cosine before the adapter against the one after.
Queries are split into 5 folds by query (seeded); the weights (and the adapter) are fitted on
four folds' queries (their candidates, as ``tune`` fits them) and every query is measured once,
held out, through the real search path; the fixed rankings are measured on the same folds. Each
set of features is fitted two ways: pointwise (a class-weighted logistic regression of
relevance, what ``tune`` fitted before) and pairwise (RankNet's loss over relevant/irrelevant
candidate pairs of one query, what it fits now). Gains are paired per query with a 95%
bootstrap interval.

    python bench/bench_ranker.py [--only cranfield|quora|paraphraser] [--model M] [--out ranker]

On ParaPhraser the table also gives where the loop starts (the model alone, semantic, no
adapter) and the gain of what ``tune`` ships over it: with ``--model use-multilingual
--only paraphraser`` the issue's Russian case end to end (adapter and learned ranking).
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
SHIPPED = "learned pairwise, all features"
VARIANTS = [(BEFORE, "base", False), ("learned pairwise, base features", "base", True),
            ("learned pointwise, all features", "all", False), (SHIPPED, "all", True)]
WITHOUT_MODEL_COSINE = "learned pairwise, all but the cosine before the adapter"
NO_ADAPTER = "semantic, the model alone (no adapter)"


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


def one_column(path: Path, ids: dict[str, str]) -> Path:
    """Write the passages (text -> id) as an (id, text) corpus file."""
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "text"])
        w.writerows((pid, text) for text, pid in ids.items())
    return path


def quora(tmp: Path) -> tuple[Path, list[str], dict[str, list[str]], dict[str, dict]]:
    with need(SHARED / "quora_duplicates" / "eval.csv").open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))[:3000]
    ids: dict[str, str] = {}
    queries, gold = {}, {}
    for i, r in enumerate(rows):
        pid = ids.setdefault(r["question2"], f"p{len(ids)}")
        queries[f"q{i}"] = [r["question1"]]
        gold[f"q{i}"] = {pid: 1.0}
    return one_column(tmp / "quora.csv", ids), ["text"], queries, gold


def paraphraser(tmp: Path) -> tuple[Path, list[str], dict[str, list[str]], dict[str, dict]]:
    """ParaPhraser (ru) headline paraphrases, classes 0 and 1: text_1 -> text_2 (one column)."""
    import xml.etree.ElementTree as ET

    root = ET.parse(need(SHARED / "paraphraser_ru" / "paraphrases.xml")).getroot()
    ids: dict[str, str] = {}
    queries: dict[str, list[str]] = {}
    gold: dict[str, dict] = {}
    for p in root.iter("paraphrase"):
        v = {e.get("name"): (e.text or "").strip() for e in p.iter("value")}
        if v.get("class") in ("0", "1") and v.get("text_1") and v.get("text_2"):
            pid = ids.setdefault(v["text_2"], f"p{len(ids)}")
            qid = f"q{len(queries)}"
            queries[qid] = [v["text_1"]]
            gold[qid] = {pid: 1.0}
            if len(queries) == 3000:
                break
    return one_column(tmp / "paraphraser.csv", ids), ["text"], queries, gold


def folds_of(qids: list[str]) -> np.ndarray:
    """Each query's fold (0..FOLDS-1), split by query, seeded."""
    from neartext.algo.adapters import split_groups

    fold = np.zeros(len(qids), dtype=int)
    rest = np.ones(len(qids), dtype=bool)
    for f in range(FOLDS - 1):  # each fold takes 1/(folds left) of what is not assigned
        idx = np.flatnonzero(rest)
        held = split_groups([qids[i] for i in idx], 1.0 / (FOLDS - f), seed=f)
        chosen = idx[np.asarray(held, dtype=bool)]
        fold[chosen] = f
        rest[chosen] = False
    fold[rest] = FOLDS - 1
    return fold


def run(name: str, data, tmp: Path, model: str = "default", adapter: bool = False) -> dict:
    """Every ranking on every query held out once (5 folds); with ``adapter``, a linear
    query-side adapter trained on each fold's training queries is applied throughout."""
    from neartext import Collection
    from neartext.algo.adapters import train_adapter
    from neartext.data.ranking import BASE_FEATURES, FEATURES
    from neartext.engine.searching import fusion_features
    from neartext.ops.tune import SETTINGS, evaluate_setting, fit_logistic, fit_pairwise

    path, columns, queries, gold = data(tmp)
    t0 = time.perf_counter()
    col, _ = Collection.from_file(tmp / name, path, columns, "id", model=model)
    build = time.perf_counter() - t0
    qids = sorted(queries)
    texts = [queries[q][0] for q in qids]
    golds = [set(gold[q]) for q in qids]
    fold = folds_of(qids)
    variants = [*VARIANTS, *([(WITHOUT_MODEL_COSINE, "no-model", True)] if adapter else [])]
    with col:
        vecs = col.encoder.encode(texts, kind="query")
        doc_ids, doc_vecs = [], []
        if adapter:
            for ids, v in col.store.iter_vectors():
                doc_ids.extend(ids)
                doc_vecs.append(v)
        row_of = {d: i for i, d in enumerate(doc_ids)}
        docs = np.concatenate(doc_vecs) if doc_vecs else None
        out: dict = {"documents": len(col), "queries": len(qids), "columns": columns,
                     "model": col.manifest.model.name, "adapter": adapter,
                     "build_s": round(build, 1)}
        rr = {s.describe(): np.zeros(len(qids)) for s in SETTINGS}
        rr.update({v[0]: np.zeros(len(qids)) for v in variants})
        if adapter:
            rr[NO_ADAPTER] = np.zeros(len(qids))
        ndcg = {k: 0.0 for k in rr}
        fit_s = {v[0]: 0.0 for v in variants}
        for f in range(FOLDS):
            train, test = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
            ad = None
            if adapter:
                pos = [(i, row_of[d]) for i in train for d in golds[i] if d in row_of]
                ad = train_adapter(vecs[[i for i, _ in pos]], np.array([r for _, r in pos]),
                                   docs, groups=[i for i, _ in pos],
                                   base_fingerprint=col.encoder.fingerprint,
                                   held_out=0.1).adapter
            test_texts, test_golds = [texts[i] for i in test], [golds[i] for i in test]

            def measure(label: str, setting: dict, test=test, test_texts=test_texts,
                        test_golds=test_golds, ad=ad) -> None:
                m, r = evaluate_setting(col, test_texts, vecs[test], test_golds, ad, setting)
                rr[label][test] = r
                ndcg[label] += m["ndcg@10"] * len(test) / len(qids)

            for setting in SETTINGS:
                measure(setting.describe(), setting)
            if adapter:  # where the loop starts: the model alone, semantic
                m, r = evaluate_setting(col, test_texts, vecs[test], test_golds, None,
                                        {"mode": "semantic"})
                rr[NO_ADAPTER][test] = r
                ndcg[NO_ADAPTER] += m["ndcg@10"] * len(test) / len(qids)
            qv = vecs[train] if ad is None else ad.apply(vecs[train])
            rows = fusion_features(col.store, qv, [texts[i] for i in train], names=FEATURES,
                                   model_vectors=None if ad is None else vecs[train])
            ys = [np.array([d in golds[i] for d in docs_], dtype=np.float64)
                  for (docs_, _), i in zip(rows, train)]
            for label, which, pairwise in variants:
                names = (BASE_FEATURES if which == "base" else
                         [n for n in FEATURES if n != "model_cosine"] if which == "no-model"
                         else FEATURES)
                cols = [FEATURES.index(n) for n in names]
                t0 = time.perf_counter()
                xs = [x[:, cols] for _, x in rows]
                fitted = (fit_pairwise(xs, ys) if pairwise
                          else fit_logistic(np.concatenate(xs), np.concatenate(ys)))
                fit_s[label] += time.perf_counter() - t0
                measure(label, {"mode": "hybrid", "fusion": "learned",
                                "weights": [float(v) for v in fitted], "features": list(names)})
        out["mrr@10"] = {k: round(float(v.mean()), 4) for k, v in rr.items()}
        out["ndcg@10"] = {k: round(v, 4) for k, v in ndcg.items()}
        out["learned_fit_s"] = {k: round(v, 2) for k, v in fit_s.items()}
        out["gains"] = {}
        pairs = [(SHIPPED, BEFORE), (SHIPPED, "learned pairwise, base features"),
                 (SHIPPED, "learned pointwise, all features")]
        if adapter:
            pairs += [(SHIPPED, WITHOUT_MODEL_COSINE), (SHIPPED, NO_ADAPTER),
                      ("semantic", NO_ADAPTER)]
        for new, old in pairs:
            d = rr[new] - rr[old]
            boots = np.random.default_rng(0).choice(d, (2000, len(d))).mean(axis=1)
            out["gains"][f"{new} vs {old}"] = {
                "mrr@10": round(float(d.mean()), 4),
                "ci95": [round(float(np.quantile(boots, 0.025)), 4),
                         round(float(np.quantile(boots, 0.975)), 4)]}
        fixed = [k for k in rr if not k.startswith("learned") and k != NO_ADAPTER]
        out["best_fixed"] = max(fixed, key=lambda k: float(rr[k].mean()))
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
                     f"{r['queries']} queries, {r['model']}"
                     + (", a linear query adapter trained on each fold" if r["adapter"] else ""))
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
    ap.add_argument("--only", choices=("cranfield", "quora", "paraphraser"))
    ap.add_argument("--out", default="ranker")
    ap.add_argument("--model", default="default",
                    help="the model of every collection (default: all-MiniLM-L6-v2)")
    args = ap.parse_args()
    res: dict = {"machine": machine(), "data": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name, data, model, adapter in (
                ("cranfield", cranfield, args.model, False),
                ("quora_3000", quora, args.model, False),
                ("paraphraser_ru_3000 + adapter", paraphraser, args.model, True)):
            if args.only and not name.startswith(args.only):
                continue
            res["data"][name] = run(name.split()[0], data, Path(tmp), model, adapter)
    text = table(res)
    save(args.out, res, text)
    print(text)


if __name__ == "__main__":
    main()
