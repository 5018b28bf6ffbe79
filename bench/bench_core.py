"""Core benchmark (issue: core). Every figure is measured side by side with a named baseline.

Baselines, in the same run on the same texts and model:
  - indexing: raw ``SentenceTransformer.encode`` (batch 32, normalized) of the same texts;
  - query latency: sentence-transformers' documented search recipe (``encode`` to a tensor +
    ``util.semantic_search`` over the corpus tensor), and a hand-written numpy version
    (``encode`` + matrix-vector product + argpartition), each followed by a text lookup.

The large collection holds real texts (bench_mining's corpus: real sentences, then texts joining
two), embedded once and cached in bench/.cache.

Usage: python bench/bench_core.py [--docs 10000] [--large 100000] [--queries 300]
Writes bench/results/core.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, SHARED, machine, machine_line, median, need, percentile, save, timed  # noqa: E402

from neartext import Collection, load_encoder  # noqa: E402
from neartext.data.hashing import text_hash  # noqa: E402
from neartext.store import Document, Passage  # noqa: E402

CACHE = ROOT / "bench" / ".cache"


def quora_texts(n_docs: int, n_queries: int) -> tuple[list[str], list[str]]:
    """Unique question1 texts as documents; question2 of other rows as queries."""
    rows = list(csv.DictReader(need(SHARED / "quora_duplicates" / "eval.csv").open(encoding="utf-8")))
    docs, seen = [], set()
    for r in rows:
        q = r["question1"].strip()
        if q and q not in seen:
            seen.add(q)
            docs.append(q)
    queries = [r["question2"].strip() for r in rows[-n_queries:]]
    return docs[:n_docs], queries


def write_csv(path: Path, texts: list[str]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "text"])
        w.writerows((f"q{i}", t) for i, t in enumerate(texts))


def bench_indexing(enc, texts: list[str], work: Path, rounds: int) -> dict:
    src = work / "docs.csv"
    write_csv(src, texts)
    raw_t, nt_t = [], []
    for r in range(rounds):  # alternate to spread machine noise over both
        t, _ = timed(enc.model.encode, texts, batch_size=32, normalize_embeddings=True,
                     convert_to_numpy=True)
        raw_t.append(t)
        dst = work / f"col{r}"
        t, (col, rep) = timed(Collection.from_file, dst, src, ["text"], "id", model=enc)
        col.close()
        nt_t.append(t)
        if r < rounds - 1:
            shutil.rmtree(dst)
    col_dir = work / f"col{rounds - 1}"
    # re-index after changing 1% of the rows
    changed = list(texts)
    rng = random.Random(0)
    for i in rng.sample(range(len(texts)), len(texts) // 100):
        changed[i] = changed[i] + " (edited)"
    src2 = work / "docs_changed.csv"
    write_csv(src2, changed)
    with Collection.open(col_dir, model=enc) as col:
        t_re, rep = timed(col.index_file, src2, sync=True)
    return {
        "texts": len(texts),
        "raw_encode_s": min(raw_t), "neartext_index_s": min(nt_t),
        "raw_texts_per_s": len(texts) / min(raw_t), "neartext_texts_per_s": len(texts) / min(nt_t),
        "throughput_ratio": min(raw_t) / min(nt_t),
        "reindex_1pct_s": t_re, "reindex_1pct_embedded": rep.texts_embedded,
        "reindex_1pct_share_of_full": t_re / min(nt_t),
        "rounds": rounds, "all_raw_s": raw_t, "all_neartext_s": nt_t,
        "collection": str(col_dir),
    }


def latency(fns: dict, queries: list[str], block: int = 50, settle: int = 5) -> dict:
    """p50/p99 in ms of each function over ``queries``, in alternating blocks.

    Each block's first ``settle`` calls are not counted: a numpy/OpenBLAS thread pool keeps
    spinning after a matrix product and slows whatever runs next, so per-query interleaving would
    charge one method for the other's threads.
    """
    names = list(fns)
    times: dict[str, list[float]] = {n: [] for n in names}
    for start in range(0, len(queries), block):
        part = queries[start : start + block]
        for name in names:
            for i, q in enumerate(part[:settle] + part):
                t = time.perf_counter()
                fns[name](q)
                if i >= settle:
                    times[name].append((time.perf_counter() - t) * 1000)
    return {n: {"p50_ms": percentile(t, 50), "p99_ms": percentile(t, 99), "n": len(t)}
            for n, t in times.items()}


def handwritten_search(enc, matrix: np.ndarray, texts: list[str]):
    def search(q: str, k: int = 10):
        v = enc.model.encode([q], normalize_embeddings=True, convert_to_numpy=True)[0]
        scores = matrix @ v
        top = np.argpartition(-scores, k)[:k]
        top = top[np.argsort(-scores[top])]
        return [(texts[i], float(scores[i])) for i in top]
    return search


def st_semantic_search(enc, matrix: np.ndarray, texts: list[str]):
    """sentence-transformers' documented recipe: encode to a tensor + util.semantic_search."""
    import torch
    from sentence_transformers import util

    corpus = torch.from_numpy(matrix)

    def search(q: str, k: int = 10):
        v = enc.model.encode([q], normalize_embeddings=True, convert_to_tensor=True)
        hits = util.semantic_search(v, corpus, top_k=k)[0]
        return [(texts[h["corpus_id"]], h["score"]) for h in hits]
    return search


def bench_latency(enc, col_dir: Path, queries: list[str]) -> dict:
    with Collection.open(col_dir, model=enc) as col:
        ids, vecs = zip(*col.store.iter_vectors())
        matrix = np.concatenate(vecs)
        texts = [d.text for d in col.get([f"q{i}" for i in range(len(col))])]
        res = latency({"neartext": lambda q: col.search(q, k=10),
                       "st_semantic_search": st_semantic_search(enc, matrix, texts),
                       "numpy_handwritten": handwritten_search(enc, matrix, texts)}, queries)
        docs = len(col)
    return {"documents": docs, **res}


def build_large(enc, n: int, work: Path) -> tuple[Path, list[str]]:
    """A collection of ``n`` real texts (bench_mining's corpus: 58k real English sentences, then
    texts joining two of them), their vectors embedded once and cached; returns its texts."""
    from bench_mining import vectors as mining_vectors

    vecs = np.load(mining_vectors(n))
    texts = json.loads((CACHE / f"texts_{n}.json").read_text())
    path = work / f"large{n}"
    col = Collection.create(path, model=enc)
    docs, passages = [], []
    for i, (text, v) in enumerate(zip(texts, vecs)):
        h = text_hash(text)
        docs.append(Document(f"s{i}", text, {"n": i % 10}, h))
        passages.append(Passage(f"s{i}", 0, len(text), h, v))
    col.store.write(docs, passages, [])
    col.close()
    return path, texts


def bench_large(enc, n: int, work: Path, queries: list[str]) -> dict:
    t_build, (path, texts) = timed(build_large, enc, n, work)
    opens = []
    for _ in range(5):
        t, col = timed(Collection.open, path)
        opens.append(t)
        col.close()
    with Collection.open(path, model=enc) as col:
        matrix = np.concatenate([v for _, v in col.store.iter_vectors()])
        res = latency({"neartext": lambda q: col.search(q, k=10),
                       "st_semantic_search": st_semantic_search(enc, matrix, texts),
                       "numpy_handwritten": handwritten_search(enc, matrix, texts)}, queries)
        t_cold, _ = timed(col.search, queries[0], k=10, where="n=3")
        filtered = latency({"f": lambda q: col.search(q, k=10, where="n=3")}, queries[:100])["f"]
        filtered["cold_first_ms"] = t_cold * 1000
    return {"documents": n, "build_s": t_build, "open_s_median": median(opens), "open_s_all": opens,
            **res, "neartext_filtered_10pct": filtered}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=10000)
    ap.add_argument("--large", type=int, default=100000)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    texts, queries = quora_texts(args.docs, args.queries)
    enc = load_encoder("default")
    work = Path(tempfile.mkdtemp(prefix="nt-bench-"))
    try:
        result = {"machine": machine(), "model": "all-MiniLM-L6-v2"}
        result["indexing"] = bench_indexing(enc, texts, work, args.rounds)
        print("indexing", result["indexing"], flush=True)
        result["latency_real"] = bench_latency(enc, Path(result["indexing"]["collection"]), queries)
        print("latency", result["latency_real"], flush=True)
        result["large"] = bench_large(enc, args.large, work, queries)
        print("large", result["large"], flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out = save("core", result, table(result))
    print(f"saved {out}")


def _latency_row(r: dict, target: str) -> tuple[str, ...]:
    nt, st, npy = r["neartext"], r["st_semantic_search"], r["numpy_handwritten"]
    return (f"Query p50 / p99 (encode + search + fetch), {r['documents'] // 1000}k docs",
            f"{nt['p50_ms']:.1f} / {nt['p99_ms']:.1f} ms",
            f"{st['p50_ms']:.1f} / {st['p99_ms']:.1f} ms (ST semantic_search); "
            f"{npy['p50_ms']:.1f} / {npy['p99_ms']:.1f} ms (numpy)",
            f"{st['p50_ms'] / nt['p50_ms']:.2f}x faster", target)


def table(r: dict) -> str:
    ix, lr, sy = r["indexing"], r["latency_real"], r["large"]
    m = r["machine"]
    rows = [
        ("Indexing throughput, texts/s", f"{ix['neartext_texts_per_s']:.0f}",
         f"{ix['raw_texts_per_s']:.0f} (raw encode)", f"{ix['throughput_ratio']:.2f}x", ">= 0.9x"),
        ("Re-index after 1% changed", f"{ix['reindex_1pct_s']:.2f} s",
         f"{ix['neartext_index_s']:.1f} s (full index)",
         f"{100 * ix['reindex_1pct_share_of_full']:.1f}%", "<= 5%"),
        _latency_row(lr, ""),
        _latency_row(sy, "p50 <= 20 ms"),
        (f"Query p50, {sy['documents'] // 1000}k docs, filter keeps 10% (first use)",
         f"{sy['neartext_filtered_10pct']['p50_ms']:.1f} ms "
         f"({sy['neartext_filtered_10pct']['cold_first_ms']:.0f} ms)", "", "", ""),
        (f"Open a {sy['documents'] // 1000}k collection", f"{sy['open_s_median']:.3f} s", "", "",
         "<= 1 s"),
    ]
    head = "| measure | neartext | baseline | ratio | target |\n|---|---|---|---|---|\n"
    body = "\n".join("| " + " | ".join(x) + " |" for x in rows)
    foot = "\n\n" + machine_line(m)
    return head + body + foot


if __name__ == "__main__":
    main()
