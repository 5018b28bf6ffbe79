"""``neartext export onnx`` (neartext[onnx]: the export runs torch and onnx)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from neartext.export.onnx import export_onnx


def run(args: argparse.Namespace) -> dict[str, Any]:
    res = export_onnx(args.model, args.output, quantize=args.quantize, force=args.force)
    if not args.json:
        for kind, p in res.parity.items():
            print(f"{kind}: cosine with the torch model: min {p['min_cosine']:.5f}, mean "
                  f"{p['mean_cosine']:.5f}", file=sys.stderr)
        for w in res.warnings:
            print(f"warning: {w}", file=sys.stderr)
        print(f"exported {res.base} to {res.output}; use it with --model {res.output}")
    return res.to_dict()
