"""``neartext serve``: collections behind an HTTP API with a web UI (``pip install 'neartext[serve]'``).

Example::

    from neartext.serve import ServeSettings, run
    run(ServeSettings.from_args(["demo/feedback"]), port=8000)   # blocks; Ctrl-C stops it
"""

from __future__ import annotations

from typing import Any

from .settings import API_KEY_ENV, ServeSettings, check_name

__all__ = ["API_KEY_ENV", "ServeSettings", "check_name", "create_app", "run"]


def create_app(settings: ServeSettings) -> Any:
    """The FastAPI application (see :mod:`neartext.serve.app`)."""
    from .app import create_app as _create

    return _create(settings)


def run(settings: ServeSettings, host: str = "127.0.0.1", port: int = 8000,
        log_level: str = "warning", on_ready: Any = None) -> None:
    """Serve until interrupted. ``on_ready(url)`` is called once the socket accepts requests."""
    import uvicorn

    from .http import server_config

    app = create_app(settings)
    config = server_config(app, host, port, log_level=log_level, timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    if on_ready is not None:
        startup = server.startup

        async def announced(sockets: Any = None) -> None:
            await startup(sockets)
            if server.started:
                shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
                on_ready(f"http://{shown}:{port}")

        server.startup = announced  # type: ignore[method-assign]
    server.run()
