"""Query adapters (issue 19) against no adapter and against full fine-tuning, in one run.

Russian retrieval: ParaPhraser (../shared/datasets/paraphraser_ru, train file) pairs of classes
0 and 1 (loose and strict paraphrases) as (query = text_1, passage = text_2); every distinct
text_2 is a passage; queries are split 80/20 by query (seeded) and each held-out query is
ranked against **all** passages. MRR@10 / nDCG@10 / Recall@10 with:
  - use-multilingual, no adapter, and with each adapter kind trained on the 80%;
  - all-MiniLM-L6-v2, no adapter, with an adapter, and fully fine-tuned (``neartext.training``,
    MNRL, 1 epoch) on the same 80%.
English: Quora duplicates (question1 -> question2) the same way with all-MiniLM-L6-v2.
Latency: the 100k collection of bench_core (real sentences) searched with a query vector
given, with and without an adapter applied, alternating (p50).

Both sides (``--only both``, results ``adapters-both``): the symmetric task, "are these two
texts paraphrases?", scored by the cosine of the two texts as stored vectors (what mining,
dedup and paraphrases compare). ParaPhraser (all classes: 0 and 1 paraphrases, -1 not; split
80/20 by text_1, seeded) and MSRP (its own train and test files): adapters are trained on the
training split's paraphrase pairs (both directions; the documents are every training text), then
the held-out labeled pairs are scored with no adapter, a query-side adapter (applied to the
first text: all it can change in a document-document comparison) and a both-side adapter
(applied to both texts), as average precision and the best F1 over thresholds.

STS-B ru (``--only ru-stsb``): the issue's other Russian set, pairs of the machine-translated STS
Benchmark (all splits) scoring at least 4 of 5 as (query = sentence1, passage = sentence2), the
same way as ParaPhraser.

    python bench/bench_adapters.py [--only ru|ru-stsb|en|finetune|latency|both] [--pairs 6000]
        [--kinds linear,residual-mlp] [--out adapters]
"""

from __future__ import annotations

import argparse
import csv
import shutil
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED, held_out_split, machine, machine_line, need, save  # noqa: E402

KINDS = ("linear", "lowrank", "diagonal", "residual-mlp")


def paraphraser(limit: int) -> list[tuple[str, str]]:
    root = ET.parse(need(SHARED / "paraphraser_ru" / "paraphrases.xml")).getroot()
    out = []
    for p in root.iter("paraphrase"):
        v = {e.get("name"): (e.text or "").strip() for e in p.iter("value")}
        if v.get("class") in ("0", "1") and v.get("text_1") and v.get("text_2"):
            out.append((v["text_1"], v["text_2"]))
    return out[:limit]


def quora(limit: int) -> list[tuple[str, str]]:
    with need(SHARED / "quora_duplicates" / "eval.csv").open(encoding="utf-8") as f:
        rows = [(r["question1"].strip(), r["question2"].strip()) for r in csv.DictReader(f)]
    return [r for r in rows if r[0] and r[1] and r[0] != r[1]][:limit]


def stsb_ru() -> list[tuple[str, str]]:
    """STS-B ru (machine-translated; train, dev and test) pairs scoring at least 4 of 5."""
    out = []
    for part in ("train", "dev", "test"):
        path = need(SHARED / "stsb_multi_mt" / f"stsb-ru-{part}.csv")
        with path.open(encoding="utf-8", newline="") as f:
            for a, b, score in csv.reader(f):
                if float(score) >= 4 and a.strip() and b.strip() and a.strip() != b.strip():
                    out.append((a.strip(), b.strip()))
    return out


def split(pairs: list[tuple[str, str]], seed: int = 0):
    """(train pairs, held-out pairs, passages) with queries split 80/20."""
    held = held_out_split([q for q, _ in pairs], 0.2, seed)
    passages = list(dict.fromkeys(p for _, p in pairs))
    return ([x for x, h in zip(pairs, held) if not h], [x for x, h in zip(pairs, held) if h],
            passages)


def evaluate(enc, held, passages, pvecs=None, adapter=None) -> dict[str, float]:
    from neartext.algo.adapters import ranking_metrics

    row = {p: i for i, p in enumerate(passages)}
    queries = list(dict.fromkeys(q for q, _ in held))
    gold: dict[str, set[int]] = {}
    for q, p in held:
        gold.setdefault(q, set()).add(row[p])
    if pvecs is None:
        pvecs = enc.encode(passages, kind="document")
    qv = enc.encode(queries, kind="query")
    if adapter is not None:
        qv = adapter.apply(qv)
    metrics, _ = ranking_metrics(qv, pvecs, [gold[q] for q in queries])
    return {k: round(v, 4) for k, v in metrics.items() if k in ("mrr@10", "ndcg@10", "recall@10")}


def adapters_on(model: str, pairs: list[tuple[str, str]], kinds=KINDS) -> dict:
    from neartext import load_encoder
    from neartext.algo.adapters import train_adapter

    enc = load_encoder(model)
    train, held, passages = split(pairs)
    t = time.perf_counter()
    pvecs = enc.encode(passages, kind="document")
    encode_s = time.perf_counter() - t
    row = {p: i for i, p in enumerate(passages)}
    out = {"model": model, "train_pairs": len(train), "held_out_pairs": len(held),
           "passages": len(passages), "encode_passages_s": round(encode_s, 1),
           "none": evaluate(enc, held, passages, pvecs)}
    t = time.perf_counter()
    qv = enc.encode([q for q, _ in train], kind="query")
    out["encode_train_queries_s"] = round(time.perf_counter() - t, 1)
    for kind in kinds:
        res = train_adapter(qv, np.array([row[p] for _, p in train]), pvecs,
                            groups=[q for q, _ in train], base_fingerprint=enc.fingerprint,
                            kind=kind, held_out=0.1)  # early stopping on 10% of the 80%
        out[kind] = {**evaluate(enc, held, passages, pvecs, res.adapter),
                     "train_s": round(res.seconds, 1), "epochs": res.epochs}
        print(model, kind, out[kind], flush=True)
    return out


def labeled_paraphraser() -> list[tuple[str, str, int]]:
    root = ET.parse(need(SHARED / "paraphraser_ru" / "paraphrases.xml")).getroot()
    out = []
    for p in root.iter("paraphrase"):
        v = {e.get("name"): (e.text or "").strip() for e in p.iter("value")}
        if v.get("class") in ("-1", "0", "1") and v.get("text_1") and v.get("text_2"):
            out.append((v["text_1"], v["text_2"], int(v["class"] != "-1")))
    return out


def labeled_msrp(name: str) -> list[tuple[str, str, int]]:
    path = need(SHARED / "msrp" / f"msr_paraphrase_{name}.txt")
    with path.open(encoding="utf-8-sig") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
    return [(r[3].strip(), r[4].strip(), int(r[0])) for r in rows if len(r) == 5]


def pair_scores(scores: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Average precision of ranking the pairs by score, and the best F1 over thresholds."""
    order = np.argsort(-scores, kind="stable")
    hits = labels[order].astype(float)
    tp = np.cumsum(hits)
    precision = tp / np.arange(1, len(hits) + 1)
    ap = float((precision * hits).sum() / max(1.0, hits.sum()))
    recall = tp / max(1.0, hits.sum())
    f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0)
    return {"ap": round(ap, 4), "best_f1": round(float(f1.max()), 4)}


def both_sides(model: str, train: list[tuple[str, str, int]],
               held: list[tuple[str, str, int]], kinds=("linear", "lowrank", "diagonal")) -> dict:
    from neartext import load_encoder
    from neartext.algo.adapters import train_adapter

    enc = load_encoder(model)
    texts = list(dict.fromkeys([t for a, b, _ in train + held for t in (a, b)]))
    t = time.perf_counter()
    vec = dict(zip(texts, enc.encode(texts, kind="document")))
    encode_s = time.perf_counter() - t
    train_texts = list(dict.fromkeys(t for a, b, _ in train for t in (a, b)))
    row = {x: i for i, x in enumerate(train_texts)}
    docs = np.stack([vec[x] for x in train_texts])
    positives = [(a, b) for a, b, y in train if y] + [(b, a) for a, b, y in train if y]
    q = np.stack([vec[a] for a, _ in positives])
    labels = np.array([y for _, _, y in held])
    a_held = np.stack([vec[a] for a, _, _ in held])
    b_held = np.stack([vec[b] for _, b, _ in held])

    def cos(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.einsum("ij,ij->i", x, y)

    out = {"model": model, "train_pairs": len(train), "train_positives": len(positives) // 2,
           "held_out_pairs": len(held), "held_out_positives": int(labels.sum()),
           "encode_s": round(encode_s, 1), "none": pair_scores(cos(a_held, b_held), labels)}
    for kind in kinds:
        for side in ("query", "both"):
            res = train_adapter(q, np.array([row[b] for _, b in positives]), docs,
                                groups=[a for a, _ in positives],
                                base_fingerprint=enc.fingerprint, kind=kind, side=side,
                                held_out=0.1)
            ad = res.adapter
            a2 = ad.apply(a_held)
            b2 = ad.apply(b_held) if side == "both" else b_held
            out[f"{kind}/{side}"] = {**pair_scores(cos(a2, b2), labels),
                                     "train_s": round(res.seconds, 1), "epochs": res.epochs,
                                     "best_epoch": res.best_epoch}
            print(model, kind, side, out[f"{kind}/{side}"], flush=True)
    return out


def both_table(r: dict) -> str:
    lines = []
    for block in r["both"]:
        lines += [f"| {block['data']}: {block['model']} ({block['held_out_pairs']} held-out "
                  f"pairs, {block['held_out_positives']} paraphrases) | AP | best F1 | train s |",
                  "|---|---|---|---|",
                  f"| no adapter | {block['none']['ap']} | {block['none']['best_f1']} | |"]
        for key, b in block.items():
            if "/" in key:
                kind, side = key.split("/")
                what = "both sides" if side == "both" else "query side (first text only)"
                lines.append(f"| {kind}, {what} | {b['ap']} | {b['best_f1']} | {b['train_s']} |")
        lines.append("")
    lines.append(machine_line(r["machine"]))
    return "\n".join(lines)


def finetune(pairs: list[tuple[str, str]]) -> dict:
    from neartext import load_encoder
    from neartext.training.trainer import TrainConfig, train

    trainp, held, passages = split(pairs)
    work = Path(tempfile.mkdtemp(prefix="nt-bench-ft-"))
    try:
        f = work / "train.csv"
        with f.open("w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["anchor", "positive"])
            w.writerows(trainp)
        t = time.perf_counter()
        train(f, TrainConfig(output=str(work / "model"), base="default", epochs=1.0,
                             eval_split=0))
        seconds = time.perf_counter() - t
        return {**evaluate(load_encoder(str(work / "model")), held, passages),
                "train_s": round(seconds, 1), "train_pairs": len(trainp)}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def latency(rounds: int = 3, queries: int = 300) -> dict:
    from bench_core import build_large

    from neartext import load_encoder
    from neartext.algo.adapters import Adapter

    enc = load_encoder("default")
    work = Path(tempfile.mkdtemp(prefix="nt-bench-ad-"))
    try:
        from neartext import Collection

        path, texts = build_large(enc, 100_000, work)
        col = Collection.open(path, model=enc)
        rng = np.random.default_rng(0)
        q = enc.encode([texts[i] for i in rng.choice(len(texts), queries, replace=False)],
                       kind="query")
        m = np.eye(enc.dim, dtype=np.float32) + 0.01 * rng.standard_normal(
            (enc.dim, enc.dim)).astype(np.float32)
        adapter = Adapter("linear", "query", m, enc.fingerprint)
        times: dict[str, list[float]] = {"none": [], "adapter": []}
        for r in range(rounds):
            for which in (("none", "adapter") if r % 2 == 0 else ("adapter", "none")):
                col._adapter = ((col.manifest.version, repr(col.manifest.adapter)),
                                adapter if which == "adapter" else None)
                for v in q:
                    t = time.perf_counter()
                    col.search_vectors(v[None, :], k=10)
                    times[which].append(time.perf_counter() - t)
        col.close()
        p50 = {k: round(float(np.median(v)) * 1e3, 3) for k, v in times.items()}
        return {"documents": 100_000, "p50_ms": p50,
                "overhead_ms": round(p50["adapter"] - p50["none"], 3)}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def table(r: dict) -> str:
    lines = []
    for key, title in (("ru", "Russian: ParaPhraser, held-out queries vs all passages"),
                       ("ru_stsb", "Russian: STS-B ru pairs scoring >= 4, held-out queries vs "
                                   "all passages"),
                       ("en", "English: Quora duplicates, held-out queries vs all passages")):
        if key not in r:
            continue
        lines += [f"| {title} | MRR@10 | nDCG@10 | Recall@10 | train s |", "|---|---|---|---|---|"]
        for block in r[key]:
            name = block["model"]
            lines.append(f"| {name}, no adapter | {block['none']['mrr@10']} | "
                         f"{block['none']['ndcg@10']} | {block['none']['recall@10']} | |")
            for kind in KINDS:
                if kind in block:
                    b = block[kind]
                    lines.append(f"| {name} + {kind} adapter | {b['mrr@10']} | {b['ndcg@10']} | "
                                 f"{b['recall@10']} | {b['train_s']} |")
        if key == "ru" and "finetune" in r:
            b = r["finetune"]
            lines.append(f"| all-MiniLM-L6-v2 fully fine-tuned (MNRL, 1 epoch) | {b['mrr@10']} | "
                         f"{b['ndcg@10']} | {b['recall@10']} | {b['train_s']} |")
        lines.append("")
    if "latency" in r:
        lat = r["latency"]
        lines.append(f"Search p50 at 100k documents, query vector given: {lat['p50_ms']['none']} ms "
                     f"without an adapter, {lat['p50_ms']['adapter']} ms with one "
                     f"(overhead {lat['overhead_ms']} ms).")
    lines.append(machine_line(r["machine"]))
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", choices=("ru", "ru-stsb", "en", "finetune", "latency", "both"))
    ap.add_argument("--pairs", type=int, default=6000)
    ap.add_argument("--kinds", default=",".join(KINDS), help="adapter kinds, comma-separated")
    ap.add_argument("--out", default="adapters", help="results name in bench/results")
    args = ap.parse_args()
    kinds = tuple(args.kinds.split(","))
    r: dict = {"machine": machine()}
    if args.only == "both":
        ru = labeled_paraphraser()
        held = held_out_split([a for a, _, _ in ru], 0.2, 0)
        ru_train = [x for x, h in zip(ru, held) if not h]
        ru_held = [x for x, h in zip(ru, held) if h]
        r["both"] = []
        for model, data, train_rows, held_rows in (
                ("use-multilingual", "ParaPhraser (ru)", ru_train, ru_held),
                ("all-MiniLM-L6-v2", "ParaPhraser (ru)", ru_train, ru_held),
                ("all-MiniLM-L6-v2", "MSRP (en)", labeled_msrp("train"), labeled_msrp("test"))):
            r["both"].append({"data": data, **both_sides(model, train_rows, held_rows)})
        text = both_table(r)
        print(text)
        save("adapters-both" if args.out == "adapters" else args.out, r, text)
        return
    if args.only in (None, "ru"):
        ru = paraphraser(args.pairs)
        r["ru"] = [adapters_on("use-multilingual", ru, kinds),
                   adapters_on("all-MiniLM-L6-v2", ru, kinds)]
    if args.only in (None, "ru-stsb"):
        r["ru_stsb"] = [adapters_on("use-multilingual", stsb_ru(), kinds),
                        adapters_on("all-MiniLM-L6-v2", stsb_ru(), kinds)]
    if args.only in (None, "finetune"):
        r["finetune"] = finetune(paraphraser(args.pairs))
        print("finetune", r["finetune"], flush=True)
    if args.only in (None, "en"):
        r["en"] = [adapters_on("all-MiniLM-L6-v2", quora(args.pairs), kinds)]
    if args.only in (None, "latency"):
        r["latency"] = latency()
        print("latency", r["latency"], flush=True)
    text = table(r)
    print(text)
    save(args.out, r, text)


if __name__ == "__main__":
    main()
