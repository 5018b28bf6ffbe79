"""``neartext distill`` (neartext[static]: model2vec)."""

from __future__ import annotations

import argparse
from typing import Any

from neartext.errors import InputError
from neartext.export.static import distill_model


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.pca_dims < 0:
        raise InputError("--pca-dims must be 0 (keep all) or more")
    res = distill_model(args.model, args.output, pca_dims=args.pca_dims or None, force=args.force)
    if not args.json:
        print(f"wrote a static model to {res.output}: {res.vocabulary} tokens x {res.dim} "
              f"dimensions, from {res.base}; use it with --model {res.output}")
    return res.to_dict()
