"""Building a collection from rows that bring their vectors, as whole processes, neartext against
txtai (issue 36): the time from launch to a saved index, and the peak memory, at 20,000 and
100,000 rows, in alternating rounds, medians.

- neartext: ``neartext index docs.parquet -c DIR --id id --text text --vectors vector
  --vectors-from same -q`` (reads the Parquet file; stores ids, texts, a metadata field and the
  vectors in SQLite; builds and saves the vector index: exact below 20,000 passages, HNSW from
  there, tuned).
- txtai (its own environment, ``make bench-peers``): a Python process that loads the vectors
  and ids from a ``.npy`` file (cheaper than reading Parquet: no text), builds
  ``Embeddings(method="external", content=True, backend="faiss")`` from them and saves it, as
  bench/peers/worker.py does.

The rows are bench_scale's: 20,000 real Quora question vectors (or ``--base``'s) plus made ones
(two joined, with noise), so both sides get the same vectors.

    python bench/bench_build.py [--base docs.parquet] [--sizes 20000,100000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_scale import CLI, corpus, timed  # noqa: E402
from common import ROOT, machine, machine_line, save  # noqa: E402

TXTAI = ROOT / "bench" / ".peers" / "txtai" / "bin" / "python"
TXTAI_BUILD = r"""
import sys, numpy as np
from txtai import Embeddings
x = np.load(sys.argv[1])
emb = Embeddings(method="external", content=True, backend="faiss")
emb.index([(i, x[i], None) for i in range(len(x))])
emb.save(sys.argv[2])
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", type=Path, default=None,
                    help="parquet: id, text, vector (default: bench_scale's Quora questions)")
    ap.add_argument("--sizes", default="20000,100000")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    if not TXTAI.is_file():
        raise SystemExit(f"{TXTAI} is missing: run `make bench-build` (it installs txtai)")
    work = Path(tempfile.mkdtemp(prefix="neartext-build-"))
    rows, lines = [], []
    try:
        for n in (int(s) for s in args.sizes.split(",")):
            parquet = work / f"docs{n}.parquet"
            _, raw = corpus(args.base, n, 10, 0.1, parquet, "mixed")
            import pyarrow.parquet as pq

            vecs = work / f"vectors{n}.npy"
            col = pq.read_table(parquet, columns=["vector"]).column("vector").combine_chunks()
            np.save(vecs, np.asarray(col.flatten(), dtype=np.float32).reshape(n, -1))
            got: dict[str, list[tuple[float, float]]] = {"neartext": [], "txtai": []}
            for r in range(args.rounds):
                order = ("neartext", "txtai") if r % 2 == 0 else ("txtai", "neartext")
                for who in order:
                    out = work / f"{who}-{n}-{r}"
                    cmd = ([*CLI, "index", str(parquet), "-c", str(out), "--id", "id", "--text",
                            "text", "--vectors", "vector", "--vectors-from", "same", "-q"]
                           if who == "neartext" else [str(TXTAI), "-c", TXTAI_BUILD, str(vecs), str(out)])
                    s, peak, _ = timed(cmd)
                    got[who].append((s, peak))
                    shutil.rmtree(out, ignore_errors=True)
                    print(f"{n} {who} round {r}: {s:.2f} s, {peak:.0f} MB", flush=True)
            med = {w: (float(np.median([s for s, _ in v])), float(np.median([p for _, p in v])))
                   for w, v in got.items()}
            rows.append({"n": n, "raw_vector_mb": round(raw / 1e6), "rounds": got,
                         "median_s": {w: round(m[0], 2) for w, m in med.items()},
                         "median_peak_mb": {w: round(m[1]) for w, m in med.items()}})
            ratio = med["neartext"][0] / med["txtai"][0]
            lines.append(f"| {n:,} | {med['neartext'][0]:.2f} | {med['txtai'][0]:.2f} | {ratio:.2f}× "
                         f"| {med['neartext'][1]:.0f} | {med['txtai'][1]:.0f} | {raw / 1e6:.0f} |")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    m = machine()
    # the peer as it was measured: its index depends on its version (txtai 9.14 builds
    # IVF{4 sqrt(n)},Flat, its k-means training most of the time at 100,000 rows)
    peer = subprocess.run([str(TXTAI), "-c", "import importlib.metadata as m; print(', '.join("
                           "f'{p} {m.version(p)}' for p in ('txtai', 'faiss-cpu')))"],
                          capture_output=True, text=True, check=True).stdout.strip()
    table = "\n".join([
        "| rows (given vectors) | neartext s | txtai s | neartext / txtai (target ≤ 1.5×) "
        "| neartext peak MB | txtai peak MB | raw vectors MB |", "|---|---|---|---|---|---|---|",
        *lines, "", f"Whole processes, medians of {args.rounds} alternating rounds; the peer: "
        f"{peer}. " + machine_line(m)])
    print(table)
    save("build", {"sizes": rows, "peer": peer, "machine": m}, table)


if __name__ == "__main__":
    main()
