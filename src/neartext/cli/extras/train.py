"""``neartext train`` (neartext[train]: sentence-transformers' trainer)."""

from __future__ import annotations

import argparse
from typing import Any

from neartext.cli.common import show_progress
from neartext.training.trainer import TrainConfig, train


def run(args: argparse.Namespace) -> dict[str, Any]:
    config = TrainConfig(
        output=args.output, base=args.base, loss=args.loss, epochs=args.epochs,
        learning_rate=args.learning_rate, warmup_ratio=args.warmup, batch_size=args.batch_size,
        mini_batch_size=args.mini_batch_size, max_seq_length=args.max_seq_length, seed=args.seed,
        eval_file=args.eval_file, eval_split=args.eval_split, balance=args.balance,
        mine_hard_negatives=args.mine_hard_negatives, save_steps=args.save_steps,
        memory_budget_gb=args.memory_budget, anchor=args.anchor, positive=args.positive,
        negative=args.negative, score=args.score, encoding=args.encoding)
    result = train(args.file, config, progress=show_progress(args), resume=args.resume,
                   overwrite=args.overwrite)
    if not args.json:
        print(result.summary())
        for note in result.notes:
            print(f"  note: {note}")
    return {"output": str(result.output), **result.metrics}
