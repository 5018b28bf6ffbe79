"""Single-query latency of the local store with the query vector given: the exact index
(neartext's default below 200,000 passages until now) against IVF tuned at build time to
recall@10 >= 0.99, side by side in alternating rounds; unfiltered and with a filter selecting
10% of the documents. Real vectors: Quora questions (../shared/datasets) embedded once with the
default model and cached in bench/.cache.

    python bench/bench_ann.py [--n 20000] [--rounds 5] [--queries 300]
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


def vectors(n: int) -> np.ndarray:
    path = CACHE / f"quora-{n}.npy"
    if path.is_file():
        return np.load(path)
    from neartext.encoders import load_encoder

    src = need(SHARED / "quora_duplicates" / "eval.csv")
    rows = list(csv.DictReader(src.open(encoding="utf-8")))
    texts = list(dict.fromkeys([r["question1"] for r in rows] + [r["question2"] for r in rows]))
    if len(texts) < n:
        raise SystemExit(f"{src} has {len(texts)} distinct questions; ask for --n {len(texts)} or less")
    v = load_encoder("default").encode(texts[:n], kind="document").astype(np.float32)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(path, v)
    return v


def build(root: Path, kind: str, x: np.ndarray):
    from neartext.store import Document, Passage
    from neartext.store.local import LocalStore

    store = LocalStore.create(root / kind, {"dim": x.shape[1], "index": kind})
    docs = [Document(f"d{i}", "t", {"bucket": i % 10}, f"h{i}") for i in range(len(x))]
    t0 = time.perf_counter()
    store.write(docs, [Passage(d.id, 0, 1, d.hash, v) for d, v in zip(docs, x)], [])
    return store, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--queries", type=int, default=300)
    args = ap.parse_args()
    from neartext.filters import parse_filter

    x = vectors(args.n)
    rng = np.random.default_rng(0)
    # queries: stored questions with a little noise (near, not identical, to stored vectors)
    q = x[rng.choice(len(x), args.queries, replace=False)] + 0.02 * rng.standard_normal(
        (args.queries, x.shape[1])).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    tmp = Path(tempfile.mkdtemp(prefix="neartext-ann-"))
    try:
        stores, built = {}, {}
        for kind in ("flat", "ivf"):
            stores[kind], built[kind] = build(tmp, kind, x)
        flt = parse_filter("bucket=3")
        times = {(k, f): [] for k in stores for f in ("all", "10%")}
        for r in range(args.rounds):
            for kind in (("flat", "ivf") if r % 2 == 0 else ("ivf", "flat")):
                for label, f in (("all", None), ("10%", flt)):
                    s = stores[kind]
                    s.search(q[:5], 10, f)  # warm
                    for row in q:
                        t0 = time.perf_counter()
                        s.search(row[None, :], 10, f)
                        times[(kind, label)].append(time.perf_counter() - t0)
        exact = [[h.doc_id for h in hits] for hits in stores["flat"].search(q, 10)]
        approx = [[h.doc_id for h in hits] for hits in stores["ivf"].search(q, 10)]
        recall = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(exact, approx)]))
        fx = stores["flat"].search(q[:50], 10, flt)
        fa = stores["ivf"].search(q[:50], 10, flt)
        filtered_same = all([h.doc_id for h in a] == [h.doc_id for h in b] for a, b in zip(fx, fa))
        full_k = all(len(h) == 10 for h in fa)
        info = stores["ivf"].index_info()
        p50 = {k: float(np.median(v)) * 1e3 for k, v in times.items()}
        res = {"n": args.n, "queries": args.queries, "rounds": args.rounds,
               "p50_ms": {f"{k}/{f}": round(v, 3) for (k, f), v in p50.items()},
               "ratio_ivf_to_flat": {f: round(p50[("ivf", f)] / p50[("flat", f)], 3)
                                     for f in ("all", "10%")},
               "recall_at_10_heldout": round(recall, 4), "recall_at_10_build": info["recall_at_10"],
               "lists": info["lists"], "lists_searched": info["lists_searched"],
               "filtered_identical_to_exact": filtered_same, "filtered_always_k": full_k,
               "build_seconds": {k: round(v, 2) for k, v in built.items()},
               "machine": machine()}
        for s in stores.values():
            s.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    table = "\n".join([
        f"| {args.n:,} Quora vectors, query vector given | exact (flat) | IVF tuned | IVF / exact |",
        "|---|---|---|---|",
        f"| p50, no filter | {p50[('flat', 'all')]:.3f} ms | {p50[('ivf', 'all')]:.3f} ms | "
        f"{res['ratio_ivf_to_flat']['all']:.2f} |",
        f"| p50, filter selecting 10% | {p50[('flat', '10%')]:.3f} ms | {p50[('ivf', '10%')]:.3f} ms | "
        f"{res['ratio_ivf_to_flat']['10%']:.2f} |",
        f"| recall@10 vs exact (held-out queries) | 1 | {recall:.4f} | |",
        "",
        f"IVF: {info['lists']} lists, {info['lists_searched']} searched (recall@10 "
        f"{info['recall_at_10']} measured at build); filtered results identical to exact: "
        f"{filtered_same}, always k: {full_k}. {machine_line(res['machine'])}"])
    print(table)
    save("ann", res, table)


if __name__ == "__main__":
    main()
