"""``neartext serve``: collections behind an HTTP API with a web UI (``pip install 'neartext[serve]'``).

Example::

    from neartext.serve import ServeSettings, run
    run(ServeSettings.from_args(["demo/feedback"]), port=8000)   # blocks; Ctrl-C stops it
"""

from __future__ import annotations

import importlib
from typing import Any

from neartext.serve.settings import API_KEY_ENV, ServeSettings, check_name

__all__ = ["API_KEY_ENV", "ServeSettings", "check_name", "create_app", "run"]


def __getattr__(name: str) -> Any:
    """``create_app`` and ``run`` on first use: this package is imported whenever its settings
    are (the CLI's options), and FastAPI with it would slow every command."""
    if name in ("create_app", "run"):
        return getattr(importlib.import_module("neartext.serve.http"), name)
    raise AttributeError(f"module 'neartext.serve' has no attribute {name!r}")
