"""The ``neartext`` command: a thin layer over the library, one module per command group.

Every command takes ``--json`` for machine-readable output. Errors print one line naming the
file, row or value at fault and exit with status 1 (2 for usage errors).

A group module registers its commands' options and handlers. A handler that needs an optional
extra (the service, the bot, training, exports) is named as ``"module:function"`` with that
extra, and its module is imported only when the command runs (:func:`handler_of`, the one
place the CLI imports lazily): ``neartext search`` never loads FastAPI, aiogram or torch, and a
missing extra is one line naming its install command.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from neartext.cli import analysis, collection, deploy, quality
from neartext.cli.common import log_warnings
from neartext.encoders.registry import AGAIN
from neartext.errors import Interrupted, MissingExtra, NeartextError
from neartext.util.progress import SHOWN
from neartext.version import __version__


def build_parser() -> argparse.ArgumentParser:
    """The whole command line: each command group registers its commands."""
    ap = argparse.ArgumentParser(prog="neartext", description="Semantic search over your own texts.")
    ap.add_argument("--version", action="version", version=f"neartext {__version__}")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    for group in (collection, analysis, quality, deploy):
        group.register(sub)
    return ap


def handler_of(args: argparse.Namespace) -> Callable[[argparse.Namespace], Any]:
    """The command's handler: a function, or ``"module:function"`` imported now
    (:class:`MissingExtra` naming ``args.extra`` when the module needs a package that is not
    installed)."""
    handler = args.handler
    if callable(handler):
        return handler  # type: ignore[no-any-return]
    module, _, name = str(handler).partition(":")
    try:
        found: Callable[[argparse.Namespace], Any] = getattr(importlib.import_module(module), name)
    except ImportError as e:
        if e.name and e.name.startswith("neartext"):
            raise
        raise MissingExtra(e.name or module, getattr(args, "extra", "all")) from None
    return found


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    args = build_parser().parse_args(argv)
    if args.command not in ("serve", "bot"):  # those configure logging for a long run
        log_warnings(args.command)
    shown = SHOWN.set(not getattr(args, "quiet", False) and not getattr(args, "json", False))
    AGAIN.clear()  # the models this command loads (a twin made after it: cli.collection)
    try:
        return _run(args)
    finally:
        SHOWN.reset(shown)
        AGAIN.clear()  # models a failed command loaded: no twin for them from here


def _run(args: argparse.Namespace) -> int:
    """The command's handler run, its result printed, errors as one line and an exit status."""
    try:
        result = handler_of(args)(args)
        if args.json:
            json.dump(result, sys.stdout, ensure_ascii=False, indent=2)
            sys.stdout.write("\n")
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
        collection.make_twins(args)  # work for later runs, once the answer is out
        afterwards = getattr(args, "afterwards", None)
        if afterwards is not None:
            afterwards()
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
