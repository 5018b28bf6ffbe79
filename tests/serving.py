"""A real neartext HTTP server on a free loopback port, in a thread of the test process."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from typing import Any

import uvicorn

from neartext.serve import ServeSettings, create_app
from neartext.serve.http import server_config


def post(base: str, path: str, body: dict) -> Any:
    """POST ``body`` as JSON to a server in another process; its JSON answer."""
    req = urllib.request.Request(base + path, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.loads(r.read())


def torch_mapped(pid: int) -> bool:
    """Whether the process ``pid`` has loaded torch's library."""
    with open(f"/proc/{pid}/maps") as f:
        return "libtorch" in f.read()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running(settings: ServeSettings):
    """Yield a :class:`Client` for a server started with ``settings``; stopped on exit."""
    port = free_port()
    app = create_app(settings)
    server = uvicorn.Server(server_config(app, "127.0.0.1", port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the server did not start")
        time.sleep(0.05)
    try:
        yield Client(f"http://127.0.0.1:{port}", app)
    finally:
        server.should_exit = True
        thread.join(30)


@contextmanager
def serve_process(*args: str, timeout: float = 180):
    """``neartext serve ARGS --port P`` in a process of its own; yields (base URL, process),
    the process stopped on exit."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "neartext", "serve", *args, "--port",
                             str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + timeout
        while True:
            try:
                with urllib.request.urlopen(base + "/health", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"the server did not start: {proc.stderr.read().decode()}")
            time.sleep(0.2)
        yield base, proc
    finally:
        proc.terminate()
        proc.wait(60)


class Client:
    def __init__(self, base: str, app: Any) -> None:
        self.base = base
        self.app = app
        self.key: str | None = None

    def call(self, method: str, path: str, body: Any = None, *, raw: bytes | None = None,
             headers: dict[str, str] | None = None, timeout: float = 60) -> tuple[int, Any]:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        h = {"Content-Type": "application/json", **(headers or {})}
        if self.key:
            h.setdefault("Authorization", f"Bearer {self.key}")
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=h)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                status, payload = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, payload = e.code, e.read()
        ctype = "json"
        try:
            return status, json.loads(payload)
        except ValueError:
            ctype = "text"
        return status, payload.decode("utf-8", "replace") if ctype == "text" else payload
