"""Holding a Milvus collection's writes (Milvus has no locks): each holder writes a lease row
(``hold:<token>``, renewed while it holds, dead when not renewed for :data:`LEASE_S`) and then
reads the others', withdrawing if it sees one; every write checks for holds and for a swap
before and after it writes.

Part of :class:`neartext.store.milvus.MilvusStore` (a mixin)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

from neartext.data.address import Address
from neartext.errors import CollectionBusy, CollectionReplaced
from neartext.store.milvus.expressions import literal

HOLD_PREFIX = "hold:"  # a meta row per process holding the collection's writes (a lease)
LEASE_S = 60.0  # a hold not renewed for this long is dead (its holder was killed)
HOLD_CHECK_S = 0.1  # how often a waiting writer looks again
log = logging.getLogger("neartext.store.milvus")


class Leases:
    """Holding the writes (see the module docs); what it needs of the store is declared here
    and provided by :class:`MilvusStore`."""

    address: Address
    name: str  # the passages collection this store reads and writes
    meta_name: str
    meta_dim: int
    _stamp: tuple[float, str | None] | None  # the manifest row as last read, and when
    _holding: dict[str, Any]  # this store's hold on writes, while held

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    def _query(self, collection: str, expr: str, fields: list[str]) -> list[dict[str, Any]]:
        raise NotImplementedError

    def _passages_in(self, raw: str) -> str:
        raise NotImplementedError

    @contextlib.contextmanager
    def hold_writes(self) -> Iterator[None]:
        """Hold every process's writes to the collection for the block (what a swap takes for
        its last catch-up and the switch, and a manifest change): writers wait, readers go on.

        Milvus has neither locks nor compare-and-set: each holder writes its own row
        (``hold:<token>`` with an expiry) and then reads the others'; seeing another live one
        it withdraws and tries again, so two never both hold (each read follows its own write).
        The row is renewed while held; one whose holder was killed expires after
        :data:`LEASE_S`. A write in :meth:`write` checks for holds before and after it writes
        (see there)."""
        if self._holding.get("thread") == threading.get_ident():
            yield  # held already by this thread (a swap changes the manifest)
            return
        token = HOLD_PREFIX + uuid.uuid4().hex
        told = False
        while True:
            self._put_hold(token)
            others = self._live_holds(exclude=token)
            if not others:
                break
            self._call("delete", self.meta_name, filter=f"key == {literal(token)}")
            if not told:
                log.info("%s: waiting for %s, which holds the collection's writes",
                         self.address, ", ".join(str(o.get("by")) for o in others.values()))
                told = True
            time.sleep(random.uniform(HOLD_CHECK_S / 2, HOLD_CHECK_S * 3))
        stop = threading.Event()
        self._holding = {"token": token, "lost": False, "thread": threading.get_ident()}

        def renew() -> None:
            while not stop.wait(LEASE_S / 4):
                try:
                    self._put_hold(token)
                except Exception:
                    self._holding["lost"] = True
                    return

        renewer = threading.Thread(target=renew, daemon=True, name="neartext-hold")
        renewer.start()
        try:
            yield
        finally:
            stop.set()
            renewer.join()
            self._holding = {}
            with contextlib.suppress(Exception):
                self._call("delete", self.meta_name, filter=f"key == {literal(token)}")

    def check_hold(self) -> None:
        """:class:`CollectionBusy` unless this store still holds the writes (what a swap checks
        just before it switches: a lease not renewed in time may have let writers in)."""
        token = self._holding.get("token")
        if token is None or self._holding.get("lost") or \
                token not in self._live_holds(exclude=None, margin=LEASE_S / 2):
            raise CollectionBusy(f"{self.address}: the hold on the collection's writes lapsed "
                                 "(Milvus did not answer in time); nothing changed: run it again")

    def _put_hold(self, token: str) -> None:
        value = {"until": time.time() + LEASE_S, "by": f"{socket.gethostname()}:{os.getpid()}"}
        self._call("upsert", self.meta_name,
                   [{"key": token, "value": json.dumps(value), "vec": [0.0] * self.meta_dim}])

    def _live_holds(self, exclude: str | None, margin: float = 0.0,
                    rows: list[dict[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
        """The holds whose lease has not expired (``margin`` seconds before it would), by row
        key (from ``rows`` when the caller read them); expired ones are removed."""
        out: dict[str, dict[str, Any]] = {}
        dead = []
        if rows is None:
            rows = self._query(self.meta_name, f'key like "{HOLD_PREFIX}%"', ["key", "value"])
        for r in rows:
            if not r["key"].startswith(HOLD_PREFIX):
                continue
            try:
                value = json.loads(r["value"])
                until = float(value["until"])
            except (ValueError, KeyError, TypeError):
                dead.append(r["key"])
                continue
            if until - margin < time.time():
                if until < time.time():
                    dead.append(r["key"])
            elif r["key"] != exclude:
                out[r["key"]] = value
        if dead:
            with contextlib.suppress(Exception):
                self._call("delete", self.meta_name, filter=f"key in {literal(dead)}")
        return out

    def _await_current(self, written: bool) -> None:
        """Wait while another process holds the writes; then :class:`CollectionReplaced` if a
        new version was swapped in. Before a write: nothing was written. After it: the write
        landed on a version that a swap may have copied before it, so it is made again on the
        new one (writes are idempotent: upserts by id, deletes). One read of the meta
        collection when nothing holds the writes (the holds and the manifest together)."""
        while True:  # (a holder writes no documents itself)
            rows = self._query(self.meta_name, f'key == "manifest" or key like "{HOLD_PREFIX}%"',
                               ["key", "value"])
            if not self._live_holds(exclude=None, rows=rows):
                break
            time.sleep(HOLD_CHECK_S)
        raw = next((r["value"] for r in rows if r["key"] == "manifest"), None)
        if raw is not None and self._passages_in(raw) != self.name:
            self._stamp = None
            what = ("the write went to the old version; make it again on the new one" if written
                    else "nothing was written: repeat the change")
            raise CollectionReplaced(
                f"{self.address}: a new version of this collection was swapped in (reindex, "
                f"rollback, a both-side adapter) while this write had the old one open; {what} "
                "(a running service and the CLI do)")
