"""This code against an earlier neartext, side by side in one run (the baseline is named by its
source directory, e.g. a ``git worktree`` of the previous release).

Each figure is measured in a fresh process per version and round, rounds alternating, and the
better round kept (the machines are shared and noisy). Same texts, same model, same machine:
  - build: ``Collection.from_file`` of N Quora questions (encoding included);
  - open: ``Collection.open`` of that collection (the index file loaded and checked);
  - search: ``Collection.search`` p50 over the queries (encoding included);
  - search_vector: ``Store.search`` p50 with the query vector given (k=10), unfiltered and with
    a filter passing 10% of documents;
  - upsert_1pct: ``Collection.upsert`` of 1% of the documents with changed text;
  - the service (``create_app`` under uvicorn, HTTP on loopback): search p50 of 100 sequential
    requests, and the time 8 concurrent clients take for all queries.

Usage: python bench/bench_versions.py --baseline /path/to/old/src [--docs 2000] [--rounds 2]
Writes bench/results/versions.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED, machine, machine_line, need, save  # noqa: E402

HERE = Path(__file__).resolve().parents[1] / "src"

WORKER = r'''
import json, sys, time, statistics
import numpy as np
from neartext import Collection, Record
args = json.loads(sys.argv[1])
texts, queries, path = args["texts"], args["queries"], args["path"]
out = {}
corpus = path + ".csv"
t = time.perf_counter()
col, _ = Collection.from_file(path, corpus, ["text"], "id")
out["build_s"] = time.perf_counter() - t
col.close()
t = time.perf_counter()
col = Collection.open(path)
out["open_s"] = time.perf_counter() - t
col.search("warm up", k=10)
lat = []
for q in queries:
    t = time.perf_counter(); col.search(q, k=10); lat.append(time.perf_counter() - t)
out["search_p50_ms"] = 1000 * statistics.median(lat)
vecs = col.encoder.encode(queries, kind="query")
flt = col.make_filter("bucket=3")
for name, f in (("search_vector_p50_ms", None), ("search_vector_filtered_p50_ms", flt)):
    lat = []
    for v in vecs:
        t = time.perf_counter(); col.store.search(v[None], 10, f); lat.append(time.perf_counter() - t)
    out[name] = 1000 * statistics.median(lat)
n = max(1, len(texts) // 100)
recs = [Record(f"d{i}", texts[i] + " (edited)", {"bucket": i % 10}) for i in range(n)]
t = time.perf_counter()
col.upsert(recs)
out["upsert_1pct_s"] = time.perf_counter() - t
col.close()
# the service: a real uvicorn server in this process, HTTP from threads
import socket, threading, urllib.request
import uvicorn
from neartext.serve import ServeSettings, create_app
sock = socket.socket(); sock.bind(("127.0.0.1", 0)); port = sock.getsockname()[1]; sock.close()
server = uvicorn.Server(uvicorn.Config(create_app(ServeSettings.from_args([path])), host="127.0.0.1",
                                       port=port, log_level="warning", access_log=False))
th = threading.Thread(target=server.run, daemon=True); th.start()
while not server.started:
    time.sleep(0.05)
name = path.rstrip("/").rsplit("/", 1)[-1]
def ask(q):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/collections/{name}/search",
                                 data=json.dumps({"query": q, "k": 10}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        r.read()
ask("warm up")
lat = []
for q in queries[:100]:
    t = time.perf_counter(); ask(q); lat.append(time.perf_counter() - t)
out["http_search_p50_ms"] = 1000 * statistics.median(lat)
def client(qs):
    for q in qs:
        ask(q)
threads = [threading.Thread(target=client, args=(queries[i::8],)) for i in range(8)]
t = time.perf_counter()
for x in threads: x.start()
for x in threads: x.join()
out["http_8_clients_s"] = time.perf_counter() - t
server.should_exit = True; th.join(30)
print(json.dumps(out))
'''


def quora(n_docs: int, n_queries: int) -> tuple[list[str], list[str]]:
    rows = list(csv.DictReader(need(SHARED / "quora_duplicates" / "eval.csv").open(encoding="utf-8")))
    docs: list[str] = []
    seen: set[str] = set()
    for r in rows:
        q = r["question1"].strip()
        if q and q not in seen:
            seen.add(q)
            docs.append(q)
        if len(docs) == n_docs:
            break
    queries = [r["question2"].strip() for r in rows[-n_queries:]]
    return docs, queries


def run(src: Path, texts: list[str], queries: list[str], work: Path) -> dict[str, float]:
    path = work / f"col-{os.urandom(4).hex()}"
    with open(str(path) + ".csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "text", "bucket"])
        w.writerows([f"d{i}", t, i % 10] for i, t in enumerate(texts))
    env = {**os.environ, "PYTHONPATH": str(src)}
    res = subprocess.run([sys.executable, "-c", WORKER,
                          json.dumps({"texts": texts, "queries": queries, "path": str(path)})],
                         capture_output=True, text=True, env=env, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--baseline", required=True, help="the earlier neartext's src directory")
    ap.add_argument("--name", default="baseline", help="what to call the baseline in the table")
    ap.add_argument("--docs", type=int, default=2000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    texts, queries = quora(a.docs, a.queries)
    versions = {a.name: Path(a.baseline).resolve(), "this": HERE}
    best: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="neartext-versions-") as tmp:
        for r in range(a.rounds):
            order = list(versions) if r % 2 == 0 else list(reversed(versions))
            for name in order:
                got = run(versions[name], texts, queries, Path(tmp))
                prev = best.setdefault(name, got)
                best[name] = {k: min(v, prev[k]) for k, v in got.items()}
    metrics = list(best["this"])
    rows = [{"metric": m, a.name: round(best[a.name][m], 3), "this": round(best["this"][m], 3),
             "ratio": round(best["this"][m] / best[a.name][m], 2)} for m in metrics]
    table = [f"| {a.docs:,} Quora questions, {a.queries} queries | {a.name} | this | this / "
             f"{a.name} |", "|---|---|---|---|"]
    table += [f"| {r['metric']} | {r[a.name]} | {r['this']} | {r['ratio']} |" for r in rows]
    table.append("")
    m = machine()
    table.append(machine_line(m))
    save("versions", {"machine": m, "baseline": str(versions[a.name]), "docs": a.docs,
                      "queries": a.queries, "rounds": a.rounds, "rows": rows,
                      "method": "fresh process per version and round, rounds alternating, the "
                                "better round per figure"}, "\n".join(table))


if __name__ == "__main__":
    main()
