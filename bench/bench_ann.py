"""Single-query latency of the local store with the query vector given: the exact index (the
reference, and neartext's default below 20,000 passages) against an HNSW graph (the default
above) and IVF, each tuned at build time to recall@10 >= 0.99, and HNSW over vectors stored as
float16 and int8; side by side in alternating rounds, unfiltered and with a filter keeping 10% of
the documents. Recall and score error are measured against exact float32 search. Real vectors:
Quora questions (../shared/datasets) embedded once with the default model and cached in
bench/.cache; the queries are other Quora questions, not in the collection.

    python bench/bench_ann.py [--n 20000] [--rounds 5] [--queries 300] [--configs exact,hnsw,...]
    python bench/bench_ann.py --corpus mixed --n 100000   # past Quora's size (embeds ~100k once)
"""

from __future__ import annotations

import argparse
import csv
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import ROOT, SHARED, machine, machine_line, need, save  # noqa: E402

CACHE = ROOT / "bench" / ".cache"


def _questions() -> list[str]:
    src = need(SHARED / "quora_duplicates" / "eval.csv")
    rows = list(csv.DictReader(src.open(encoding="utf-8")))
    return list(dict.fromkeys([r["question1"] for r in rows] + [r["question2"] for r in rows]))


def _embedded(name: str, texts: list[str]) -> np.ndarray:
    path = CACHE / f"{name}.npy"
    if path.is_file():
        return np.load(path)
    from neartext.encoders import load_encoder

    v = load_encoder("default").encode(texts, kind="document").astype(np.float32)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(path, v)
    return v


def vectors(n: int) -> np.ndarray:
    """The first ``n`` distinct Quora questions, embedded with the default model (cached)."""
    path = CACHE / f"quora-{n}.npy"
    if path.is_file():
        return np.load(path)
    texts = _questions()
    if len(texts) < n:
        raise SystemExit(f"quora has {len(texts)} distinct questions; ask for --n {len(texts)} or less")
    return _embedded(f"quora-{n}", texts[:n])


def held_out(n: int, count: int) -> np.ndarray:
    """``count`` real questions that are not among the first ``n`` (queries, not documents)."""
    texts = _questions()
    if len(texts) < n + count:
        raise SystemExit(f"quora has {len(texts)} distinct questions, fewer than {n} + {count}")
    return _embedded(f"quora-{n}-next-{count}", texts[n:n + count])


def mixed(n: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """(``n`` documents, ``count`` queries) past Quora's size: bench_mining's corpus (58k real
    English sentences: Quora, STS-B, MSRP, Cranfield; then texts joining two of them), embedded
    once; the queries are real sentences taken out of the documents."""
    from bench_mining import real_texts
    from bench_mining import vectors as mining_vectors

    v = np.load(mining_vectors(n + count))
    real = len(real_texts()[0])
    held = np.zeros(len(v), dtype=bool)
    held[np.random.default_rng(3).choice(real, count, replace=False)] = True
    return v[~held], v[held]


CONFIGS = {  # label -> (index kind, vector precision)
    "exact": ("flat", "float32"), "hnsw": ("hnsw", "float32"), "ivf": ("ivf", "float32"),
    "hnsw-float16": ("hnsw", "float16"), "hnsw-int8": ("hnsw", "int8")}


def build(root: Path, label: str, x: np.ndarray):
    from neartext.store import Document, Passage
    from neartext.store.local import LocalStore

    kind, precision = CONFIGS[label]
    store = LocalStore.create(root / label, {"dim": x.shape[1], "index": kind,
                                             "precision": precision})
    docs = [Document(f"d{i}", "t", {"bucket": i % 10}, f"h{i}") for i in range(len(x))]
    t0 = time.perf_counter()
    store.write(docs, [Passage(d.id, 0, 1, d.hash, v) for d, v in zip(docs, x)], [])
    took = time.perf_counter() - t0
    store.close()  # on disk as a closed collection (no write-ahead log beside it)
    return LocalStore(root / label), took, disk_mb(root / label)


def disk_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.iterdir() if f.is_file()) / 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--corpus", choices=("quora", "mixed"), default="quora",
                    help="quora: up to 28k questions; mixed: real sentences and joined pairs")
    args = ap.parse_args()
    from neartext.data.filters import parse_filter

    labels = [c for c in args.configs.split(",") if c]
    if labels[0] != "exact":
        labels.insert(0, "exact")  # the reference
    if args.corpus == "quora":
        x = vectors(args.n)
        q = held_out(args.n, args.queries)  # real questions the collection does not hold
    else:
        x, q = mixed(args.n, args.queries)
    tmp = Path(tempfile.mkdtemp(prefix="neartext-ann-"))
    try:
        stores, built, disk = {}, {}, {}
        for label in labels:
            stores[label], built[label], disk[label] = build(tmp, label, x)
        flt = parse_filter("bucket=3")
        times: dict[tuple[str, str], list[float]] = {(k, f): [] for k in stores
                                                     for f in ("all", "10%")}
        for r in range(args.rounds):
            for label in (labels if r % 2 == 0 else labels[::-1]):
                for which, f in (("all", None), ("10%", flt)):
                    s = stores[label]
                    s.search(q[:5], 10, f)  # warm
                    for row in q:
                        t0 = time.perf_counter()
                        s.search(row[None, :], 10, f)
                        times[(label, which)].append(time.perf_counter() - t0)
        exact = stores["exact"].search(q, 10)
        exact_f = stores["exact"].search(q[:50], 10, flt)
        rows: dict[str, dict] = {}
        for label in labels:
            got = stores[label].search(q, 10)
            recall = float(np.mean([len({h.doc_id for h in a} & {h.doc_id for h in b}) / 10
                                    for a, b in zip(exact, got)]))
            # score error: the same documents' scores against exact float32 scores
            errs = [abs(ref[h.doc_id] - h.score) for a, b in zip(exact, got)
                    for ref in [{h.doc_id: h.score for h in a}] for h in b if h.doc_id in ref]
            fa = stores[label].search(q[:50], 10, flt)
            info = stores[label].index_info()
            rows[label] = {
                "p50_ms": round(float(np.median(times[(label, "all")])) * 1e3, 3),
                "p50_filtered_ms": round(float(np.median(times[(label, "10%")])) * 1e3, 3),
                "recall_at_10_heldout": round(recall, 4),
                "recall_at_10_build": info.get("recall_at_10"),
                "score_error_mean": float(f"{np.mean(errs):.2g}"),
                "score_error_max": float(f"{np.max(errs):.2g}"),
                "filtered_same_as_exact": float(np.mean(
                    [[h.doc_id for h in a] == [h.doc_id for h in b] for a, b in zip(exact_f, fa)])),
                "filtered_always_k": all(len(h) == 10 for h in fa),
                "disk_mb": round(disk[label], 1),
                "build_s": round(built[label], 2),
                "setting": {k: info[k] for k in ("ef_search", "lists", "lists_searched") if k in info},
            }
        res = {"n": args.n, "corpus": args.corpus, "queries": args.queries,
               "rounds": args.rounds, "configs": rows, "machine": machine()}
        for s in stores.values():
            s.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    ref = rows["exact"]
    what = "Quora vectors" if args.corpus == "quora" else "vectors of real and joined sentences"
    lines = [f"| {args.n:,} {what}, query vector given (held-out texts) | "
             + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]

    def row(name: str, fmt) -> str:
        return f"| {name} | " + " | ".join(fmt(rows[lb]) for lb in labels) + " |"
    lines += [
        row("p50, ms (× exact)", lambda r: f"{r['p50_ms']:.3f} ({r['p50_ms'] / ref['p50_ms']:.2f})"),
        row("p50 with a filter keeping 10%, ms (× exact)",
            lambda r: f"{r['p50_filtered_ms']:.3f} ({r['p50_filtered_ms'] / ref['p50_filtered_ms']:.2f})"),
        row("recall@10 vs exact float32", lambda r: f"{r['recall_at_10_heldout']:.4f}"),
        row("score error vs float32, mean / max",
            lambda r: f"{r['score_error_mean']:g} / {r['score_error_max']:g}"),
        row("filtered: same as exact / always k", lambda r: (
            f"{r['filtered_same_as_exact']:.2f} / {'yes' if r['filtered_always_k'] else 'no'}")),
        row("disk, MB", lambda r: f"{r['disk_mb']:g}"),
        row("build, s", lambda r: f"{r['build_s']:g}"),
        "", f"Medians of {args.rounds} rounds x {args.queries} queries, configurations in alternating "
        f"order. Settings chosen at build: " + "; ".join(
            f"{lb} {rows[lb]['setting']}" for lb in labels if rows[lb]["setting"]) +
        f". {machine_line(res['machine'])}"]
    table = "\n".join(lines)
    print(table)
    save("ann" if args.corpus == "quora" and args.n == 20000 else f"ann-{args.corpus}-{args.n}",
         res, table)


if __name__ == "__main__":
    main()
