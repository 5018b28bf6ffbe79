"""What ``neartext cluster`` gives without options (issue 37): the default before (community at the
mining threshold, 0.75, min size 3) against the default now (k-means with about sqrt(n) clusters,
``neartext.engine.clustering.default_k``), in one run on the same vectors.

Data, each indexed with the default model (all-MiniLM-L6-v2):
  - the demo corpus (247 feedback texts, 20 topics in its ``topic`` column): normalized mutual
    information (NMI) of each clustering with the topics;
  - 2,000 and 20,000 distinct Quora questions (../shared/datasets/quora_duplicates), no topics:
    how many clusters, the share in no cluster, the share of the largest cluster.

    python bench/bench_cluster_defaults.py

Writes bench/results/cluster-defaults.json and .txt.
"""

from __future__ import annotations

import csv
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, SHARED, machine, machine_line, need, save  # noqa: E402

BEFORE = ("community 0.75 (the old default)", "community", {"threshold": 0.75, "min_size": 3})


def quora_corpus(path: Path, n: int) -> Path:
    """The first ``n`` distinct questions of the Quora duplicates files, one per row."""
    seen: dict[str, None] = {}
    for name in ("eval.csv", "test.csv"):
        with need(SHARED / "quora_duplicates" / name).open(encoding="utf-8") as f:
            for row in csv.DictReader(f):
                for t in (row["question1"], row["question2"]):
                    if t.strip():
                        seen.setdefault(t.strip())
                if len(seen) >= n:
                    break
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text"])
        w.writerows([t] for t in list(seen)[:n])
    return path


def measure(name: str, vectors: np.ndarray, topics: list[str] | None) -> list[dict]:
    from sklearn.metrics import normalized_mutual_info_score

    from neartext.engine.clustering import NOISE, cluster_vectors, default_k

    n = len(vectors)
    settings = [BEFORE, (f"k-means k={default_k(n)} (the default now)", "kmeans",
                         {"k": default_k(n)})]
    rows = []
    for label, method, kw in settings:
        t0 = time.perf_counter()
        a = cluster_vectors(vectors, method, **kw)
        seconds = time.perf_counter() - t0
        kept = a[a != NOISE]
        rows.append({"corpus": name, "documents": n, "clustering": label,
                     "clusters": int(len(np.unique(kept))),
                     "in_none": round(float(np.mean(a == NOISE)), 3),
                     "largest": round(float(np.bincount(kept).max() / n) if len(kept) else 0.0, 3),
                     "nmi": (round(float(normalized_mutual_info_score(topics, a)), 3)
                             if topics else None),
                     "seconds": round(seconds, 2)})
    return rows


def main() -> None:
    from neartext import Collection
    from neartext.engine.clustering import document_matrix

    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        corpora = [("demo", ROOT / "demo" / "feedback.csv", "id"),
                   ("quora 2k", quora_corpus(Path(tmp) / "q2k.csv", 2000), None),
                   ("quora 20k", quora_corpus(Path(tmp) / "q20k.csv", 20000), None)]
        for name, path, id_column in corpora:
            col, _ = Collection.from_file(Path(tmp) / name.replace(" ", "_"), path, ["text"],
                                          id_column)
            ids, vectors = document_matrix(col)
            docs = {d.id: d for d in col.get(ids)}
            topics = ([str(docs[i].metadata.get("topic")) for i in ids]
                      if "topic" in docs[ids[0]].metadata else None)
            rows += measure(name, vectors, topics)
            col.close()
    m = machine()
    lines = [f"`neartext cluster` defaults, before and now, in one run ({machine_line(m)})", "",
             "| corpus | clustering | clusters | in none | largest | NMI with topics |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        nmi = "" if r["nmi"] is None else f"{r['nmi']:.3f}"
        lines.append(f"| {r['corpus']} ({r['documents']:,}) | {r['clustering']} | "
                     f"{r['clusters']} | {r['in_none']:.0%} | {r['largest']:.0%} | {nmi} |")
    save("cluster-defaults", {"machine": m, "rows": rows}, "\n".join(lines))


if __name__ == "__main__":
    main()
