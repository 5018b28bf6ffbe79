"""Fine-tuning benchmark (issue: training), against the raw sentence-transformers trainer in one run.

1. STS-B: one epoch of CoSENT on ../shared/datasets/stsb_multi_mt/stsb-en-train.csv (5,749 pairs,
   batch 16, lr 2e-5, 10% warmup), once with ``neartext.training.trainer`` and once with a hand-written
   ``SentenceTransformerTrainer`` script with the same settings (the baseline). Both models are
   scored on ../shared/datasets/stsbenchmark/sts-test.csv (Spearman x100); pairs/s compared.
2. Quora: the 14,926 duplicate pairs of ../shared/datasets/quora_duplicates/eval.csv are split
   (grouped by question, seed 42) into 85% training pairs and 15% held-out queries; MNRL, one
   epoch, batch 32 and ``--batch-size auto``; MRR@10 of the held-out queries (their duplicates
   form the corpus) before and after, as neartext measures it in metrics.json.

Nothing else should run on the machine meanwhile: the pairs/s ratio compares two runs made one
after the other.

Usage: python bench/bench_training.py [--skip-baseline] [--only sts|quora]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, ROOT, SHARED, machine, need, save  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
WORK = ROOT / "bench" / ".cache" / "training"


def sts_test() -> object:
    from neartext.data.evaldata import load_pairs

    return load_pairs(need(SHARED / "stsbenchmark" / "sts-test.csv"))


def raw_st_cosent(train_file: Path, out: Path) -> dict:
    """The baseline: the sentence-transformers trainer driven by hand, same settings."""
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.sentence_transformer import losses

    from neartext.encoders import resolve_model_path

    rows = list(csv.reader(train_file.open(encoding="utf-8")))
    data = Dataset.from_dict({"sentence1": [r[0] for r in rows], "sentence2": [r[1] for r in rows],
                              "score": [float(r[2]) / 5 for r in rows]})
    model = SentenceTransformer(str(resolve_model_path("default")), device="cpu", local_files_only=True)
    steps = -(-len(rows) // 16)
    args = SentenceTransformerTrainingArguments(
        output_dir=str(out / "ckpt"), num_train_epochs=1, per_device_train_batch_size=16,
        learning_rate=2e-5, warmup_steps=round(0.1 * steps), seed=42, data_seed=42,
        save_strategy="no", report_to="none", disable_tqdm=True, use_cpu=True)
    t0 = time.perf_counter()
    SentenceTransformerTrainer(model=model, args=args, train_dataset=data,
                               loss=losses.CoSENTLoss(model)).train()
    seconds = time.perf_counter() - t0
    model.save(str(out / "model"))
    return {"seconds": round(seconds, 1), "pairs_per_second": round(len(rows) / seconds, 2),
            "model": str(out / "model")}


def neartext_train(file: Path, out: Path, **kw) -> dict:
    from neartext.training import TrainConfig, train

    t0 = time.perf_counter()
    res = train(file, TrainConfig(output=str(out), **kw), overwrite=True)
    wall = time.perf_counter() - t0
    m = res.metrics
    return {"wall_seconds": round(wall, 1), **m["train"], "eval": m.get("eval")}


def sts_part(skip_baseline: bool) -> dict:
    from neartext.engine.modeleval import evaluate_sts

    train_file = need(SHARED / "stsb_multi_mt" / "stsb-en-train.csv")
    test = sts_test()
    out: dict = {"train_file": str(train_file.relative_to(SHARED)), "base": evaluate_sts("default", test)}
    nt = neartext_train(train_file, WORK / "sts-neartext", eval_split=0, batch_size=16, epochs=1)
    out["neartext"] = {**nt, "test": evaluate_sts(str(WORK / "sts-neartext"), test)}
    if not skip_baseline:
        raw = raw_st_cosent(train_file, WORK / "sts-raw")
        out["raw_sentence_transformers"] = {**raw, "test": evaluate_sts(raw["model"], test)}
        out["throughput_ratio"] = round(nt["pairs_per_second"] / raw["pairs_per_second"], 3)
    return out


def quora_split() -> tuple[Path, Path]:
    from neartext.training import load_training_data

    data = load_training_data(need(SHARED / "quora_duplicates" / "eval.csv"))
    train_part, held = data.split(0.15, seed=42)
    WORK.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, part in (("quora-train.csv", train_part), ("quora-heldout.csv", held)):
        p = WORK / name
        with p.open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["anchor", "positive"])
            w.writerows(zip(part.texts["anchor"], part.texts["positive"]))
        paths.append(p)
    return paths[0], paths[1]


def quora_part() -> dict:
    train_file, held = quora_split()
    out: dict = {}
    for label, bs in (("batch_32", 32), ("batch_auto", "auto")):
        r = neartext_train(train_file, WORK / f"quora-{label}", eval_file=str(held), batch_size=bs)
        out[label] = r
    out["train_pairs"] = out["batch_32"]["rows"]
    return out


def table(r: dict) -> str:
    s = r["sts"]
    lines = ["STS-B test Spearman x100 after one epoch of CoSENT on STS-B train (batch 16):",
             f"  base model                  {s['base']['spearman']:.2f}",
             f"  neartext train              {s['neartext']['test']['spearman']:.2f}  "
             f"({s['neartext']['pairs_per_second']:.1f} pairs/s)"]
    if "raw_sentence_transformers" in s:
        raw = s["raw_sentence_transformers"]
        lines.append(f"  raw SentenceTransformerTrainer {raw['test']['spearman']:.2f}  "
                     f"({raw['pairs_per_second']:.1f} pairs/s; neartext/raw = {s['throughput_ratio']:.2f}x)")
    q = r["quora"]
    lines.append(f"Quora duplicates, MNRL one epoch on {q['train_pairs']} pairs, held-out MRR@10:")
    for label in ("batch_32", "batch_auto"):
        e = q[label]
        ev = e["eval"]
        probe = e.get("batch_probe") or {}
        why = f" ({probe.get('reason')})" if probe else ""
        lines.append(f"  batch {e['batch_size']:>4}{why}: {ev['before']['mrr@10']:.4f} -> "
                     f"{ev['after']['mrr@10']:.4f}; {e['pairs_per_second']:.1f} pairs/s, "
                     f"{e['seconds']:.0f} s")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--skip-baseline", action="store_true")
    ap.add_argument("--only", choices=["sts", "quora"],
                    help="rerun one part; the other is kept from bench/results/training.json")
    args = ap.parse_args()
    previous = RESULTS / "training.json"
    result = json.loads(previous.read_text()) if args.only and previous.exists() else {}
    result["machine"] = machine()
    if args.only != "quora":
        result["sts"] = {**sts_part(args.skip_baseline), "date": result["machine"]["date"]}
    if args.only != "sts":
        result["quora"] = {**quora_part(), "date": result["machine"]["date"]}
    save("training", result)
    text = table(result)
    (ROOT / "bench" / "results" / "training.txt").write_text(text + "\n")
    print(text)
    print(json.dumps(result["machine"]))
    shutil.rmtree(WORK / "sts-raw" / "ckpt", ignore_errors=True)


if __name__ == "__main__":
    main()
