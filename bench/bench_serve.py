"""Service benchmark (issue 5): throughput and latency under concurrent load, side by side with
a baseline server that encodes each request on its own (no micro-batching).

Both servers are ``neartext serve`` on the same 100k-document collection (real texts and their
vectors, as in bench_core; queries are real Quora questions, encoded for real);
the baseline runs with ``--max-batch 1``. A load generator in a separate process keeps C
connections busy (keep-alive, one request in flight each) for a fixed time, bounded in requests
too, at C = 1, 8 and 32; the two servers are measured in alternating rounds.

Usage: python bench/bench_serve.py [--docs 100000] [--seconds 8] [--rounds 2]
Writes bench/results/serve.json and serve.txt. Nothing else should run meanwhile.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_core import build_large, quora_texts  # noqa: E402
from common import machine, machine_line, percentile, save  # noqa: E402

PATH = "/collections/bench/search"


# -- the load generator (runs in its own process) ------------------------------------------------

async def _client(port: int, bodies: list[bytes], stop_at: float, budget: list[int],
                  lat: list[float], errors: list[int], seed: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    i = random.Random(seed).randrange(len(bodies))
    try:
        while time.perf_counter() < stop_at and budget[0] > 0:
            budget[0] -= 1
            body = bodies[i % len(bodies)]
            i += 1
            head = (f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n").encode()
            t0 = time.perf_counter()
            writer.write(head + body)
            await writer.drain()
            status = (await reader.readline()).split(b" ")[1]
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            lat.append(time.perf_counter() - t0)
            if status != b"200":
                errors[0] += 1
    finally:
        writer.close()


async def _load(port: int, clients: int, seconds: float, max_requests: int, queries: list[str],
                k: int) -> dict:
    bodies = [json.dumps({"query": q, "k": k}).encode() for q in queries]
    lat: list[float] = []
    errors, budget = [0], [max_requests]
    # warm-up: one second of the same load, not counted
    warm_stop = time.perf_counter() + 1.0
    await asyncio.gather(*(_client(port, bodies, warm_stop, [10**9], [], [0], 1000 + c)
                           for c in range(clients)))
    t0 = time.perf_counter()
    await asyncio.gather(*(_client(port, bodies, t0 + seconds, budget, lat, errors, c)
                           for c in range(clients)))
    elapsed = time.perf_counter() - t0
    ms = [x * 1000 for x in lat]
    return {"clients": clients, "requests": len(lat), "errors": errors[0], "seconds": elapsed,
            "throughput": len(lat) / elapsed, "p50_ms": percentile(ms, 50),
            "p99_ms": percentile(ms, 99), "mean_ms": sum(ms) / len(ms)}


def loadgen_main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--clients", type=int, required=True)
    ap.add_argument("--seconds", type=float, default=8)
    ap.add_argument("--max-requests", type=int, default=20000)
    ap.add_argument("--queries", required=True)
    ap.add_argument("-k", type=int, default=10)
    a = ap.parse_args(argv)
    queries = json.loads(Path(a.queries).read_text())
    print(json.dumps(asyncio.run(_load(a.port, a.clients, a.seconds, a.max_requests, queries, a.k))))


# -- the driver -----------------------------------------------------------------------------------

def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(col: Path, max_batch: int) -> tuple[subprocess.Popen, int]:
    port = _free_port()
    exe = Path(sys.executable).with_name("neartext")
    proc = subprocess.Popen([str(exe), "serve", f"bench={col}", "--port", str(port),
                             "--max-batch", str(max_batch)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline() if proc.stdout else ""
    if "serving" not in line:
        proc.kill()
        sys.exit(f"server did not start: {line!r}")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=60):
        pass
    return proc, port


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "loadgen":
        loadgen_main(sys.argv[2:])
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=100_000)
    ap.add_argument("--seconds", type=float, default=8)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--clients", default="1,8,32")
    ap.add_argument("--max-batch", type=int, default=64, help="neartext serve --max-batch")
    args = ap.parse_args()
    from neartext import load_encoder

    _, queries = quora_texts(0, 2000)
    work = Path(tempfile.mkdtemp(prefix="nt-bench-serve-"))
    qfile = work / "queries.json"
    qfile.write_text(json.dumps(queries))
    print(f"building a {args.docs}-document collection ...", flush=True)
    col, _ = build_large(load_encoder("default"), args.docs, work)
    servers = {"neartext": _start(col, args.max_batch), "baseline_no_batching": _start(col, 1)}
    results: dict[str, list[dict]] = {name: [] for name in servers}
    try:
        for clients in [int(c) for c in args.clients.split(",")]:
            for r in range(args.rounds):
                order = list(servers) if r % 2 == 0 else list(reversed(servers))
                for name in order:
                    out = subprocess.run(
                        [sys.executable, __file__, "loadgen", "--port", str(servers[name][1]),
                         "--clients", str(clients), "--seconds", str(args.seconds),
                         "--queries", str(qfile)], capture_output=True, text=True, check=True)
                    res = json.loads(out.stdout)
                    res["round"] = r
                    results[name].append(res)
                    print(f"{name:>22} C={clients:<3} round {r}: {res['throughput']:7.1f} req/s, "
                          f"p50 {res['p50_ms']:6.1f} ms, p99 {res['p99_ms']:6.1f} ms, "
                          f"errors {res['errors']}", flush=True)
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(30)
    summary = {}
    for clients in [int(c) for c in args.clients.split(",")]:
        row = {}
        for name, runs in results.items():
            mine = [x for x in runs if x["clients"] == clients]
            n = sum(x["requests"] for x in mine)
            secs = sum(x["seconds"] for x in mine)
            row[name] = {"throughput": n / secs, "requests": n, "errors": sum(x["errors"] for x in mine),
                         "p50_ms": max(x["p50_ms"] for x in mine), "p99_ms": max(x["p99_ms"] for x in mine)}
        row["throughput_ratio"] = row["neartext"]["throughput"] / row["baseline_no_batching"]["throughput"]
        summary[str(clients)] = row
    result = {"machine": machine(), "documents": args.docs, "seconds_per_round": args.seconds,
              "rounds": args.rounds, "k": 10, "summary": summary, "runs": results}
    save("serve", result, table(result))


def table(r: dict) -> str:
    lines = ["| clients | neartext req/s | p50 / p99 ms | baseline (no micro-batching) req/s "
             "| p50 / p99 ms | ratio |", "|---|---|---|---|---|---|"]
    for c, row in r["summary"].items():
        a, b = row["neartext"], row["baseline_no_batching"]
        lines.append(f"| {c} | {a['throughput']:.0f} | {a['p50_ms']:.1f} / {a['p99_ms']:.1f} | "
                     f"{b['throughput']:.0f} | {b['p50_ms']:.1f} / {b['p99_ms']:.1f} | "
                     f"{row['throughput_ratio']:.2f}x |")
    m = r["machine"]
    lines.append(f"\n{r['documents']} documents, k={r['k']}, {r['rounds']} alternating rounds of "
                 f"{r['seconds_per_round']:.0f} s per level; p50/p99 are the worse round's. "
                 + machine_line(m))
    return "\n".join(lines)


if __name__ == "__main__":
    main()
