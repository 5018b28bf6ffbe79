"""The HTTP server around the app: uvicorn, configured once for ``neartext serve`` and the tests.

Requests the HTTP parser itself refuses (a ``Content-Length`` of ``-1``, a malformed request
line) never reach the app; uvicorn answers them 400 with a plain-text body. Here they are
answered like every other error of the API: JSON ``{"error", "detail"}``.

Example::

    server = uvicorn.Server(server_config(create_app(settings), "127.0.0.1", 8000))
"""

from __future__ import annotations

import errno
import json
import socket
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from neartext.errors import InputError
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


def bind(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` (not listening yet: connections are refused until the
    server starts); a busy port or an address this machine lacks is an :class:`InputError`.

    >>> bind("127.0.0.1", 0).getsockname()[0]
    '127.0.0.1'
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        why = ("another process is listening there; choose another --port"
               if e.errno == errno.EADDRINUSE else e.strerror or str(e))
        raise InputError(f"--host {host} --port {port}: cannot listen: {why}") from None
    sock.set_inheritable(True)
    return sock


def run(settings: ServeSettings, host: str = "127.0.0.1", port: int = 8000,
        log_level: str = "warning", on_ready: Any = None, sock: socket.socket | None = None
        ) -> None:
    """Serve until interrupted. ``on_ready(url)`` is called once the socket accepts requests.
    ``sock``: the address already taken (:func:`bind`), else taken here before the collections
    load, so a busy port fails at once."""
    sock = sock or bind(host, port)
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
    server.run(sockets=[sock])
