"""Clustering and map benchmark (issue 8), each measurement in its own process (peak memory).

Vectors: the all-MiniLM-L6-v2 embeddings bench_mining.py caches (bench/.cache; run
``make bench-mining`` first): the first 10k of the 50k real-text
corpus (Quora questions first) and the first 100k of the 200k corpus.

1. Time and peak RSS of ``neartext.engine.clustering.cluster_vectors`` (community at 0.75 with min size 2,
   k-means with k=100) and of the UMAP map projection, at 10k and 100k texts.
2. Quality against gold groups: the Quora questions of the 50k corpus (29k), gold groups = the
   connected components of the Quora duplicate pairs, everything else a singleton. Adjusted Rand
   index of neartext's community clustering and of sentence-transformers'
   ``util.community_detection`` (same vectors, threshold 0.75, min size 2; texts in no community
   count as singletons), in the same run.

Usage: python bench/bench_clusters.py [--skip-100k-map]
Writes bench/results/clusters.json and clusters.txt. Nothing else should run meanwhile.
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED, machine, machine_line, need, run_worker, save  # noqa: E402

CACHE = Path(__file__).resolve().parent / ".cache"
THRESHOLD = 0.75


def vectors(n: int) -> np.ndarray:
    base = 50_000 if n <= 50_000 else 200_000
    path = CACHE / f"vectors_{base}.npy"
    if not path.is_file():
        sys.exit(f"{path} is missing: run `make bench-mining` first (it embeds and caches the corpus)")
    v = np.load(path, mmap_mode="r")[:n]
    return np.ascontiguousarray(v, dtype=np.float32)


def worker(task: str, n: int) -> None:
    v = vectors(n)
    t = time.perf_counter()
    out: dict = {}
    if task == "st_community":
        import torch
        from sentence_transformers import util

        comms = util.community_detection(torch.from_numpy(v), threshold=THRESHOLD, min_community_size=2)
        labels = np.full(n, -1, dtype=np.int64)
        for c, members in enumerate(comms):
            labels[members] = c
        out["clusters"] = len(comms)
    elif task == "map":
        import umap

        xy = umap.UMAP(n_components=2, metric="cosine", n_neighbors=15, min_dist=0.1,
                       random_state=42, n_jobs=1, low_memory=True).fit_transform(v)
        labels = np.zeros(n, dtype=np.int64)
        out["spread"] = float(np.ptp(xy, axis=0).max())
    else:
        from neartext.engine.clustering import cluster_vectors

        method = "community" if task == "community" else "kmeans"
        kw = {"threshold": THRESHOLD, "min_size": 2} if method == "community" else {"k": 100}
        labels = cluster_vectors(v, method, **kw)
        out["clusters"] = int(labels.max()) + 1
    out.update({"task": task, "n": n, "seconds": time.perf_counter() - t,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})
    np.save(CACHE / f"labels_{task}_{n}.npy", labels)
    print(json.dumps(out))


def run(task: str, n: int) -> dict:
    return run_worker(__file__, task, "--n", str(n))


def gold_labels(n: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows that are Quora questions, gold group per row: duplicate components, else singleton)."""
    texts = json.loads((CACHE / f"texts_{n}.json").read_text())[:n]
    row = {t: i for i, t in enumerate(texts)}
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    quora = set()
    with need(SHARED / "quora_duplicates" / "eval.csv").open(encoding="utf-8") as f:
        for r in csv.DictReader(f):
            a, b = row.get(r["question1"].strip()), row.get(r["question2"].strip())
            if a is None or b is None:
                continue
            quora.update((a, b))
            ra, rb = find(a), find(b)
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
    rows = np.array(sorted(quora))
    return rows, np.array([find(int(r)) for r in rows])


def ari_of(task: str, n: int, rows: np.ndarray, gold: np.ndarray) -> float:
    from sklearn.metrics import adjusted_rand_score

    labels = np.load(CACHE / f"labels_{task}_{n}.npy")[rows].copy()
    noise = labels < 0
    labels[noise] = -(np.arange(int(noise.sum())) + 1)  # each text in no cluster on its own
    return float(adjusted_rand_score(gold, labels))


def table(r: dict) -> str:
    lines = ["| task | 10k texts: s / peak MB | 100k texts: s / peak MB |", "|---|---|---|"]
    for task, name in (("community", "neartext community (0.75, min 2)"),
                       ("st_community", "sentence-transformers community_detection"),
                       ("kmeans", "neartext k-means (k=100)"), ("map", "UMAP map projection")):
        cells = []
        for n in ("10000", "100000"):
            x = r["runs"].get(f"{task}_{n}")
            cells.append(f"{x['seconds']:.1f} / {x['peak_rss_mb']:.0f}" if x else "not run")
        lines.append(f"| {name} | {' | '.join(cells)} |")
    q = r["quality"]
    lines.append(f"\nAdjusted Rand index against Quora duplicate groups ({q['texts']} questions, "
                 f"{q['gold_groups']} groups of 2+): neartext community {q['neartext']:.4f}, "
                 f"sentence-transformers community_detection {q['sentence_transformers']:.4f}.")
    lines.append("\n" + machine_line(r["machine"]))
    return "\n".join(lines)


def main() -> None:
    if "--worker" in sys.argv:
        ap = argparse.ArgumentParser()
        ap.add_argument("--worker")
        ap.add_argument("--n", type=int)
        a = ap.parse_args()
        worker(a.worker, a.n)
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--skip-100k-map", action="store_true")
    args = ap.parse_args()
    runs = {}
    for n in (10_000, 100_000):
        for task in ("community", "st_community", "kmeans", "map"):
            if task == "map" and n == 100_000 and args.skip_100k_map:
                continue
            runs[f"{task}_{n}"] = run(task, n)
    for task in ("community", "st_community"):
        runs[f"{task}_50000"] = run(task, 50_000)
    rows, gold = gold_labels(50_000)
    sizes = np.unique(gold, return_counts=True)[1]
    quality = {"texts": len(rows), "gold_groups": int((sizes > 1).sum()),
               "neartext": ari_of("community", 50_000, rows, gold),
               "sentence_transformers": ari_of("st_community", 50_000, rows, gold)}
    result = {"machine": machine(), "threshold": THRESHOLD, "runs": runs, "quality": quality}
    save("clusters", result, table(result))


if __name__ == "__main__":
    main()
