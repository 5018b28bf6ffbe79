"""Milvus benchmark (issue 9): the same 100k-document collection on the local store and on
Milvus, side by side in one run.

Targets, all with an exact (flat) index so that they return the same results:
  - local: the embedded store (SQLite + numpy exact index) — the baseline;
  - milvus-lite: Milvus Lite 3 (pure Python) embedded in this process (``milvus-lite:FILE``);
  - milvus-server: a Milvus Lite 3 server in its own process, over loopback gRPC
    (``milvus://127.0.0.1:PORT/NAME``);
  - milvus-engine: Milvus' C++ engine (the ``milvus`` binary of milvus-lite 2.5, from
    ``make milvus-engine``) serving gRPC, the engine of Milvus servers, on one machine.

Texts are Quora questions (numbered, repeated up to the size), vectors random unit vectors of
all-MiniLM-L6-v2's 384 dimensions: embedding costs the same whatever the store, so the
figures are the stores' own. Measured: writing every document (one ``write``, as
``neartext index`` does), re-writing 1% of them, opening, and sequential search latency
(k=10; unfiltered, a 10% metadata filter, keyword BM25) in alternating blocks of queries.

Usage: python bench/bench_milvus.py [--docs 100000] [--queries 200]
Writes bench/results/milvus.json and .txt.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, SHARED, machine, percentile, run_worker, save, timed  # noqa: E402

from neartext import Collection  # noqa: E402
from neartext.data.address import parse_address  # noqa: E402
from neartext.data.hashing import text_hash  # noqa: E402
from neartext.errors import StoreUnavailable  # noqa: E402
from neartext.store import Document, Passage  # noqa: E402
from neartext.store.factory import create_store  # noqa: E402
from neartext.store.milvus import connect, disconnect  # noqa: E402

DIM = 384


def texts(n: int) -> list[str]:
    path = SHARED / "quora_duplicates" / "eval.csv"
    base: list[str] = []
    if path.is_file():
        seen: set[str] = set()
        for r in csv.DictReader(path.open(encoding="utf-8")):
            for q in (r["question1"].strip(), r["question2"].strip()):
                if q and q not in seen:
                    seen.add(q)
                    base.append(q)
    else:
        print(f"{path} missing: placeholder texts", file=sys.stderr)
        base = [f"how do I fix problem number {i} in my notes app" for i in range(1000)]
    return [f"{base[i % len(base)]} (#{i})" for i in range(n)]


def data(n: int) -> tuple[list[Document], list[Passage], np.ndarray]:
    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((n, DIM), dtype=np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    docs, passages = [], []
    for i, t in enumerate(texts(n)):
        h = text_hash(t)
        docs.append(Document(f"d{i}", t, {"n": i % 10, "year": 2015 + i % 10}, h))
        passages.append(Passage(f"d{i}", 0, len(t), h, vecs[i]))
    return docs, passages, vecs


def manifest_for(enc_name: str = "bench") -> dict:
    return {"format": 1, "neartext_version": "bench", "created": "", "dim": DIM,
            "model": {"name": enc_name, "fingerprint": "bench", "settings": {}},
            "metric": "cosine", "index": "flat", "chunking": None, "cleaning": {}, "source": {},
            "threshold": None}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: list[str], port: int, what: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    a = parse_address(f"milvus://127.0.0.1:{port}/probe")
    for _ in range(300):
        try:
            disconnect(a, connect(a, timeout=2))
            return proc, f"milvus://127.0.0.1:{port}/bench"
        except StoreUnavailable:
            time.sleep(0.2)
    raise RuntimeError(f"{what} did not start")


def start_servers(work: Path) -> dict[str, tuple[subprocess.Popen, str]]:
    """A Milvus Lite server, and Milvus' C++ engine when ``make milvus-engine`` set it up."""
    port = free_port()
    out = {"milvus-server": start([str(Path(sys.executable).with_name("milvus-lite")), "server",
                                   "--data-dir", str(work / "server"), "--host", "127.0.0.1",
                                   "--port", str(port)], port, "Milvus Lite server")}
    engine = ROOT / ".venv-milvus" / "bin" / "python"
    if engine.is_file():
        port = free_port()
        (work / "engine").mkdir()
        out["milvus-engine"] = start([str(engine), str(ROOT / "tests" / "milvus_engine.py"),
                                      str(work / "engine"), str(port)], port, "Milvus engine")
    else:
        print("no .venv-milvus (make milvus-engine): the C++ engine is left out", file=sys.stderr)
    return out


def timings(fn, queries: list, settle: int = 3) -> dict:
    """p50/p99 ms of ``fn`` over ``queries`` (the first ``settle`` calls warm up)."""
    t_all = []
    for i, q in enumerate(queries[:settle] + queries):
        t = time.perf_counter()
        fn(q)
        if i >= settle:
            t_all.append((time.perf_counter() - t) * 1000)
    return {"p50_ms": percentile(t_all, 50), "p99_ms": percentile(t_all, 99),
            "qps_sequential": 1000 / (sum(t_all) / len(t_all)), "n": len(t_all)}


def worker(address: str, n_queries: int, n_filtered: int) -> dict:
    """Search timings of one target, in a process of its own: an embedded engine's threads
    (Milvus Lite's gRPC server and faiss) would otherwise share the CPU with the next target's
    measurements."""
    from neartext.data.filters import parse_filter

    qv = query_vectors(n_queries)
    words = [" ".join(t.split()[:4]) for t in texts(n_queries * 7)[::7]]
    t_open, col = timed(Collection.open, address)
    store = col.store
    out = {"open_s": t_open, "top10_first_query": [h.doc_id for h in store.search(qv[:1], 10)[0]]}
    if parse_address(address).kind == "local":
        out["keyword_index_build_s"], _ = timed(store.keyword_search, ["warm up"], 10)
    out["search"] = timings(lambda q: store.search(q[None], 10), list(qv))
    flt = parse_filter(["n=3"])
    out["search_filtered_10pct"] = timings(lambda q: store.search(q[None], 10, flt),
                                           list(qv[:n_filtered]))
    out["keyword_search"] = timings(lambda q: store.keyword_search([q], 10), words[:100])
    t, _ = timed(lambda: [store.search(qv[i:i + 32], 10) for i in range(0, len(qv), 32)])
    out["batch32_queries_per_s"] = len(qv) / t
    col.close()
    return out


def query_vectors(n: int) -> np.ndarray:
    rng = np.random.default_rng(1)
    qv = rng.standard_normal((n, DIM), dtype=np.float32)
    return qv / np.linalg.norm(qv, axis=1, keepdims=True)


def better(a: dict, b: dict) -> dict:
    """Of two rounds' timings, the better one per figure (machine noise only adds time)."""
    out = dict(a)
    for k in ("search", "search_filtered_10pct", "keyword_search"):
        out[k] = min(a[k], b[k], key=lambda r: r["p50_ms"])
    out["batch32_queries_per_s"] = max(a["batch32_queries_per_s"], b["batch32_queries_per_s"])
    out["open_s"] = min(a["open_s"], b["open_s"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--filtered-queries", type=int, default=30,
                    help="filtered searches per target (slow on Milvus Lite)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.queries, args.filtered_queries)), flush=True)
        return
    docs, passages, vecs = data(args.docs)
    work = Path(tempfile.mkdtemp(prefix="nt-bench-milvus-"))
    servers = start_servers(work)
    targets = {"local": str(work / "local"), "milvus-lite": f"milvus-lite:{work / 'lite.db'}#bench",
               **{name: address for name, (_, address) in servers.items()}}
    result: dict = {"machine": machine(), "documents": args.docs, "dim": DIM, "targets": {},
                    "method": "writes in this process, one target after the other; searches in "
                              "a fresh process per target and round, rounds alternating; the "
                              "better round per figure"}
    try:
        for name, address in targets.items():
            a = parse_address(address)
            store = create_store(a, manifest_for())
            t_write, _ = timed(store.write, docs, passages, [])
            changed = [Document(d.id, d.text + " (edited)", d.metadata, text_hash(d.text + " (edited)"))
                       for d in docs[: args.docs // 100]]
            cp = [Passage(d.id, 0, len(d.text), d.hash, vecs[i]) for i, d in enumerate(changed)]
            t_update, _ = timed(store.write, changed, cp, [])
            if hasattr(store, "finish_build"):  # Milvus: the build flag (no building() here)
                store.finish_build()
            store.close()
            r = {"address": address, "write_s": t_write, "docs_per_s": args.docs / t_write,
                 "update_1pct_s": t_update}
            if a.path is not None:
                r["bytes_on_disk"] = sum(f.stat().st_size for f in a.path.rglob("*") if f.is_file())
            result["targets"][name] = r
            print(name, r, flush=True)
        rounds: dict[str, list[dict]] = {n: [] for n in targets}
        for _ in range(args.rounds):
            for name, address in targets.items():
                rounds[name].append(run_worker(__file__, address, "--queries", str(args.queries),
                                               "--filtered-queries", str(args.filtered_queries)))
        for name, rs in rounds.items():
            best = rs[0]
            for other in rs[1:]:
                best = better(best, other)
            result["targets"][name].update(best, rounds=rs)
        ref = result["targets"]["local"]["top10_first_query"]
        for r in result["targets"].values():
            r["same_top10_as_local"] = r["top10_first_query"] == ref
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(60)
        shutil.rmtree(work, ignore_errors=True)
    heads = {"local": "local (baseline)", "milvus-lite": "milvus-lite (embedded)",
             "milvus-server": "milvus:// Lite server", "milvus-engine": "milvus:// Milvus engine"}
    names = [n for n in heads if n in result["targets"]]
    rows = ["| figure | " + " | ".join(heads[n] for n in names) + " |",
            "|---" * (len(names) + 1) + "|"]

    def row(label, get, fmt):
        vals = [get(result["targets"][n]) for n in names]
        cells = [fmt.format(v) for v in vals]
        cells[1:] = [f"{c} ({v / vals[0]:.{2 if v / vals[0] < 10 else 0}f}×)"
                     for c, v in zip(cells[1:], vals[1:])]
        rows.append(f"| {label} | " + " | ".join(cells) + " |")

    row(f"write {args.docs:,} docs, docs/s", lambda r: r["docs_per_s"], "{:,.0f}")
    row("re-write 1%, s", lambda r: r["update_1pct_s"], "{:.2f}")
    row("open in a fresh process, s", lambda r: r["open_s"], "{:.2f}")
    row("search k=10, p50 ms", lambda r: r["search"]["p50_ms"], "{:.1f}")
    row("search k=10, p99 ms", lambda r: r["search"]["p99_ms"], "{:.1f}")
    row("search, 10% filter, p50 ms", lambda r: r["search_filtered_10pct"]["p50_ms"], "{:.1f}")
    row("keyword (BM25), p50 ms", lambda r: r["keyword_search"]["p50_ms"], "{:.1f}")
    row("batches of 32, queries/s", lambda r: r["batch32_queries_per_s"], "{:,.0f}")
    m = result["machine"]
    table = "\n".join(rows) + (
        f"\n\nIn brackets: the figure divided by the local store's (times and rates alike). Same top 10 "
        f"as local: {', '.join(n for n, r in result['targets'].items() if r['same_top10_as_local'])}. "
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB; {m['date']}.")
    save("milvus", result, table)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
