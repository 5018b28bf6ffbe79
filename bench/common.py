"""Helpers shared by the benchmarks: machine description, timing, data locations, result files."""

from __future__ import annotations

import compileall
import json
import os
import platform
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("NEARTEXT_SHARED", ROOT.parent / "shared")) / "datasets"
RESULTS = ROOT / "bench" / "results"


def compile_package() -> None:
    """Compile neartext's modules to bytecode, as installing the package leaves them: with
    ``PYTHONDONTWRITEBYTECODE`` set (as on the project machine) an editable checkout would
    otherwise compile every module in every process a start-up benchmark times (~0.2 s)."""
    compileall.compile_dir(ROOT / "src" / "neartext", quiet=1)


def machine() -> dict:
    """What the numbers were measured on."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem = next(int(ln.split()[1]) for ln in Path("/proc/meminfo").read_text().splitlines()
                   if ln.startswith("MemTotal")) / 2**20
    except (OSError, StopIteration):
        mem = float("nan")
    versions = {}
    for mod in ("torch", "sentence_transformers", "faiss", "numpy"):
        try:
            versions[mod] = __import__(mod).__version__
        except Exception:
            versions[mod] = None
    return {"cpu": cpu, "cores": os.cpu_count(), "ram_gib": round(mem, 1),
            "python": sys.version.split()[0], "platform": platform.platform(), **versions,
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def machine_line(m: dict) -> str:
    """One line describing ``machine()``'s result, for the tables under the README's benchmarks."""
    return (f"Machine: {m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB RAM; Python {m['python']}, "
            f"torch {m['torch']}, sentence-transformers {m['sentence_transformers']}, faiss "
            f"{m['faiss']}; {m['date']}.")


def run_worker(script: str, *args: str) -> dict:
    """Run ``python script --worker ARGS`` in a fresh process (its own peak memory) and return
    the JSON object it prints last."""
    import json
    import subprocess

    out = subprocess.run([sys.executable, script, "--worker", *args], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    res = json.loads(out.stdout.strip().splitlines()[-1])
    print(res, flush=True)
    return res


def percentile(values: list[float], q: float) -> float:
    s = sorted(values)
    idx = min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))
    return s[idx]


def timed(fn, *args, **kw):
    t = time.perf_counter()
    out = fn(*args, **kw)
    return time.perf_counter() - t, out


def median(values: list[float]) -> float:
    return statistics.median(values)


def held_out_split(groups, share: float, seed: int):
    """A benchmark's own split by group (a seeded permutation of the distinct groups, the
    first ``share`` of them held out): independent of the product's own held-out split
    (``neartext.algo.adapters.split_groups``, a hash of each query and the seed), which would
    otherwise hold out, inside a benchmark's training queries, none of them."""
    import numpy as np

    keys = list(dict.fromkeys(groups))
    order = np.random.default_rng(seed).permutation(len(keys))
    held = {keys[i] for i in order[:max(1, int(round(share * len(keys))))]}
    return np.array([g in held for g in groups], dtype=bool)


def need(path: Path) -> Path:
    if not path.exists():
        sys.exit(f"benchmark data missing: {path} (set NEARTEXT_SHARED to the shared/ folder)")
    return path


def save(name: str, data: dict, table: str | None = None) -> Path:
    """Write ``bench/results/NAME.json`` (atomically) and, given a markdown ``table``, also
    ``NAME.txt``, printing the table."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{name}.json"
    tmp = out.with_name(f"{out.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    os.replace(tmp, out)
    if table is not None:
        (RESULTS / f"{name}.txt").write_text(table + "\n")
        print(table)
    return out
