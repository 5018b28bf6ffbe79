"""One vector store measured on given vectors (run with that store's own Python; see
bench/bench_peers.py): build, disk, open, query p50 with the query vector given, a filter keeping
10% of the documents, recall@10 against exact search, an update giving 1% of the documents new
vectors (and whether a search then finds them). Prints one JSON object.

    python worker.py STORE VECTORS.npy QUERIES.npy EXACT.npy WORKDIR
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time

import numpy as np

STORE, VECS, QUERIES, EXACT, WORK = sys.argv[1:6]
x = np.load(VECS)
q = np.load(QUERIES)
exact = np.load(EXACT)  # (n_queries, 10) row positions of the exact top 10
n = len(x)
bucket = np.arange(n) % 10  # the filter keeps bucket 3: 10%
shutil.rmtree(WORK, ignore_errors=True)
os.makedirs(WORK)


def disk(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def build_and_open():
    """(build, open, search(v, flt) -> list of row positions) for STORE."""
    if STORE == "neartext":
        from neartext.data.filters import parse_filter
        from neartext.store import Document, Passage
        from neartext.store.local import LocalStore

        s = LocalStore.create(WORK + "/c", {"dim": x.shape[1]})
        docs = [Document(str(i), "t", {"bucket": int(b)}, f"h{i}") for i, b in enumerate(bucket)]
        s.write(docs, [Passage(d.id, 0, 1, d.hash, v) for d, v in zip(docs, x)], [])
        s.close()
        t0 = time.perf_counter()
        s = LocalStore(WORK + "/c")
        opened = time.perf_counter() - t0
        flt = parse_filter("bucket=3")

        def search(v, filtered):
            return [int(h.doc_id) for h in s.search(v[None, :], 10, flt if filtered else None)[0]]

        def update(rows, vecs):
            changed = [Document(str(i), "t2", {"bucket": int(bucket[i])}, f"u{i}") for i in rows]
            s.write(changed, [Passage(d.id, 0, 1, d.hash, v) for d, v in zip(changed, vecs)], [])
        return opened, search, update
    if STORE == "qdrant":
        from qdrant_client import QdrantClient, models

        c = QdrantClient(path=WORK + "/q")
        c.create_collection("t", vectors_config=models.VectorParams(
            size=x.shape[1], distance=models.Distance.COSINE))
        for i in range(0, n, 1000):
            c.upsert("t", points=[models.PointStruct(id=j, vector=x[j].tolist(),
                                                     payload={"bucket": int(bucket[j])})
                                  for j in range(i, min(n, i + 1000))])
        c.close()
        t0 = time.perf_counter()
        c = QdrantClient(path=WORK + "/q")
        opened = time.perf_counter() - t0
        flt = models.Filter(must=[models.FieldCondition(key="bucket",
                                                        match=models.MatchValue(value=3))])

        def search(v, filtered):
            res = c.query_points("t", query=v.tolist(), limit=10,
                                 query_filter=flt if filtered else None)
            return [int(p.id) for p in res.points]

        def update(rows, vecs):
            c.upsert("t", points=[models.PointStruct(id=int(j), vector=v.tolist(),
                                                     payload={"bucket": int(bucket[j])})
                                  for j, v in zip(rows, vecs)])
        search.close = c.close  # type: ignore[attr-defined]  # before the interpreter exits
        return opened, search, update
    if STORE == "lancedb":
        import lancedb
        import pyarrow as pa

        db = lancedb.connect(WORK + "/l")
        table = pa.table({"id": np.arange(n), "bucket": bucket,
                          "vector": pa.FixedSizeListArray.from_arrays(
                              pa.array(x.reshape(-1)), x.shape[1])})
        db.create_table("t", data=table)
        t0 = time.perf_counter()
        tbl = lancedb.connect(WORK + "/l").open_table("t")
        opened = time.perf_counter() - t0

        def search(v, filtered):
            s = tbl.search(v).metric("cosine").limit(10)
            if filtered:
                s = s.where("bucket = 3", prefilter=True)
            return [int(r["id"]) for r in s.to_list()]

        def update(rows, vecs):
            new = pa.table({"id": np.asarray(rows), "bucket": bucket[rows],
                            "vector": pa.FixedSizeListArray.from_arrays(
                                pa.array(np.asarray(vecs).reshape(-1)), x.shape[1])})
            tbl.merge_insert("id").when_matched_update_all() \
                .when_not_matched_insert_all().execute(new)
        return opened, search, update
    if STORE == "txtai":
        from txtai import Embeddings

        # vectors given: txtai's "external" vectors, no transform (the data are the vectors);
        # an id ending in 3 is bucket 3 (txtai filters in SQL over its content store)
        emb = Embeddings(method="external", content=True, backend="faiss")
        emb.index([(i, x[i], None) for i in range(n)])
        emb.save(WORK + "/t")
        t0 = time.perf_counter()
        emb = Embeddings()
        emb.load(WORK + "/t")
        opened = time.perf_counter() - t0

        def search(v, filtered):
            if filtered:  # txtai filters in SQL over its content store
                rows = emb.search("select id, score from txtai where similar(:x) and "
                                  "id like '%3'", 10, parameters={"x": v})
            else:
                rows = emb.search(v, 10)
            return [int(r["id"] if isinstance(r, dict) else r[0]) for r in rows]

        def update(rows, vecs):
            emb.upsert([(int(j), v, None) for j, v in zip(rows, vecs)])
        return opened, search, update
    if STORE == "chroma":
        import chromadb

        client = chromadb.PersistentClient(path=WORK + "/c")
        col = client.create_collection("bench", configuration={"hnsw": {"space": "cosine"}})
        for i in range(0, n, 5000):
            j = np.arange(i, min(n, i + 5000))
            col.add(ids=[str(k) for k in j], embeddings=x[j],
                    metadatas=[{"bucket": int(bucket[k])} for k in j])
        del col, client
        t0 = time.perf_counter()
        col = chromadb.PersistentClient(path=WORK + "/c").get_collection("bench")
        opened = time.perf_counter() - t0

        def search(v, filtered):
            res = col.query(query_embeddings=[v], n_results=10,
                            where={"bucket": 3} if filtered else None, include=[])
            return [int(i) for i in res["ids"][0]]

        def update(rows, vecs):
            col.upsert(ids=[str(j) for j in rows], embeddings=np.asarray(vecs),
                       metadatas=[{"bucket": int(bucket[j])} for j in rows])
        return opened, search, update
    raise SystemExit(f"unknown store {STORE}")


t0 = time.perf_counter()
opened, search, update = build_and_open()
built = time.perf_counter() - t0 - opened
size = disk(WORK)
for v in q[:5]:
    search(v, False)
    search(v, True)
times = {"all": [], "10%": []}
found_all, full = [], True
for v in q:
    t = time.perf_counter()
    got = search(v, False)
    times["all"].append(time.perf_counter() - t)
    found_all.append(got)
    t = time.perf_counter()
    got_f = search(v, True)
    times["10%"].append(time.perf_counter() - t)
    full &= len(got_f) == 10 and all(i % 10 == 3 for i in got_f)
# an update: 1% of the documents get new vectors (another document's, so the check is easy)
rows = np.sort(np.random.default_rng(1).choice(n, n // 100, replace=False))
new = x[(rows + n // 2) % n]
t = time.perf_counter()
update(rows, new)
updated = time.perf_counter() - t
found_new = np.mean([int(rows[i]) in search(new[i], False) for i in range(0, len(rows), 10)])
getattr(search, "close", lambda: None)()
recall = float(np.mean([len(set(a) & set(b.tolist())) / 10 for a, b in zip(found_all, exact)]))
print(json.dumps({"store": STORE, "build_s": round(built, 2), "open_s": round(opened, 3),
                  "disk_mb": round(size / 1e6, 1), "update_s": round(updated, 3),
                  "update_found": round(float(found_new), 2),
                  "p50_ms": round(float(np.median(times["all"])) * 1e3, 3),
                  "p50_filtered_ms": round(float(np.median(times["10%"])) * 1e3, 3),
                  "recall_at_10": round(recall, 4), "filtered_always_k": full}))
