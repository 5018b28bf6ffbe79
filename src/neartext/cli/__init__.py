"""The ``neartext`` command: a thin layer over the library, one module per command group.

Every command takes ``--json`` for machine-readable output. Errors print one line naming the
file, row or value at fault and exit with status 1 (2 for usage errors).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from .. import __version__
from ..errors import Interrupted, NeartextError
from . import analysis, collection, deploy, evaluation
from .common import log_warnings


def build_parser() -> argparse.ArgumentParser:
    """The whole command line: each command group registers its commands."""
    ap = argparse.ArgumentParser(prog="neartext", description="Semantic search over your own texts.")
    ap.add_argument("--version", action="version", version=f"neartext {__version__}")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    for group in (collection, analysis, evaluation, deploy):
        group.register(sub)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    args = build_parser().parse_args(argv)
    if args.command not in ("serve", "bot"):  # those configure logging for a long run
        log_warnings(args.command)
    try:
        result = args.handler(args)
        if args.json:
            json.dump(result, sys.stdout, ensure_ascii=False, indent=2)
            sys.stdout.write("\n")
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
    except NeartextError as e:
        if isinstance(e, Interrupted):
            print(f"neartext {args.command}: interrupted: {e}", file=sys.stderr)
            return 130
        print(f"neartext {args.command}: error: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # the reader went away (`neartext ... | head`): stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, as a shell reports it
    except KeyboardInterrupt:
        if args.command in ("serve", "bot"):  # Ctrl-C is how a service is stopped
            print(f"neartext {args.command}: stopped", file=sys.stderr)
            return 0
        what = ("no model was written; checkpoints saved so far are kept (--resume)"
                if args.command == "train" else
                "the collection is unchanged (vectors computed so far are kept for the next run)")
        print(f"neartext {args.command}: interrupted; {what}", file=sys.stderr)
        return 130
    return 0
