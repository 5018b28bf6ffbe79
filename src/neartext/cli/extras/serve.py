"""``neartext serve`` (neartext[serve]: FastAPI and uvicorn)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from neartext.cli.common import resolve_api_key
from neartext.serve.http import bind
from neartext.serve.http import run as serve
from neartext.serve.settings import ServeSettings, check_port


def run(args: argparse.Namespace) -> dict[str, Any]:
    sock = bind(args.host, check_port(args.port))  # a busy port fails before anything loads
    api_key = resolve_api_key(args.api_key, args.api_key_file)
    settings = ServeSettings.from_args(
        args.collections, api_key=api_key, model=args.model, max_results=args.max_results,
        max_body_bytes=args.max_body_bytes, max_texts=args.max_texts,
        max_text_chars=args.max_text_chars, max_k=args.max_k, max_batch=args.max_batch,
        max_batch_tokens=args.max_batch_tokens, max_wait_ms=args.max_wait_ms,
        forward_batch=args.forward_batch,
        improve_every=args.improve_every)
    names = ", ".join(settings.collections) or "no collections"
    auth = "API key required" if settings.api_key else "no API key"

    def ready(url: str) -> None:
        print(f"neartext serving {names} at {url}  (web UI: {url}/, API docs: {url}/docs; {auth}; "
              "Ctrl-C stops)", flush=True)
        if args.host not in ("127.0.0.1", "localhost", "::1") and not settings.api_key:
            print("warning: reachable from other machines without an API key "
                  "(set NEARTEXT_API_KEY)", file=sys.stderr, flush=True)

    print(f"loading {names} ...", file=sys.stderr, flush=True)
    serve(settings, host=args.host, port=args.port, on_ready=ready, sock=sock)
    return {}
