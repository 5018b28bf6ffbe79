"""The HTTP server around the app: uvicorn, configured once for ``neartext serve`` and the tests.

Requests the HTTP parser itself refuses (a ``Content-Length`` of ``-1``, a malformed request
line) never reach the app; uvicorn answers them 400 with a plain-text body. Here they are
answered like every other error of the API: JSON ``{"error", "detail"}``.

Example::

    server = uvicorn.Server(server_config(create_app(settings), "127.0.0.1", 8000))
"""

from __future__ import annotations

import json
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from neartext.serve.app import create_app
from neartext.serve.settings import ServeSettings


class JsonErrorsH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, its 400 answer to an unparsable request as the API's JSON."""

    def send_400_response(self, msg: str) -> None:
        body = json.dumps({"error": "bad request",
                           "detail": f"the request is not valid HTTP ({msg.rstrip('.')})"}).encode()
        headers = [(b"content-type", b"application/json"),
                   (b"content-length", str(len(body)).encode()), (b"connection", b"close")]
        for event in (h11.Response(status_code=400, headers=headers, reason=b"Bad Request"),
                      h11.Data(data=body), h11.EndOfMessage()):
            self.transport.write(self.conn.send(event) or b"")
        self.transport.close()


def server_config(app: Any, host: str, port: int, **options: Any) -> uvicorn.Config:
    """The uvicorn configuration of the service (``options``: more of uvicorn's settings)."""
    return uvicorn.Config(app, host=host, port=port, http=JsonErrorsH11Protocol,
                          access_log=False, **options)


def run(settings: ServeSettings, host: str = "127.0.0.1", port: int = 8000,
        log_level: str = "warning", on_ready: Any = None) -> None:
    """Serve until interrupted. ``on_ready(url)`` is called once the socket accepts requests."""
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
