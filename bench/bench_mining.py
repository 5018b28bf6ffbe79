"""Paraphrase-mining benchmark (issue: mining), against sentence-transformers in the same run.

Baseline: ``sentence_transformers.util.paraphrase_mining_embeddings`` (top_k=100, its default
max_pairs=500,000) on the same embeddings; pairs scoring >= 0.75 are compared. Each method runs in
its own process, so its peak memory (max RSS, vectors included) is its own.

Corpora (English, embedded once with all-MiniLM-L6-v2 and cached in bench/.cache):
  50k  real texts: every Quora question (../shared/datasets/quora_duplicates), STS-B and MSRP
       sentences, Cranfield abstract sentences;
  200k all ~100k real texts above, plus texts made by joining two random real sentences;
  1M   (vectors given) the 200k vectors plus 800k noisy copies (Gaussian noise, renormalized).

Usage: python bench/bench_mining.py [--skip-1m]
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import re
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, SHARED, machine, machine_line, need, run_worker, save  # noqa: E402

CACHE = ROOT / "bench" / ".cache"
THRESHOLD, TOP_K = 0.75, 100


def real_texts() -> tuple[list[str], list[tuple[str, str]]]:
    """Unique real English texts (Quora first) and the Quora gold duplicate pairs."""
    seen: dict[str, None] = {}
    gold = []
    for r in csv.DictReader(need(SHARED / "quora_duplicates" / "eval.csv").open(encoding="utf-8")):
        a, b = r["question1"].strip(), r["question2"].strip()
        if a and b and a != b:
            gold.append((a, b))
        seen.setdefault(a)
        seen.setdefault(b)
    others: list[str] = []
    for name in ("sts-train.csv", "sts-dev.csv", "sts-test.csv"):
        for line in (SHARED / "stsbenchmark" / name).read_text(encoding="utf-8").splitlines():
            f = line.split("\t")
            if len(f) >= 7:
                others += [f[5], f[6]]
    for name in ("msr_paraphrase_train.txt", "msr_paraphrase_test.txt"):
        lines = (SHARED / "msrp" / name).read_text(encoding="utf-8-sig").splitlines()[1:]
        for line in lines:
            f = line.split("\t")
            if len(f) == 5:
                others += [f[3], f[4]]
    for line in (SHARED / "cranfield" / "corpus.jsonl").read_text(encoding="utf-8").splitlines():
        doc = json.loads(line)
        others += [s.strip() for s in re.split(r"(?<=[.?!])\s+", doc.get("text", "")) if
                   len(s.split()) >= 4]
    random.Random(0).shuffle(others)
    for t in others:
        t = " ".join(t.split())
        if t:
            seen.setdefault(t)
    return [t for t in seen if t], gold


def corpus(n: int, texts: list[str]) -> list[str]:
    if n <= len(texts):
        return texts[:n]
    rng = random.Random(1)
    extra, have = [], set(texts)
    while len(texts) + len(extra) < n:
        t = f"{rng.choice(texts)} {rng.choice(texts)}"
        if t not in have:
            have.add(t)
            extra.append(t)
    return texts + extra


def vectors(n: int) -> Path:
    path = CACHE / f"vectors_{n}.npy"
    if path.exists():
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    if n > 200_000:
        base = np.load(vectors(200_000))
        rng = np.random.default_rng(2)
        parts = [base]
        while sum(len(p) for p in parts) < n:
            noisy = base + rng.normal(0, 0.02, base.shape).astype(np.float32)
            parts.append(noisy / np.linalg.norm(noisy, axis=1, keepdims=True))
        np.save(path, np.concatenate(parts)[:n])
        return path
    from neartext import load_encoder

    texts, _ = real_texts()
    docs = corpus(n, texts)
    enc = load_encoder("default")
    t = time.perf_counter()
    v = enc.encode(docs, show_progress=sys.stderr.isatty())
    print(f"embedded {n} texts in {time.perf_counter() - t:.0f}s", file=sys.stderr)
    np.save(path, v)
    (CACHE / f"texts_{n}.json").write_text(json.dumps(docs))
    return path


def worker(method: str, n: int) -> None:
    """Run one method on the cached vectors; print seconds, peak RSS and pair count."""
    v = np.load(vectors(n))
    t = time.perf_counter()
    if method == "st":
        import torch
        from sentence_transformers import util

        res = util.paraphrase_mining_embeddings(torch.from_numpy(v), top_k=TOP_K)
        secs = time.perf_counter() - t
        kept = [(i, j) for s, i, j in res if s >= THRESHOLD]
        i = np.array([p[0] for p in kept], dtype=np.int64)
        j = np.array([p[1] for p in kept], dtype=np.int64)
        extra = {"returned_pairs": len(res)}
    else:
        from neartext.algo.mining import mine_pairs, sample_recall

        p = mine_pairs(v, THRESHOLD, TOP_K, method=method)
        secs = time.perf_counter() - t
        i, j = p.i, p.j
        extra = dict(p.details)
        if n > 200_000:
            extra["sampled_recall"] = sample_recall(v, p, THRESHOLD, TOP_K, sample=2000)
    np.save(CACHE / f"pairs_{method}_{n}.npy", np.stack([i, j]).astype(np.int64))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"method": method, "n": n, "seconds": secs, "peak_rss_mb": peak,
                      "pairs": int(len(i)), **extra}))


def run(method: str, n: int) -> dict:
    return run_worker(__file__, method, "--n", str(n))


def pair_set(method: str, n: int) -> set[tuple[int, int]]:
    a = np.load(CACHE / f"pairs_{method}_{n}.npy")
    return set(zip(np.minimum(a[0], a[1]).tolist(), np.maximum(a[0], a[1]).tolist()))


def quora_quality(n: int) -> dict:
    """Share of Quora gold pairs that ``mine`` recovers at several thresholds (50k corpus)."""
    from neartext.algo.mining import mine_pairs

    texts = json.loads((CACHE / f"texts_{n}.json").read_text())
    pos = {t: k for k, t in enumerate(texts)}
    _, gold = real_texts()
    gold_idx = {(min(pos[a], pos[b]), max(pos[a], pos[b])) for a, b in gold if a in pos and b in pos}
    v = np.load(vectors(n))
    p = mine_pairs(v, 0.7, TOP_K, method="exact")
    out = {"gold_pairs": len(gold_idx)}
    for t in (0.7, 0.8, 0.9):
        keep = p.score >= t
        found = set(zip(p.i[keep].tolist(), p.j[keep].tolist()))
        out[f"recovered_at_{t}"] = len(found & gold_idx) / len(gold_idx)
        out[f"pairs_at_{t}"] = int(keep.sum())
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker")
    ap.add_argument("--n", type=int)
    ap.add_argument("--skip-1m", action="store_true")
    args = ap.parse_args()
    if args.worker:
        worker(args.worker, args.n)
        return
    result: dict = {"machine": machine(), "threshold": THRESHOLD, "top_k": TOP_K, "tiers": {}}
    for n in (50_000, 200_000):
        vectors(n)
        tier = {m: run(m, n) for m in ("st", "exact", "approx")}
        st, ex, ap_ = pair_set("st", n), pair_set("exact", n), pair_set("approx", n)
        tier["exact_vs_st"] = {"same_pairs": len(st & ex), "only_st": len(st - ex),
                               "only_exact": len(ex - st)}
        tier["approx_recall_vs_exact"] = len(ap_ & ex) / max(1, len(ex))
        tier["speedup_exact"] = tier["st"]["seconds"] / tier["exact"]["seconds"]
        tier["speedup_approx"] = tier["st"]["seconds"] / tier["approx"]["seconds"]
        result["tiers"][str(n)] = tier
        print(n, {k: tier[k] for k in ("exact_vs_st", "approx_recall_vs_exact", "speedup_exact",
                                       "speedup_approx")}, flush=True)
    result["quora_quality_50k"] = quora_quality(50_000)
    print(result["quora_quality_50k"], flush=True)
    if not args.skip_1m:
        vectors(1_000_000)
        result["one_million"] = run("approx", 1_000_000)
    save("mining", result)
    print(table(result))


def table(r: dict) -> str:
    rows = ["| corpus | sentence-transformers | neartext exact | neartext approx | approx recall "
            "| peak memory ST / exact / approx |", "|---|---|---|---|---|---|"]
    for n, t in r["tiers"].items():
        st, ex, ap = t["st"], t["exact"], t["approx"]
        rows.append(
            f"| {int(n) // 1000}k texts, pairs >= {r['threshold']} | {st['seconds']:.1f} s "
            f"({st['pairs']} pairs) | {ex['seconds']:.1f} s ({t['speedup_exact']:.1f}x; "
            f"{t['exact_vs_st']['only_st'] + t['exact_vs_st']['only_exact']} pairs differ) | "
            f"{ap['seconds']:.1f} s ({t['speedup_approx']:.1f}x) | "
            f"{t['approx_recall_vs_exact']:.4f} | {st['peak_rss_mb']:.0f} / {ex['peak_rss_mb']:.0f}"
            f" / {ap['peak_rss_mb']:.0f} MB |")
    if "one_million" in r:
        m = r["one_million"]
        rows.append(f"| 1M vectors (approx only) | | | {m['seconds']:.0f} s ({m['pairs']} pairs) | "
                    f"{m['sampled_recall']['recall']:.4f} (2,000-text sample) | "
                    f"{m['peak_rss_mb']:.0f} MB |")
    q = r["quora_quality_50k"]
    rows.append("")
    rows.append(f"Quora gold duplicate pairs recovered by `mine` in the 50k corpus "
                f"({q['gold_pairs']} pairs): "
                + ", ".join(f"{100 * q[f'recovered_at_{t}']:.1f}% at {t}" for t in (0.7, 0.8, 0.9)))
    m = r["machine"]
    rows.append("\n" + machine_line(m))
    return "\n".join(rows)


if __name__ == "__main__":
    main()
