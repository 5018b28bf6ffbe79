"""``neartext bench-encoders``: torch, ONNX and static backends side by side (neartext[onnx,static])."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from neartext.cli.common import at_least_one
from neartext.data.evaldata import load_pairs, load_retrieval_pairs
from neartext.errors import InputError
from neartext.export.backends import compare_backends


def run(args: argparse.Namespace) -> dict[str, Any]:
    if (args.sts is None) == (args.pairs is None):
        raise InputError("give --sts FILE or --pairs FILE (one of them)")
    at_least_one(("--rounds", args.rounds))
    sts = load_pairs(args.sts) if args.sts else None
    retrieval = load_retrieval_pairs(args.pairs) if args.pairs else None
    with tempfile.TemporaryDirectory(prefix="neartext-backends-") as tmp:
        work = Path(args.keep) if args.keep else Path(tmp)
        res = compare_backends(args.model, work=work, sts=sts, retrieval=retrieval,
                               tolerance=args.tolerance, rounds=args.rounds)
    if not args.json:
        print(f"{res['model']}: {res['metric']} and speed on {res['texts']} texts")
        print(f"{'backend':<10} {'quality':>8} {'lost':>6} {'texts/s':>10} {'speed':>7}")
        for name, r in res["results"].items():
            print(f"{name:<10} {r['quality']:>8.2f} {r['lost_points']:>6.2f} {r['texts_per_s']:>10.0f} "
                  f"{r['speed_vs_torch']:>6.2f}x")
        best = res["recommended"]
        where = f" ({res['paths'][best]})" if args.keep and best != "torch" else ""
        print(f"recommended: {best}{where} — the fastest within {args.tolerance:g} "
              "points of torch")
    return res
