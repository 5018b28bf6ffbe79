"""How long a new service or bot takes before it answers (issue 36): queries encoded by the model
(``NEARTEXT_QUERY_ENCODER=model``: torch and sentence-transformers load before the first answer,
as they did at every start before) against the ONNX export a search leaves beside the
collection, and against the model's ONNX twin in the user's cache for documents too (no torch
at all), in one run, alternating, medians of the rounds. (With the model, the service now
reports ready before loading it and loads it at the first search; before this change it loaded
it before the ready line, so then "ready" was "first search".)

On a copy of the demo collection (built here with the default model, then one CLI search so the
export exists and the model's description is recorded):
  - ``neartext serve``: seconds from launch to the ready line, to the first search answered, and
    to the first document added (the model loads there when it was not loaded before);
  - the bot's backend (``neartext.bot.LocalBackend``): seconds to ready and one search answered;
  - the collection exported as an MLflow model (which carries the twin): seconds to
    ``mlflow.pyfunc.load_model`` and one ``predict`` (MLflow's import included); with queries
    by the model it loads the model (as every MLflow model of neartext did before it carried
    the twin), in the other two variants its queries go through the twin.

    python bench/bench_startup.py [--rounds 3]

Writes bench/results/startup.json and .txt. Nothing else should run meanwhile.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, compile_package, machine, machine_line, save  # noqa: E402

# (NEARTEXT_QUERY_ENCODER, NEARTEXT_DOCUMENT_ENCODER) of each variant
MODES = {"queries by the model": ("model", "model"),
         "queries by the ONNX export": ("auto", "model"),
         "texts by the model's twin": ("auto", "auto")}
BOT = ("import asyncio, sys, time\nt0 = time.perf_counter()\n"
       "from neartext.bot import LocalBackend\nb = LocalBackend(sys.argv[1])\n"
       "asyncio.run(b.search('charged twice', 3))\nprint(time.perf_counter() - t0)\n")
MLFLOW = ("import sys, time\nt0 = time.perf_counter()\nimport mlflow.pyfunc\n"
          "m = mlflow.pyfunc.load_model(sys.argv[1])\n"
          "m.predict(['charged twice'], params={'top_k': 3})\nprint(time.perf_counter() - t0)\n")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def post(url: str, body: dict) -> dict:
    req = urllib.request.Request(url, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=300) as r:
        return dict(json.loads(r.read()))


def serve_once(col: Path, env: dict[str, str], n: int) -> dict[str, float]:
    port = free_port()
    base = f"http://127.0.0.1:{port}/collections/c"
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "neartext", "serve", f"c={col}", "--port",
                             str(port)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, env=env)
    try:
        assert proc.stdout is not None and "serving" in proc.stdout.readline()
        ready = time.perf_counter() - t0
        post(base + "/search", {"query": "charged twice", "k": 3})
        search = time.perf_counter() - t0
        post(base + "/documents", {"documents": [{"id": f"bench-{n}",
                                                  "text": f"A new note, number {n}."}]})
        write = time.perf_counter() - t0
    finally:
        proc.terminate()
        proc.wait(60)
    return {"ready": ready, "first search": search, "first document": write}


def script_once(script: str, target: Path, env: dict[str, str]) -> float:
    """Seconds a fresh process running ``script`` on ``target`` reports."""
    done = subprocess.run([sys.executable, "-c", script, str(target)], capture_output=True,
                          text=True, env=env, timeout=300, check=True)
    return float(done.stdout.split()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    compile_package()
    from neartext import Collection

    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        env = {**os.environ, "NEARTEXT_CACHE_DIR": str(cache)}
        built = Path(tmp) / "demo"
        Collection.from_file(built, ROOT / "demo" / "feedback.csv", ["text"], "id")[0].close()
        subprocess.run([sys.executable, "-m", "neartext", "search", str(built), "refund", "-q"],
                       env={**env, "NEARTEXT_QUERY_ENCODER": "auto"}, check=True,
                       capture_output=True)  # leaves the export, records the model
        subprocess.run([sys.executable, "-m", "neartext", "search", str(built), "refund", "-q"],
                       env={**env, "NEARTEXT_QUERY_ENCODER": "model"}, check=True,
                       capture_output=True)  # the model loaded again: its twin is made
        assert (cache / "onnx").is_dir(), "no twin was made"
        model = Path(tmp) / "mlflow-model"  # carries the twin (the export adds it)
        subprocess.run([sys.executable, "-m", "neartext", "export", "mlflow", str(built), "-o",
                        str(model), "-q"], env=env, check=True, capture_output=True)
        times: dict[str, dict[str, list[float]]] = {m: {} for m in MODES}
        n = 0
        for r in range(args.rounds):
            order = list(MODES) if r % 2 == 0 else list(MODES)[::-1]
            for label in order:
                n += 1
                col = Path(tmp) / f"c{n}"
                shutil.copytree(built, col)
                run_env = {**env, "NEARTEXT_QUERY_ENCODER": MODES[label][0],
                           "NEARTEXT_DOCUMENT_ENCODER": MODES[label][1]}
                for k, v in serve_once(col, run_env, n).items():
                    times[label].setdefault(f"serve: {k}", []).append(v)
                times[label].setdefault("bot: ready and one search", []).append(
                    script_once(BOT, col, run_env))
                times[label].setdefault("MLflow model: loaded and one search", []).append(
                    script_once(MLFLOW, model, run_env))
    medians = {m: {k: round(float(np.median(v)), 2) for k, v in t.items()}
               for m, t in times.items()}
    base, export, twin = list(MODES)
    m = machine()
    lines = [f"A new service or bot, seconds from launch, median of {args.rounds} alternating "
             f"rounds, neartext compiled to bytecode first ({machine_line(m)})", "",
             f"| step | {base} | {export} | × baseline | {twin} | × baseline |",
             "|---|---|---|---|---|---|"]
    for step in medians[base]:
        b, a, t = medians[base][step], medians[export][step], medians[twin][step]
        lines.append(f"| {step} | {b:.2f} | {a:.2f} | {a / b:.2f} | {t:.2f} | {t / b:.2f} |")
    save("startup", {"machine": m, "rounds": args.rounds, "medians": medians,
                     "times": times}, "\n".join(lines))


if __name__ == "__main__":
    main()
