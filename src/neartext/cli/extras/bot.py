"""``neartext bot`` (neartext[bot]: aiogram)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import Any

from neartext.bot import BotSettings, LocalBackend, ServiceBackend, run_polling, run_webhook
from neartext.cli.common import resolve_api_key
from neartext.errors import InputError


def run(args: argparse.Namespace) -> dict[str, Any]:
    token = os.environ.get("TELEGRAM_BOT_TOKEN", "").strip()
    if not token:
        raise InputError("set TELEGRAM_BOT_TOKEN to the token @BotFather gave you")
    if (args.collection is None) == (args.url is None):
        raise InputError("give a collection directory or --url of a running service (one of them)")
    texts = {}
    for name in ("start", "help", "nothing"):
        value = getattr(args, f"{name}_text")
        if value and value.startswith("@"):
            path = Path(value[1:])
            if not path.is_file():
                raise InputError(f"{path}: no such file (--{name}-text)")
            value = path.read_text(encoding="utf-8").strip()
        if value:
            texts[f"{name}_text"] = value
    show = [f.strip() for f in args.show.split(",") if f.strip()]
    settings = BotSettings(k=args.k, show=show, threshold=args.threshold,
                           photo_column=args.photo_column, per_minute=args.per_minute,
                           max_chars=args.max_chars, **texts)  # checked before loading a model
    backend: Any
    if args.url:
        backend = ServiceBackend(args.url, resolve_api_key(args.api_key, None)
                                 or os.environ.get("NEARTEXT_API_KEY"))
    else:
        backend = LocalBackend(args.collection)
        backend.check_fields([*show, *([args.photo_column] if args.photo_column else [])])
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    how = f"webhook {args.webhook}" if args.webhook else "long polling"
    print(f"neartext bot answering from {backend.name} ({how}); Ctrl-C stops", file=sys.stderr,
          flush=True)
    try:
        if args.webhook:
            run_webhook(backend, settings, token, args.webhook, host=args.host, port=args.port,
                        secret=args.secret, api_server=args.api_server)
        else:
            asyncio.run(run_polling(backend, settings, token, args.api_server))
    finally:
        backend.close()
    return {}
