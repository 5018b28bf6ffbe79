"""Connections to Milvus: a client per address (a Milvus Lite file's embedded server started,
shared and released under one lock), gRPC settings every server accepts, and the one retry
policy for calls (transient errors only)."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from neartext.data.address import Address
from neartext.errors import InputError, StorageError, StoreUnavailable
from neartext.util.optional import optional
from neartext.util.retry import call as retry_call

RETRIES = 5


#: gRPC channel settings of every Milvus client. Keep-alive pings no more often than gRPC
#: servers accept by default (5 minutes; Milvus Lite's server keeps gRPC's defaults, Milvus'
#: own accepts pings every 5 s) and none without a call under way: pymilvus pings every 10 s,
#: and on a loaded machine Milvus Lite's server answered GOAWAY "too_many_pings".
GRPC_OPTIONS: dict[str, Any] = {"grpc.keepalive_time_ms": 300_000,
                                "grpc.keepalive_timeout_ms": 20_000,
                                "grpc.keepalive_permit_without_calls": False}

T = TypeVar("T")


def load_pymilvus() -> Any:
    # gRPC's C core logs to stderr on its own (a GOAWAY, a reconnect); neartext reports a
    # failed call in one line itself. Read when gRPC starts (unless the user set it).
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    pymilvus = optional("pymilvus", "milvus")
    # neartext turns failed calls into one clear error; both would also log each of them
    # (grpc._server: Milvus Lite's in-process server logs calls it does not implement)
    for name in ("pymilvus", "milvus_lite", "grpc._server"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    return pymilvus


# Milvus Lite runs in this process, one embedded server per file, holding the file's lock
# until released: count the clients of each file and release it when the last one closes, so
# that another process (a service, a second command) can open it.
LITE_CLIENTS: dict[str, int] = {}


LITE_LOCK = threading.RLock()


def disconnect(address: Address, client: Any) -> None:
    """Close a client from :func:`connect` (and free a Milvus Lite file it was the last on)."""
    with contextlib.suppress(Exception):
        client.close()
    if address.kind != "milvus-lite":
        return
    key = str(address.uri)
    with LITE_LOCK:
        LITE_CLIENTS[key] = LITE_CLIENTS.get(key, 1) - 1
        if LITE_CLIENTS[key] > 0:
            return
        del LITE_CLIENTS[key]
        optional("milvus_lite.server_manager", "milvus").server_manager_instance.release_server(key)


def connect(address: Address, timeout: float = 10.0) -> Any:
    """A ``MilvusClient`` for ``address``; :class:`StoreUnavailable` naming it when unreachable."""
    pm = load_pymilvus()
    kw: dict[str, Any] = {"timeout": timeout, "grpc_options": dict(GRPC_OPTIONS)}
    if address.kind == "milvus-lite":
        assert address.path is not None
        if not address.path.parent.is_dir():
            raise InputError(f"{address}: the folder {address.path.parent} does not exist")
        optional("milvus_lite", "milvus", "milvus-lite")
    else:
        token = os.environ.get("NEARTEXT_MILVUS_TOKEN")
        if token:
            kw["token"] = token
        if address.db_name:
            kw["db_name"] = address.db_name
    if address.kind != "milvus-lite":
        return client_for(pm, address, kw)
    # one thread at a time starts (or joins) a file's embedded server, and none releases it
    # meanwhile: two threads starting it at once fail ("Open local milvus failed")
    with LITE_LOCK:
        LITE_CLIENTS[str(address.uri)] = LITE_CLIENTS.get(str(address.uri), 0) + 1
        try:
            return client_for(pm, address, kw)
        except StoreUnavailable:
            LITE_CLIENTS[str(address.uri)] -= 1
            raise


def client_for(pm: Any, address: Address, kw: dict[str, Any]) -> Any:
    try:
        client = pm.MilvusClient(uri=address.uri, **kw)
        client.list_collections()
    except Exception as e:  # pymilvus raises MilvusException, grpc errors, OSError, ...
        raise StoreUnavailable(unreachable(address, e)) from None
    return client


@contextlib.contextmanager
def held(address: Address) -> Iterator[None]:
    """Keep a client connected for the block, so that the short-lived connections inside it
    share Milvus Lite's embedded server instead of starting it (and loading the file) again
    each time; on a server this costs one idle connection."""
    client = connect(address)
    try:
        yield
    finally:
        disconnect(address, client)


def unreachable(address: Address, e: Exception) -> str:
    msg = (getattr(e, "message", "") or str(e) or type(e).__name__).strip().splitlines()[0]
    if address.kind == "milvus-lite":
        return (f"cannot open Milvus Lite file {address.path} ({msg}); Milvus Lite allows one "
                "process per file: stop the other one, or run a Milvus server")
    return (f"cannot reach Milvus at {address.uri} (from {address}): {msg}; check the host and "
            "port (Milvus' gRPC port, 19530 by default) and NEARTEXT_MILVUS_TOKEN")


def disk_full(address: Address, e: BaseException, what: str) -> StorageError | None:
    """Milvus' error for a full disk (Milvus Lite's file, or a server's) as one line saying
    ``what`` did not complete; None for any other error.

    >>> from neartext.data.address import parse_address
    >>> a = parse_address("milvus-lite:/tmp/x.db#c")
    >>> full = disk_full(a, OSError(28, "No space left on device"), "this write")
    >>> full.kind, str(full).split("; ")[1]
    ('full', 'this write did not complete: free space and repeat the command')
    >>> disk_full(a, ValueError("bad"), "this write") is None
    True
    """
    if "no space left" not in str(e).lower():
        return None
    return StorageError(f"{address}: no space left on the device Milvus writes to; {what} did "
                        "not complete: free space and repeat the command", "full")


def transient(e: BaseException) -> bool:
    """Errors worth retrying: the server is unavailable, busy or rate-limiting."""
    pm = load_pymilvus()
    if isinstance(e, (pm.exceptions.MilvusUnavailableException, ConnectionError, TimeoutError)):
        return True
    text = str(e).lower()
    return any(w in text for w in ("unavailable", "deadline exceeded", "rate limit",
                                   "too many requests", "connection reset", "not ready"))


def retry(call: Callable[[], T], what: str, *, attempts: int = RETRIES, base: float = 0.5) -> T:
    """Run ``call`` with neartext's retry policy (:mod:`neartext.util.retry`) for transient Milvus
    errors; after the last attempt, :class:`StoreUnavailable` naming the call."""
    try:
        return retry_call(call, transient=transient, what=what, attempts=attempts, base=base)
    except Exception as e:
        if not transient(e):
            raise
        raise StoreUnavailable(f"{what}: still failing after {attempts} attempts: "
                               f"{str(e).strip().splitlines()[0]}") from None
