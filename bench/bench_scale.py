"""One million vectors on one machine (issue 36): the whole `neartext index` process building a
collection from rows that bring their vectors, then a fresh process opening it, and searches
with the query vector given: p50 and recall@10 against exact search (numpy over every vector),
unfiltered and with a filter keeping 10% of the documents.

Vectors: real ones (the first 20,000 distinct Quora questions of ../shared/datasets embedded
with all-MiniLM-L6-v2 and cached, bench_ann's; or any parquet file with ``id``, ``text`` and
``vector`` columns) plus made ones up to ``--n``:

- ``--made mixed`` (the default): each made vector joins two real ones, ``u + w v`` with ``w``
  uniform in [0.2, 1], plus Gaussian noise of norm about ``--noise`` (0.1 here) times its own,
  normalized again: a text about two questions' subjects, as a longer document is. The queries
  are held-out real vectors as they are (a user's question).
- ``--made copies``: noisy copies of the real vectors (noise of norm about ``--noise``, 0.6
  here, times their own), so that at a million rows each question has about 50 copies around it
  and around each other: clumps of near ties, the hardest case for a graph. The queries are
  held-out real vectors with the same noise.

    python bench/bench_scale.py [--base docs.parquet] [--n 1000000] [--made mixed|copies]
    python bench/bench_scale.py --dir DIR [--reuse] [--opens 5] [--sweep 128,192,256,512,768]

``--dir`` keeps the corpus and the collection; ``--reuse`` then measures opening and searching
the collection built there by an earlier run (its build figures are carried over from that
run's results, with their date). Opening is timed in ``--opens`` fresh processes (median).
``--sweep`` also searches the queries at other ``ef_search`` settings than the one the build
chose from its held-out rows: recall@10 and p50 of each.

``--tune N``: the first N queries are given to the build as ``--tune-queries`` (with
``--reuse``, to ``Collection.tune_index`` of the collection there), so that the search setting
is chosen on them; only the other queries are then measured.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, machine, machine_line, save  # noqa: E402

CLI = [sys.executable, "-m", "neartext"]


def corpus(base: Path | None, n: int, queries: int, noise: float, out: Path, made: str = "mixed"
           ) -> tuple[np.ndarray, int]:
    """Write ``n`` rows (id, text, bucket, vector) to ``out`` (parquet, in row groups); return
    the queries' vectors and the raw vector bytes."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if base is None:  # 20,000 Quora questions, embedded once with the default model (cached)
        from bench_ann import _questions, vectors

        v, texts = vectors(20_000), _questions()[:20_000]
    else:
        t = pq.read_table(base)
        v = np.asarray(t.column("vector").to_pylist(), dtype=np.float32)
        texts = t.column("text").to_pylist()
    seen: set[str] = set()
    for i, t in enumerate(texts):  # a question repeated but for its spaces is one text to index,
        key = " ".join(t.split())  # which would drop the row (20,000 rows built 19,999, below
        if key in seen:            # the size from which the index is a graph)
            texts[i] = f"{t} (again {i})"
        seen.add(" ".join(texts[i].split()))
    rng = np.random.default_rng(0)
    held = rng.choice(len(v), queries, replace=False)
    keep = np.setdiff1d(np.arange(len(v)), held)
    dim = v.shape[1]

    def noisy(x: np.ndarray) -> np.ndarray:
        e = rng.standard_normal(x.shape).astype(np.float32) * (noise / np.sqrt(dim))
        y = x + e
        return y / np.linalg.norm(y, axis=1, keepdims=True)

    q = noisy(v[held]) if made == "copies" else v[held]
    writer = None
    done = 0
    while done < n:
        j = np.arange(done, min(done + 50_000, n))
        src = keep[j % len(keep)]
        x = v[src].copy()
        copies = j >= len(keep)  # past the real vectors: made from them
        if made == "copies":
            x[copies] = noisy(x[copies])
        else:
            other = v[keep[rng.integers(0, len(keep), int(copies.sum()))]]
            w = rng.uniform(0.2, 1.0, (len(other), 1)).astype(np.float32)
            x[copies] = noisy(x[copies] + w * other)
        table = pa.table({
            "id": [f"d{i}" for i in j],
            # a copy's text names it (index drops rows repeating another's text)
            "text": [texts[i] if not c else f"{texts[i]} (copy {k})"
                     for i, c, k in zip(src, copies, j)],
            "bucket": (j % 10).astype(np.int64),
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), dim)})
        if writer is None:
            writer = pq.ParquetWriter(out, table.schema)
        writer.write_table(table)
        done += len(j)
    assert writer is not None
    writer.close()
    return q, n * dim * 4


WRAP = ("import resource, subprocess, sys\n"
        "r = subprocess.run(sys.argv[1:])\n"
        "print('peak', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n"
        "sys.exit(r.returncode)\n")


def timed(cmd: list[str]) -> tuple[float, float, str]:
    """Run ``cmd`` (in a wrapper process that reports its child's peak RSS); its seconds, that
    peak (MB) and its stdout."""
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", WRAP, *cmd], capture_output=True, text=True,
                       cwd=ROOT)
    took = time.perf_counter() - t0
    if r.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stderr[-2000:]}")
    peak = int(r.stderr.strip().splitlines()[-1].split()[1])
    return took, peak / 1024, r.stdout


SEARCH = r"""
import json, sys, time, numpy as np
t0 = time.perf_counter()
from neartext import Collection
from neartext.data.filters import parse_filter
col = Collection.open(sys.argv[1])
opened = time.perf_counter() - t0
q = np.load(sys.argv[2])
store = col.store
store.search(q[:1], 10)
first = time.perf_counter() - t0
flt = parse_filter("bucket=3")
times = {"all": [], "10%": []}
hits = {"all": [], "10%": []}
for r in range(3):
    for which, f in (("all", None), ("10%", flt)):
        for row in q:
            t = time.perf_counter()
            h = store.search(row[None, :], 10, f)[0]
            times[which].append(time.perf_counter() - t)
            if r == 0:
                hits[which].append([x.doc_id for x in h])
around = None
ix = store.index
if getattr(ix, "kind", "") == "hnsw":  # the time spent around faiss: the same search, raw
    import faiss
    params = faiss.SearchParametersHNSW(efSearch=ix.ef_search)
    mine, raw = [], []
    faiss.omp_set_num_threads(1)  # as neartext searches one query
    for r in range(3):
        for i, row in enumerate(q):  # which goes first alternates (the second finds warm caches)
            for which in ((0, 1) if (i + r) % 2 else (1, 0)):
                t = time.perf_counter()
                if which:
                    ix.index.search(row[None, :], 10, params=params)
                    raw.append(time.perf_counter() - t)
                else:
                    store.search(row[None, :], 10)
                    mine.append(time.perf_counter() - t)
    around = {"neartext_ms": float(np.median(mine)) * 1000, "raw_faiss_ms": float(np.median(raw)) * 1000}
sweep = {}  # other ef_search settings on the same queries (unfiltered, one query at a time)
if getattr(ix, "kind", "") == "hnsw" and len(sys.argv) > 3:
    chosen = ix.ef_search
    for ef in [int(x) for x in sys.argv[3].split(",")]:
        ix.ef_search = ef
        got, ts = [], []
        for row in q:
            t = time.perf_counter()
            h = store.search(row[None, :], 10)[0]
            ts.append(time.perf_counter() - t)
            got.append([x.doc_id for x in h])
        sweep[ef] = {"p50_ms": float(np.median(ts)) * 1000, "hits": got}
    ix.ef_search = chosen
print(json.dumps({"open_s": opened, "first_search_s": first, "around_faiss": around,
                  "sweep": sweep,
                  "p50_ms": {k: float(np.median(v)) * 1000 for k, v in times.items()},
                  "hits": hits, "info": {k: v for k, v in store.index_info().items()
                                         if isinstance(v, (int, float, str))}}))
"""


OPEN = r"""
import sys, time
t0 = time.perf_counter()
from neartext import Collection
Collection.open(sys.argv[1])
print(time.perf_counter() - t0)
"""


def exact(parquet: Path, q: np.ndarray) -> dict[str, list[list[str]]]:
    """The true top 10 of each query over every vector, unfiltered and in bucket 3."""
    import pyarrow.parquet as pq

    f = pq.ParquetFile(parquet)
    best: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {"all": [], "10%": []}
    for i in range(f.num_row_groups):
        g = f.read_row_group(i, columns=["id", "bucket", "vector"])
        v = np.asarray(g.column("vector").combine_chunks().flatten(), dtype=np.float32)
        v = v.reshape(len(g), -1)
        ids = np.asarray(g.column("id").to_pylist())
        bucket = np.asarray(g.column("bucket").to_pylist())
        s = q @ v.T
        for which, mask in (("all", np.ones(len(g), bool)), ("10%", bucket == 3)):
            sm = np.where(mask[None, :], s, -np.inf)
            top = np.argpartition(-sm, 10, axis=1)[:, :10]
            best[which].append((np.take_along_axis(sm, top, 1), ids[top]))
    out = {}
    for which, parts in best.items():
        scores = np.concatenate([p[0] for p in parts], axis=1)
        ids = np.concatenate([p[1] for p in parts], axis=1)
        order = np.argsort(-scores, axis=1)[:, :10]
        out[which] = np.take_along_axis(ids, order, 1).tolist()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", type=Path, default=None,
                    help="parquet: id, text, vector (default: 20,000 Quora questions, embedded once)")
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--made", choices=("mixed", "copies"), default="mixed",
                    help="how vectors past the real ones are made (see the module docs)")
    ap.add_argument("--noise", type=float, default=None,
                    help="relative noise of made vectors (default: 0.1 mixed, 0.6 copies)")
    ap.add_argument("--precision", default="float32")
    ap.add_argument("--dir", type=Path, default=None, help="where to build (default: a temp dir)")
    ap.add_argument("--reuse", action="store_true",
                    help="measure the collection an earlier run built in --dir")
    ap.add_argument("--sweep", default="",
                    help="also search the queries at these ef_search settings, e.g. 128,192,256,"
                         "384,512,768: recall@10 and p50 of each (what the held-out rows the "
                         "graph is tuned on ask for, against what the queries need)")
    ap.add_argument("--opens", type=int, default=3,
                    help="fresh processes timed opening the collection (median)")
    ap.add_argument("--tune", type=int, default=0,
                    help="the first N queries choose the search setting (--tune-queries); the "
                         "others are measured")
    args = ap.parse_args()
    if args.reuse and args.dir is None:
        ap.error("--reuse needs --dir")
    work = args.dir or Path(tempfile.mkdtemp(prefix="neartext-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    parquet = work / f"docs{args.n}.parquet"
    qfile = work / "queries.npy"
    name = f"scale-{args.n}-{args.precision}-{args.made}" + ("-tuned" if args.tune else "")
    tune_file = work / "tune_queries.npy"
    tuning = ["--tune-queries", str(tune_file)] if args.tune else []
    if args.noise is None:
        args.noise = 0.1 if args.made == "mixed" else 0.6
    col = work / f"c-{args.precision}"
    build_from = None
    if args.reuse:
        earlier = json.loads((ROOT / "bench" / "results" / f"{name}.json").read_text())
        q, raw = np.load(qfile), args.n * int(np.load(qfile).shape[1]) * 4
        if args.tune:
            np.save(tune_file, q[:args.tune])
            subprocess.run([sys.executable, "-c", "import sys, numpy as np; from neartext import "
                            "Collection; Collection.open(sys.argv[1]).tune_index(np.load("
                            "sys.argv[2]))", str(col), str(tune_file)], check=True, cwd=ROOT)
        build_s, build_rss = earlier["build_s"], earlier["build_peak_rss_mb"]
        build_from = earlier.get("build_from") or earlier["machine"]["date"]
    else:
        t0 = time.perf_counter()
        q, raw = corpus(args.base, args.n, args.queries, args.noise, parquet, args.made)
        np.save(qfile, q)
        np.save(tune_file, q[:args.tune])
        print(f"corpus written in {time.perf_counter() - t0:.0f} s", flush=True)
        build_s, build_rss, _ = timed([*CLI, "index", str(parquet), "-c", str(col), "--id",
                                       "id", "--text", "text", "--vectors", "vector",
                                       "--vectors-from", "same", "--precision",
                                       args.precision, *tuning, "-q"])
        print(f"built in {build_s:.0f} s, peak RSS {build_rss:.0f} MB", flush=True)
    measured = qfile
    if args.tune:  # only the queries the setting was not chosen on
        q = q[args.tune:]
        measured = work / "measured_queries.npy"
        np.save(measured, q)
    _, search_rss, out = timed([sys.executable, "-c", SEARCH, str(col), str(measured),
                                *([args.sweep] if args.sweep else [])])
    got = json.loads(out)
    opens = [got["open_s"]] + [
        float(subprocess.run([sys.executable, "-c", OPEN, str(col)], capture_output=True,
                             text=True, check=True, cwd=ROOT).stdout)
        for _ in range(args.opens - 1)]
    got["open_s"] = float(np.median(opens))
    truth = exact(parquet, q)
    recall = {w: float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(truth[w], got["hits"][w])]))
              for w in truth}
    sweep = {int(ef): {"recall_at_10": round(float(np.mean(
        [len(set(a) & set(b)) / 10 for a, b in zip(truth["all"], v["hits"])])), 4),
        "p50_ms": round(v["p50_ms"], 3)} for ef, v in got["sweep"].items()}
    disk = sum(f.stat().st_size for f in col.rglob("*") if f.is_file()) / 1e6
    res = {"n": args.n, "precision": args.precision, "made": args.made, "noise": args.noise,
           "tuned_on_queries": args.tune, "queries_measured": len(q),
           "raw_vector_mb": round(raw / 1e6), "build_s": round(build_s, 1),
           "build_peak_rss_mb": round(build_rss), "build_from": build_from,
           "open_s": round(got["open_s"], 2), "open_s_runs": [round(x, 2) for x in opens],
           "first_search_s": round(got["first_search_s"], 2),
           "search_process_peak_rss_mb": round(search_rss),
           "p50_ms": {k: round(v, 3) for k, v in got["p50_ms"].items()},
           "recall_at_10": {k: round(v, 4) for k, v in recall.items()},
           "filtered_always_k": all(len(h) == 10 for h in got["hits"]["10%"]),
           "around_faiss": got["around_faiss"], "ef_sweep": sweep,
           "disk_mb": round(disk), "index": got["info"], "machine": machine()}
    table = "\n".join([
        f"| {args.n:,} vectors ({args.precision}, {args.made}), given | value | target |",
        "|---|---|---|",
        f"| search setting chosen on | {res['index'].get('tuned_on')} (ef_search "
        f"{res['index'].get('ef_search')}); measured: {len(q)} other queries | |",
        f"| build, whole process{' (run of ' + build_from + ')' if build_from else ''} | "
        f"{res['build_s']:.0f} s | ≤ 600 s |",
        f"| build peak RSS / raw vectors | {res['build_peak_rss_mb']} MB / {res['raw_vector_mb']} MB "
        f"({res['build_peak_rss_mb'] / res['raw_vector_mb']:.2f}×) | ≤ 2.5× |",
        f"| open (fresh process, import included; median of {len(opens)}: "
        f"{', '.join(f'{x:.2f}' for x in opens)}) | {res['open_s']} s | ≤ 3 s |",
        f"| query p50, unfiltered / 10% filter | {res['p50_ms']['all']} / {res['p50_ms']['10%']} ms "
        f"| ≤ 2 ms |",
        f"| recall@10 vs exact, unfiltered / 10% filter | {res['recall_at_10']['all']} / "
        f"{res['recall_at_10']['10%']} | ≥ 0.99 |",
        f"| filtered always k | {'yes' if res['filtered_always_k'] else 'no'} | yes |",
        *([f"| time around faiss (p50 neartext − raw faiss, same ef_search, one query) | "
           f"{a['neartext_ms'] - a['raw_faiss_ms']:.3f} ms ({a['neartext_ms']:.3f} − "
           f"{a['raw_faiss_ms']:.3f}) | ≤ 0.05 ms |"] if (a := res["around_faiss"]) else []),
        f"| disk | {res['disk_mb']} MB | |",
        *(["", f"ef_search tried on the same queries (unfiltered; chosen at build: "
           f"{res['index'].get('ef_search')}):", "",
           "| ef_search | " + " | ".join(str(ef) for ef in sweep) + " |",
           "|---|" + "---|" * len(sweep),
           "| recall@10 | " + " | ".join(str(v["recall_at_10"]) for v in sweep.values()) + " |",
           "| p50 ms | " + " | ".join(str(v["p50_ms"]) for v in sweep.values()) + " |"]
          if sweep else []),
        "", machine_line(res["machine"])])
    print(table)
    save(name, res, table)
    if os.environ.get("KEEP") is None and args.dir is None:
        import shutil
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
