"""``neartext export mlflow`` (neartext[mlflow])."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from neartext.export.mlflow_model import export_mlflow


def run(args: argparse.Namespace) -> dict[str, Any]:
    exported = export_mlflow(args.collection, args.output, log=args.log, force=args.force,
                             mode=args.mode)
    if not args.json:
        where = exported.model_uri or exported.output
        print(f"exported {args.collection} ({exported.documents} documents, {exported.model}, "
              f"default mode {exported.mode}) as an MLflow model: {where}")
        print(f"serve it: mlflow models serve -m {where} -p 5001  (--env-manager local where "
              "neartext is installed)", file=sys.stderr)
    return exported.to_dict()
