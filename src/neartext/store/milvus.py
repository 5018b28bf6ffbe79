"""The Milvus store: a collection on a Milvus server or cluster, or in a Milvus Lite file.

Everything lives in Milvus, so any machine that can reach the server can open the collection.
A neartext collection ``NAME`` is two Milvus collections:

``NAME``
    one row per passage: ``pk`` (``"seq|doc_id"``), ``doc_id``, ``seq``, ``start``, ``end``,
    ``hash`` (the passage's content hash, for embedding reuse), ``doc_hash``, ``text`` and
    ``folded`` (the whole text and its case-folded copy, on the first passage of a document),
    ``meta`` (the metadata as given, on the first passage), ``f_has``/``f_num``/``f_txt``/
    ``f_bool`` (typed copies of the metadata on every passage, so that filters are Milvus
    boolean expressions with the same meaning as on the local store), ``vec``.
``NAME__neartext``
    key/value rows: the manifest, a generation counter, metadata field counts, and vectors
    staged by an interrupted write (``staged:<hash>``).

Milvus has no multi-row transactions. A write upserts all of a document's new passages in one
request, then removes passages the new version no longer has and documents to delete, and bumps
the generation last. An interrupted write therefore leaves each document's text, metadata and
first passages either old or new, at worst with stale extra passages or not-yet-deleted
documents; running the same command again completes it (the vectors it computed are staged and
reused). Reads use strong consistency: a search sees every write that returned before it.

Example (Milvus Lite, embedded in a local file):
    >>> import numpy as np, tempfile, os
    >>> from neartext.address import parse_address
    >>> a = parse_address("milvus-lite:" + os.path.join(tempfile.mkdtemp(), "doc.db"))
    >>> s = MilvusStore.create(a, {"dim": 2, "index": "flat"})       # doctest: +SKIP
    >>> v = np.array([1.0, 0.0], dtype=np.float32)
    >>> _ = s.write([Document("a", "hi", {}, "h")], [Passage("a", 0, 2, "h", v)], [])  # doctest: +SKIP
    >>> s.search(v[None], k=1)[0][0].doc_id                           # doctest: +SKIP
    'a'
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import random
import re
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from ..address import Address
from ..errors import (
    CollectionBusy,
    CollectionExists,
    CollectionNotFound,
    CollectionReplaced,
    CorruptCollection,
    InputError,
    MissingExtra,
    StorageError,
    StoreUnavailable,
    Unsupported,
)
from ..filters import AllOf, Condition, Filter, Not, Term, as_number
from ..lexical import index_text, terms
from ..retry import call as retry_call
from .base import (
    Document,
    Hit,
    Passage,
    Store,
    StoreBase,
    WriteResult,
    check_store_manifest,
)

META_SUFFIX = "__neartext"
# A collection's passages live in a Milvus collection named by its manifest (``milvus.passages``;
# absent: the collection's own name). A new version (reindex, a both-side adapter, rollback) is
# built beside it as a whole collection under ``<name>__neartext_<what>_<hex>`` and swapped in
# by pointing the manifest at its passages (see MilvusKind.swap).
BESIDE_INFIX = META_SUFFIX + "_"
HOLD_PREFIX = "hold:"  # a meta row per process holding the collection's writes (a lease)
LEASE_S = 60.0  # a hold not renewed for this long is dead (its holder was killed)
HOLD_CHECK_S = 0.1  # how often a waiting writer looks again
DROP_GRACE_S = 2.0  # the old passages are dropped this long after a swap (readers move over)
MAX_VARCHAR = 65_535  # bytes in a Milvus VARCHAR field
MAX_JSON = 65_536  # bytes in a Milvus JSON value (the server's default limit)
MAX_ID = 1_024  # bytes in a document id
MAX_TOPK = 16_384  # Milvus' largest search limit and query window
REQUEST_BYTES = 8 << 20  # rows per insert request stay well under gRPC's 64 MB default
IN_BATCH = 1_000  # ids per "doc_id in [...]" expression
CONTAINS_IDS = 16_384  # documents a --contains filter may select on a chunked collection
RETRIES = 5
MANIFEST_RECHECK_S = 1.0  # how often a long-lived reader looks for a new manifest
FLUSH_ROWS = 1_024  # a write of this many rows is sealed at once (see MilvusStore.write)
BM25_PARAMS = {"bm25_k1": 1.2, "bm25_b": 0.75}  # SQLite FTS5's, used by the local store

# Index types by neartext's --index names; "auto" lets a server choose (AUTOINDEX, Milvus'
# recommended default) and is exact (FLAT) on Milvus Lite, which is meant for small data.
INDEX_TYPES = {"flat": "FLAT", "hnsw": "HNSW", "ivf": "IVF_FLAT"}
DEFAULT_INDEX_PARAMS = {"HNSW": {"M": 16, "efConstruction": 200}, "IVF_FLAT": {"nlist": 1024}}
DEFAULT_SEARCH_PARAMS = {"HNSW": {"ef": 64}, "IVF_FLAT": {"nprobe": 16}}
METRICS = ("IP", "COSINE")  # both give "higher is closer" scores; L2 would break thresholds
_OUT = ["doc_id", "seq", "start", "end", "hash", "vec"]  # a passage's fields
_DOC = ["doc_id", "text", "meta", "doc_hash"]  # a document's (on its first passage)

T = TypeVar("T")
log = logging.getLogger(__name__)


#: gRPC channel settings of every Milvus client. Keep-alive pings no more often than gRPC
#: servers accept by default (5 minutes; Milvus Lite's server keeps gRPC's defaults, Milvus'
#: own accepts pings every 5 s) and none without a call under way: pymilvus pings every 10 s,
#: and on a loaded machine Milvus Lite's server answered GOAWAY "too_many_pings".
GRPC_OPTIONS: dict[str, Any] = {"grpc.keepalive_time_ms": 300_000,
                                "grpc.keepalive_timeout_ms": 20_000,
                                "grpc.keepalive_permit_without_calls": False}


def _pymilvus() -> Any:
    # gRPC's C core logs to stderr on its own (a GOAWAY, a reconnect); neartext reports a
    # failed call in one line itself. Read when gRPC starts (unless the user set it).
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    try:
        import pymilvus
    except ImportError:
        raise MissingExtra("pymilvus", "milvus") from None
    # neartext turns failed calls into one clear error; both would also log each of them
    # (grpc._server: Milvus Lite's in-process server logs calls it does not implement)
    for name in ("pymilvus", "milvus_lite", "grpc._server"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    return pymilvus


# Milvus Lite runs in this process, one embedded server per file, holding the file's lock
# until released: count the clients of each file and release it when the last one closes, so
# that another process (a service, a second command) can open it.
_LITE_CLIENTS: dict[str, int] = {}
_LITE_LOCK = threading.RLock()


def disconnect(address: Address, client: Any) -> None:
    """Close a client from :func:`connect` (and free a Milvus Lite file it was the last on)."""
    with contextlib.suppress(Exception):
        client.close()
    if address.kind != "milvus-lite":
        return
    key = str(address.uri)
    with _LITE_LOCK:
        _LITE_CLIENTS[key] = _LITE_CLIENTS.get(key, 1) - 1
        if _LITE_CLIENTS[key] > 0:
            return
        del _LITE_CLIENTS[key]
        from milvus_lite.server_manager import server_manager_instance

        server_manager_instance.release_server(key)


def connect(address: Address, timeout: float = 10.0) -> Any:
    """A ``MilvusClient`` for ``address``; :class:`StoreUnavailable` naming it when unreachable."""
    pm = _pymilvus()
    kw: dict[str, Any] = {"timeout": timeout, "grpc_options": dict(GRPC_OPTIONS)}
    if address.kind == "milvus-lite":
        assert address.path is not None
        if not address.path.parent.is_dir():
            raise InputError(f"{address}: the folder {address.path.parent} does not exist")
        try:
            import milvus_lite  # noqa: F401
        except ImportError:
            raise MissingExtra("milvus-lite", "milvus") from None
    else:
        token = os.environ.get("NEARTEXT_MILVUS_TOKEN")
        if token:
            kw["token"] = token
        if address.db_name:
            kw["db_name"] = address.db_name
    if address.kind != "milvus-lite":
        return _client(pm, address, kw)
    # one thread at a time starts (or joins) a file's embedded server, and none releases it
    # meanwhile: two threads starting it at once fail ("Open local milvus failed")
    with _LITE_LOCK:
        _LITE_CLIENTS[str(address.uri)] = _LITE_CLIENTS.get(str(address.uri), 0) + 1
        try:
            return _client(pm, address, kw)
        except StoreUnavailable:
            _LITE_CLIENTS[str(address.uri)] -= 1
            raise


def _client(pm: Any, address: Address, kw: dict[str, Any]) -> Any:
    try:
        client = pm.MilvusClient(uri=address.uri, **kw)
        client.list_collections()
    except Exception as e:  # pymilvus raises MilvusException, grpc errors, OSError, ...
        raise StoreUnavailable(_unreachable(address, e)) from None
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


def _unreachable(address: Address, e: Exception) -> str:
    msg = (getattr(e, "message", "") or str(e) or type(e).__name__).strip().splitlines()[0]
    if address.kind == "milvus-lite":
        return (f"cannot open Milvus Lite file {address.path} ({msg}); Milvus Lite allows one "
                "process per file: stop the other one, or run a Milvus server")
    return (f"cannot reach Milvus at {address.uri} (from {address}): {msg}; check the host and "
            "port (Milvus' gRPC port, 19530 by default) and NEARTEXT_MILVUS_TOKEN")


def _transient(e: BaseException) -> bool:
    """Errors worth retrying: the server is unavailable, busy or rate-limiting."""
    pm = _pymilvus()
    if isinstance(e, (pm.exceptions.MilvusUnavailableException, ConnectionError, TimeoutError)):
        return True
    text = str(e).lower()
    return any(w in text for w in ("unavailable", "deadline exceeded", "rate limit",
                                   "too many requests", "connection reset", "not ready"))


def retry(call: Callable[[], T], what: str, *, attempts: int = RETRIES, base: float = 0.5) -> T:
    """Run ``call`` with neartext's retry policy (:mod:`neartext.retry`) for transient Milvus
    errors; after the last attempt, :class:`StoreUnavailable` naming the call."""
    try:
        return retry_call(call, transient=_transient, what=what, attempts=attempts, base=base)
    except Exception as e:
        if not _transient(e):
            raise
        raise StoreUnavailable(f"{what}: still failing after {attempts} attempts: "
                               f"{str(e).strip().splitlines()[0]}") from None


class MilvusStore(StoreBase):
    """A :class:`neartext.store.base.Store` on Milvus (a server, a cluster or Milvus Lite)."""

    def __init__(self, address: Address, client: Any | None = None, *,
                 unfinished_ok: bool = False) -> None:
        self.address = address
        assert address.name is not None
        self.base_name, self.meta_name = _names(address)
        self.client = client or connect(address)
        self._lock = threading.RLock()
        self._stamp: tuple[float, str | None] | None = None
        self._pointer: tuple[str | None, str] | None = None  # (manifest row, passages named)
        self._text_match = True
        self._holding: dict[str, Any] = {}  # this store's hold on writes, while held
        try:
            if not self._call("has_collection", self.meta_name):
                raise CollectionNotFound(f"{address}: no neartext collection '{self.base_name}' "
                                         "there; create one with 'neartext index'")
            self._call("load_collection", self.meta_name)
            self._manifest = self.read_manifest()
            self.name = passages_name(self._manifest, address)
            if not self._call("has_collection", self.name):
                if self.name == self.base_name:
                    raise CollectionNotFound(f"{address}: no neartext collection "
                                             f"'{self.base_name}' there; create one with "
                                             "'neartext index'")
                raise CorruptCollection(f"{address}: its manifest names the Milvus collection "
                                        f"'{self.name}' for its passages, which is missing")
            self._call("load_collection", self.name)
            if self._manifest.get("building") and not unfinished_ok:
                raise CollectionNotFound(
                    f"{address}: the collection's build did not complete (it was interrupted); "
                    "run the index or migrate command again")
        except BaseException:
            self.close()
            raise
        self.dim = int(self._manifest["dim"])
        # the manifest's collection keeps the dimension it was made with (a reindex with
        # another model changes the passages' only): its rows carry vectors of that size
        self.meta_dim = _vector_dim(self._call("describe_collection", self.meta_name)) or self.dim
        self.chunked = bool(self._manifest.get("chunking"))
        self.settings: dict[str, Any] = self._manifest.get("milvus") or {}

    # -- creation -------------------------------------------------------------------------------

    @classmethod
    def exists(cls, address: Address) -> bool:
        """Whether a neartext collection is at ``address`` (its manifest's Milvus collection)."""
        return cls._taken(address)[_names(address)[1]]

    @classmethod
    def check_free(cls, address: Address, client: Any | None = None) -> None:
        """:class:`CollectionExists` if a neartext collection, or any Milvus collection under one
        of the names a new one needs, is at ``address``."""
        name, meta = _names(address)
        taken = cls._taken(address, client)
        if taken[meta]:
            raise CollectionExists(f"{address}: a collection already exists there")
        if taken[name]:
            raise CollectionExists(f"{address}: Milvus already has a collection '{name}' "
                                   "that is not a neartext collection; choose another name")

    @staticmethod
    def _taken(address: Address, client: Any | None = None) -> dict[str, bool]:
        """Which of the two Milvus collections named after ``address`` exist."""
        if client is not None:
            return {n: bool(client.has_collection(n)) for n in _names(address)}
        own = connect(address)
        try:
            return MilvusStore._taken(address, own)
        finally:
            disconnect(address, own)

    @classmethod
    def create(
        cls, address: Address, manifest: dict[str, Any], *,
        index_params: dict[str, Any] | None = None, search_params: dict[str, Any] | None = None,
    ) -> MilvusStore:
        """Create the Milvus collections for ``address`` with ``manifest``, or resume the
        unfinished build of the same settings left there; :class:`CollectionExists` if it is
        taken. ``index_params`` may hold ``metric_type`` and
        the index's build parameters (``M``, ``efConstruction``, ``nlist``); ``search_params``
        those of a search (``ef``, ``nprobe``)."""
        pm = _pymilvus()
        assert address.name is not None
        settings = resolve_settings(address, manifest.get("index", "auto"), index_params or {},
                                    search_params or {})
        # "building" until finish_build(): an interrupted build never opens as a collection
        manifest = dict(manifest, milvus=settings, building=True)
        left = cls._unfinished_manifest(address)
        if left is not None:
            if _same_build(left, manifest):  # resumed: its rows and staged vectors are reused
                store = cls(address, unfinished_ok=True)
                store.write_manifest(manifest)
                return store
            cls.drop(address)  # another build's: replaced
        client = connect(address)
        name, meta = _names(address)
        try:
            cls.check_free(address, client)
        except CollectionExists:
            disconnect(address, client)
            raise
        dim = int(manifest["dim"])
        dt = pm.DataType
        s = client.create_schema(auto_id=False, enable_dynamic_field=False)
        s.add_field("pk", dt.VARCHAR, is_primary=True, max_length=MAX_ID + 24)
        s.add_field("doc_id", dt.VARCHAR, max_length=MAX_ID)
        for f in ("seq", "start", "end"):
            s.add_field(f, dt.INT64)
        s.add_field("hash", dt.VARCHAR, max_length=64)
        s.add_field("doc_hash", dt.VARCHAR, max_length=64)
        s.add_field("text", dt.VARCHAR, max_length=MAX_VARCHAR)
        s.add_field("folded", dt.VARCHAR, max_length=MAX_VARCHAR)
        for f in ("meta", "f_has", "f_num", "f_txt", "f_bool"):
            s.add_field(f, dt.JSON)
        s.add_field("vec", dt.FLOAT_VECTOR, dim=dim)
        # keyword search: neartext's stems of the text (neartext.lexical, as on the local
        # store), scored by Milvus' BM25 function into a sparse vector
        s.add_field("terms", dt.VARCHAR, max_length=MAX_VARCHAR, enable_analyzer=True,
                    enable_match=True, analyzer_params={"tokenizer": "standard"})
        s.add_field("sparse", dt.SPARSE_FLOAT_VECTOR)
        s.add_function(pm.Function(name="bm25", function_type=pm.FunctionType.BM25,
                                   input_field_names=["terms"], output_field_names=["sparse"]))
        ip = client.prepare_index_params()
        ip.add_index(field_name="vec", index_type=settings["index_type"],
                     metric_type=settings["metric_type"], params=settings["index_params"])
        ip.add_index(field_name="sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25",
                     params=BM25_PARAMS)
        ms = client.create_schema(auto_id=False, enable_dynamic_field=False)
        ms.add_field("key", dt.VARCHAR, is_primary=True, max_length=128)
        ms.add_field("value", dt.VARCHAR, max_length=MAX_VARCHAR)
        ms.add_field("vec", dt.FLOAT_VECTOR, dim=dim)
        mp = client.prepare_index_params()
        mp.add_index(field_name="vec", index_type="FLAT", metric_type="IP")
        try:
            client.create_collection(meta, schema=ms, index_params=mp, consistency_level="Strong")
            client.create_collection(name, schema=s, index_params=ip, consistency_level="Strong")
            zero = [0.0] * dim
            client.upsert(meta, [
                {"key": "manifest", "value": json.dumps(manifest, ensure_ascii=False), "vec": zero},
                {"key": "generation", "value": "0", "vec": zero},
                {"key": "fields", "value": "{}", "vec": zero}])
        except Exception as e:
            for n in (name, meta):
                with contextlib.suppress(Exception):
                    client.drop_collection(n)
            disconnect(address, client)
            raise StoreUnavailable(f"{address}: could not create the collection: "
                                   f"{str(e).strip().splitlines()[0]}") from None
        return cls(address, client, unfinished_ok=True)

    @staticmethod
    def drop(address: Address) -> None:
        """Delete the Milvus collections of ``address``: its manifest's, the passages it names,
        and what versions built beside it left (missing ones are ignored)."""
        name, meta = _names(address)
        client = connect(address)
        try:
            passages: str | None = None
            if client.has_collection(meta):
                with contextlib.suppress(Exception):
                    rows = client.query(meta, filter='key == "manifest"', output_fields=["value"])
                    passages = passages_name(json.loads(rows[0]["value"]), address)
            mine = {meta, passages or name}
            for n in client.list_collections():
                if n in mine or n.startswith(name + BESIDE_INFIX):
                    client.drop_collection(n)
        finally:
            disconnect(address, client)

    @staticmethod
    def unfinished(address: Address) -> bool:
        """Whether ``address`` holds a collection whose build never completed."""
        return MilvusStore._unfinished_manifest(address) is not None

    @staticmethod
    def _unfinished_manifest(address: Address) -> dict[str, Any] | None:
        try:
            store = MilvusStore(address, unfinished_ok=True)
        except CollectionNotFound:
            return None
        try:
            return dict(store._manifest) if store._manifest.get("building") else None
        finally:
            store.close()

    @staticmethod
    def reusable(address: Address) -> bool:
        """Whether an unfinished build at ``address`` holds vectors a rerun can reuse: staged
        ones, or the rows of the parts it wrote."""
        try:
            store = MilvusStore(address, unfinished_ok=True)
        except (CollectionNotFound, StoreUnavailable):
            return False
        try:
            return store.count() > 0 or bool(store._call(
                "query", store.meta_name, filter='key like "staged:%"', output_fields=["key"],
                limit=1))
        finally:
            store.close()

    def finish_build(self) -> None:
        """Mark a collection built by :meth:`create` complete: from now on it opens."""
        self.write_manifest({k: v for k, v in self._manifest.items() if k != "building"})

    # -- plumbing -------------------------------------------------------------------------------

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        fn = getattr(self.client, method)
        try:
            return retry(lambda: fn(*args, **kwargs), f"{self.address}: {method}")
        except StoreUnavailable:
            raise
        except Exception as e:
            if "no space left" in str(e).lower():  # Milvus Lite's file, or a server's disk
                raise StorageError(
                    f"{self.address}: no space left on the device Milvus writes to; this "
                    f"{method} did not complete: free space and repeat the command",
                    "full") from None
            # the old passages of a version swapped out are dropped (DROP_GRACE_S after the
            # switch): a process still reading them is told what happened, not Milvus' words
            gone = getattr(e, "code", None) == 100 or any(
                w in str(e).lower() for w in ("not exist", "not found"))  # (100: no collection)
            if args and args[0] == getattr(self, "name", None) and gone and self._swapped_out():
                raise CollectionReplaced(
                    f"{self.address}: a new version of this collection was swapped in (reindex, "
                    "rollback, a both-side adapter) while this process had the old one open; "
                    "nothing was written: open it again and repeat the request") from None
            raise

    def _query(self, collection: str, expr: str, fields: list[str]) -> list[dict[str, Any]]:
        """All rows matching ``expr`` (one request when they fit in a query window)."""
        rows = self._call("query", collection, filter=expr, output_fields=fields, limit=MAX_TOPK)
        if len(rows) < MAX_TOPK:
            return list(rows)
        return [r for batch in self._iterate(collection, expr, fields) for r in batch]

    def _iterate(self, collection: str, expr: str, fields: list[str],
                 batch_size: int = 4096) -> Iterator[list[dict[str, Any]]]:
        it = self._call("query_iterator", collection, batch_size=min(batch_size, MAX_TOPK),
                        filter=expr, output_fields=fields)
        try:
            while batch := retry(it.next, f"{self.address}: query"):
                yield list(batch)
        finally:
            it.close()

    def _by_ids(self, ids: Sequence[str], fields: list[str], first_only: bool) -> \
            list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        ids = list(dict.fromkeys(ids))
        for i in range(0, len(ids), IN_BATCH):
            expr = f"doc_id in {_lit(ids[i:i + IN_BATCH])}"
            out += self._query(self.name, f"{expr} and seq == 0" if first_only else expr, fields)
        return out

    def _meta_value(self, key: str) -> str | None:
        rows = self._call("query", self.meta_name, filter=f"key == {_lit(key)}",
                          output_fields=["value"])
        return rows[0]["value"] if rows else None

    def _set_meta(self, values: dict[str, str]) -> None:
        zero = [0.0] * self.meta_dim
        self._call("upsert", self.meta_name,
                   [{"key": k, "value": v, "vec": zero} for k, v in values.items()])

    # -- manifest and counts --------------------------------------------------------------------

    def read_manifest(self) -> dict[str, Any]:
        raw = self._meta_value("manifest")
        if raw is None:
            raise CorruptCollection(f"{self.address}: the manifest row is missing")
        try:
            data = json.loads(raw)
        except ValueError as e:
            raise CorruptCollection(f"{self.address}: unreadable manifest ({e})") from None
        return check_store_manifest(self.address, data)

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        if self._swapped_out():
            raise CollectionReplaced(
                f"{self.address}: a new version of this collection was swapped in while this "
                "process had the old one open; the manifest was not written: open it again "
                "and repeat the change")
        # the store's own settings and passages are its to say (a manifest from another
        # version, as a swap's new one is made from the current one's, carries that one's)
        own = dict(self.settings) if hasattr(self, "settings") else manifest.get("milvus")
        if own is not None:
            own.pop("passages", None)
            if self.name != self.base_name:
                own["passages"] = self.name
            manifest = {**manifest, "milvus": own}
        self._set_meta({"manifest": json.dumps(manifest, ensure_ascii=False)})
        self._manifest = manifest

    def creation_options(self) -> dict[str, Any]:
        """The options that create a collection with this one's index and search settings."""
        return {"index_params": {"metric_type": self.settings.get("metric_type", "IP"),
                                 **(self.settings.get("index_params") or {})},
                "search_params": dict(self.settings.get("search_params") or {})}

    def manifest_stamp(self) -> object:
        # Milvus has no cheap change marker for one row: the row itself, read at most once a
        # second (a served collection then sees another process's new version within a second)
        now = time.monotonic()
        if self._stamp is None or now - self._stamp[0] >= MANIFEST_RECHECK_S:
            self._stamp = (now, self._meta_value("manifest"))
        return self._stamp[1]

    def manifest_lock(self) -> contextlib.AbstractContextManager[None]:
        """The collection's writes held (:meth:`hold_writes`): Milvus has no lock, so a
        manifest's read-modify-write excludes the others' like a swap does."""
        self._stamp = None
        return self.hold_writes()

    def replaced(self) -> bool:
        """Whether the manifest (as last read: at most a second ago) names other passages
        than this store opened: a new version was swapped in."""
        raw = self.manifest_stamp()
        return raw is not None and self._passages_in(str(raw)) != self.name

    def _swapped_out(self) -> bool:
        """:meth:`replaced`, with the manifest read now (False if it cannot be read: the
        caller's own error then stands)."""
        self._stamp = None
        try:
            return self.replaced()
        except Exception:
            return False

    def _passages_in(self, raw: str) -> str:
        if self._pointer is None or self._pointer[0] != raw:
            try:
                self._pointer = (raw, passages_name(json.loads(raw), self.address))
            except ValueError:
                return self.name  # unreadable: read_manifest says so where it matters
        return self._pointer[1]

    # -- holding writes (a lease in the meta collection) ----------------------------------------

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
            self._call("delete", self.meta_name, filter=f"key == {_lit(token)}")
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
                self._call("delete", self.meta_name, filter=f"key == {_lit(token)}")

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
                self._call("delete", self.meta_name, filter=f"key in {_lit(dead)}")
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

    def generation(self) -> int:
        return int(self._meta_value("generation") or 0)

    def count(self) -> int:
        return self._count("seq == 0")

    def passage_count(self) -> int:
        return self._count("seq >= 0")

    def _count(self, expr: str) -> int:
        rows = self._call("query", self.name, filter=expr, output_fields=["count(*)"])
        return int(rows[0]["count(*)"]) if rows else 0

    def _metadata_field_names(self) -> set[str]:
        counts = json.loads(self._meta_value("fields") or "{}")
        return {f for f, n in counts.items() if n > 0}

    def index_info(self) -> dict[str, Any]:
        return {"kind": self.settings.get("index_type", "?").lower(),
                "requested": self._manifest.get("index", "auto"),
                "vectors": self.passage_count(), "engine": self.address.kind,
                "metric": self.settings.get("metric_type"),
                "search_params": self.settings.get("search_params")}

    def repair(self) -> dict[str, Any]:
        """Milvus builds and keeps its own index: nothing here is a cache to rebuild. Reports
        the counts, and flushes so that every committed row is sealed and indexed."""
        self._call("flush", self.name)
        return {"documents": self.count(), "passages": self.passage_count(),
                "generation": self.generation(), "note": "Milvus maintains its own index; "
                "rows were flushed so that all are sealed and indexed"}

    # -- reads ----------------------------------------------------------------------------------

    def document_hashes(self, ids: Sequence[str] | None = None) -> dict[str, str]:
        if ids is None:
            return {r["doc_id"]: r["doc_hash"] for batch in
                    self._iterate(self.name, "seq == 0", ["doc_id", "doc_hash"]) for r in batch}
        return {r["doc_id"]: r["doc_hash"] for r in self._by_ids(ids, ["doc_id", "doc_hash"], True)}

    def _stored_vectors(self, hashes: list[str]) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for i in range(0, len(hashes), IN_BATCH):
            for r in self._query(self.name, f"hash in {_lit(hashes[i:i + IN_BATCH])}",
                                 ["hash", "vec"]):
                out.setdefault(r["hash"], _vec(r["vec"]))
        return out

    def _staged_vectors(self, hashes: list[str]) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for i in range(0, len(hashes), IN_BATCH):
            keys = ["staged:" + h for h in hashes[i:i + IN_BATCH]]
            for r in self._query(self.meta_name, f"key in {_lit(keys)}", ["key", "vec"]):
                out.setdefault(r["key"][7:], _vec(r["vec"]))
        return out

    def _documents_by_id(self, ids: Sequence[str]) -> dict[str, Document]:
        return {r["doc_id"]: _document(r) for r in self._by_ids(ids, _DOC, True)}

    def _passages_of(self, doc_ids: Sequence[str]) -> dict[str, list[Passage]]:
        """The stored passages of each document, in order, vectors included."""
        out: dict[str, list[Passage]] = {}
        for r in sorted(self._by_ids(doc_ids, _OUT, False), key=lambda r: (r["doc_id"], r["seq"])):
            out.setdefault(r["doc_id"], []).append(
                Passage(r["doc_id"], r["start"], r["end"], r["hash"], _vec(r["vec"])))
        return out

    def iter_texts(self, batch_size: int = 4096) -> Iterator[str]:
        for batch in self._iterate(self.name, "seq == 0", ["text"], batch_size):
            yield from (r["text"] for r in batch)

    def iter_vectors(self, batch_size: int = 8192) -> Iterator[tuple[list[str], np.ndarray]]:
        for batch in self._iterate(self.name, "seq >= 0", ["doc_id", "vec"], batch_size):
            yield ([r["doc_id"] for r in batch],
                   np.asarray([r["vec"] for r in batch], dtype=np.float32).reshape(-1, self.dim))

    def doc_vectors(self, doc_ids: Sequence[str]) -> dict[str, np.ndarray]:
        out: dict[str, list[tuple[int, np.ndarray]]] = {}
        for r in self._by_ids(doc_ids, ["doc_id", "seq", "vec"], False):
            out.setdefault(r["doc_id"], []).append((r["seq"], _vec(r["vec"])))
        return {d: np.stack([v for _, v in sorted(rows, key=lambda x: x[0])])
                for d, rows in out.items()}

    def export(self, batch_size: int = 1024) -> Iterator[tuple[list[Document], list[Passage]]]:
        """Every document with its passages (vectors included), in batches."""
        for batch in self._iterate(self.name, "seq == 0", _DOC, batch_size):
            docs = [_document(r) for r in batch]
            parts = self._passages_of([d.id for d in docs])
            yield docs, [p for d in docs for p in parts.get(d.id, [])]

    # -- search ---------------------------------------------------------------------------------

    def search(self, queries: np.ndarray, k: int, flt: Filter | None = None) -> list[list[Hit]]:
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dim)
        if k < 1 or not len(queries):
            return [[] for _ in range(len(queries))]
        expr = self._search_expression(flt) if flt else ""
        if expr is None:  # a --contains filter no document passes
            return [[] for _ in range(len(queries))]
        k = min(k, MAX_TOPK)
        params = dict(self.settings.get("search_params") or {})
        if "ef" in params:
            params["ef"] = max(int(params["ef"]), k)
        kw: dict[str, Any] = {"group_by_field": "doc_id"} if self.chunked else {}
        res = self._call("search", self.name, data=queries.tolist(), limit=k, filter=expr,
                         anns_field="vec", output_fields=["doc_id", "start", "end"],
                         search_params={"metric_type": self.settings.get("metric_type", "IP"),
                                        "params": params}, **kw)
        return self.best_per_document(
            ([Hit(h["entity"]["doc_id"], float(h["distance"]), h["entity"]["start"],
                  h["entity"]["end"]) for h in row] for row in res), k)

    def _not(self, expr: str) -> str | bool:
        """``not expr`` as an expression over document ids: the documents ``expr`` selects
        left out, or (when those are many) the others named; ``True``/``False`` when none or
        all."""
        hit = {r["doc_id"] for r in self._query(self.name, _and("seq == 0", expr), ["doc_id"])}
        if not hit:
            return True
        if len(hit) <= CONTAINS_IDS:
            return f"doc_id not in {_lit(sorted(hit))}"
        rest = [r["doc_id"] for r in self._query(self.name, "seq == 0", ["doc_id"])
                if r["doc_id"] not in hit]
        if not rest:
            return False
        if len(rest) > CONTAINS_IDS:
            raise Unsupported(
                f"{self.address}: a negated filter (!) here selects {len(rest):,} documents and "
                f"leaves out {len(hit):,} (at most {CONTAINS_IDS:,} either way on Milvus); "
                "narrow it with more conditions")
        return f"doc_id in {_lit(rest)}"

    def _search_expression(self, flt: Filter) -> str | None:
        folded = conditions_expression(flt.conditions, self._not)
        if folded is False:
            return None  # nothing can match
        cond = "" if folded is True else folded
        words = contains_expression(flt.contains)
        if not words:
            return cond
        # One expression, unless passages after a document's first do not carry its text
        # (chunked collections), or a word has a LIKE wildcard to escape next to a JSON
        # condition: Milvus Lite 3.2 evaluates such mixed expressions with a matcher that
        # ignores LIKE escapes. Both go in two steps: the documents whose text matches, then
        # the search among them.
        if not self.chunked and not (cond and any(c in w for w in flt.contains for c in "%_")):
            return _and(cond, words)
        ids = [r["doc_id"] for r in self._query(self.name, _and("seq == 0", words), ["doc_id"])]
        if not ids:
            return None
        if len(ids) > CONTAINS_IDS:
            raise Unsupported(
                f"{self.address}: the --contains filter selects {len(ids):,} documents (at most "
                f"{CONTAINS_IDS:,} when the collection is chunked or a word holds % or _); "
                "narrow it with more words or --where")
        return _and(cond, f"doc_id in {_lit(ids)}")

    def keyword_search(self, queries: Sequence[str], k: int,
                       flt: Filter | None = None) -> list[list[Hit]]:
        """Top ``k`` documents per query by Milvus' BM25 over neartext's stems of the texts."""
        out: list[list[Hit]] = [[] for _ in queries]
        texts = [" ".join(terms(q)) for q in queries]
        asked = [i for i, t in enumerate(texts) if t]
        if k < 1 or not asked:
            return out
        expr = self._search_expression(flt) if flt else ""
        if expr is None:
            return out
        res = self._call("search", self.name, data=[texts[i] for i in asked],
                         limit=min(k, MAX_TOPK), filter=_and("seq == 0", expr),
                         anns_field="sparse", output_fields=["doc_id"],
                         search_params={"metric_type": "BM25", "params": {}})
        for i, row in zip(asked, res):
            out[i] = [Hit(h["entity"]["doc_id"], abs(float(h["distance"]))) for h in row]
        return out

    def _document_frequencies(self, words: list[str]) -> dict[str, int]:
        return {w: self._document_frequency(w) for w in words}

    @staticmethod
    def _idf(n: int, df: int) -> float:
        return math.log(1 + (n - df + 0.5) / (df + 0.5))  # Milvus' BM25 IDF

    def _document_frequency(self, word: str) -> int:
        """Documents whose stems include ``word``: a ``text_match`` count where the deployment
        has it (Milvus 2.5+ servers, Milvus Lite 3), else the BM25 hits of the word alone,
        counted up to Milvus' largest limit (an IDF floor for words in more documents)."""
        if self._text_match:
            try:
                return self._count(f"seq == 0 and text_match(terms, {_lit(word)})")
            except StoreUnavailable:
                raise
            except Exception:  # e.g. C++ Milvus Lite 2.5: "invalid parameter"
                self._text_match = False
        res = self._call("search", self.name, data=[word], limit=MAX_TOPK, filter="seq == 0",
                         anns_field="sparse", output_fields=[],
                         search_params={"metric_type": "BM25", "params": {}})
        return len(res[0]) if res else 0

    def has_keyword_index(self) -> bool:
        return True  # kept by Milvus with every write

    # -- writes ---------------------------------------------------------------------------------

    def stage_vectors(self, hashes: Sequence[str], vectors: np.ndarray) -> None:
        if self.meta_dim != self.dim:  # (after a reindex to another dimension) not kept:
            return  # an interrupted write then embeds its texts again
        rows = [[{"key": "staged:" + h, "value": "", "vec": _floats(v)}]
                for h, v in zip(hashes, vectors)]
        for batch in _request_batches(rows, self.dim):
            self._call("upsert", self.meta_name, batch)

    def ids_where(self, flt: Filter) -> list[str]:
        expr = self._search_expression(flt)
        if expr is None:
            return []
        return [r["doc_id"] for r in self._query(self.name, _and("seq == 0", expr), ["doc_id"])]

    def write(self, documents: Sequence[Document], passages: Sequence[Passage],
              delete_ids: Sequence[str] | Filter) -> WriteResult:
        for d in documents:
            check_document(d, self.address)
        by_doc: dict[str, list[Passage]] = {}
        for p in passages:
            by_doc.setdefault(p.doc_id, []).append(p)
        with self._lock:
            self._await_current(written=False)
            if isinstance(delete_ids, Filter):  # Milvus has no transactions: chosen just before
                delete_ids = self.ids_where(delete_ids)
            touched = [d.id for d in documents] + list(delete_ids)
            old_rows = self._by_ids(touched, ["pk", "doc_id", "seq", "meta"], False)
            old_meta = {r["doc_id"]: r["meta"] or {} for r in old_rows if r["seq"] == 0}
            # documents whose text is unchanged (metadata-only updates) keep their passages
            kept = [d.id for d in documents if d.id not in by_doc and d.id in old_meta]
            by_doc.update(self._passages_of(kept))
            # rows are built a request at a time: as Python lists a row's vector is ~10 KB
            groups = (document_rows(d, by_doc.get(d.id, [])) for d in documents)
            new_pks = {row_key(seq, d.id) for d in documents
                       for seq in range(len(by_doc.get(d.id, [])))}
            for batch in _request_batches(groups, self.dim):
                self._call("upsert", self.name, batch)
            if len(new_pks) >= FLUSH_ROWS:
                # Seal a bulk write into indexed segments now: unsealed rows are searched by
                # brute force (on Milvus Lite in Python: 140 ms per query for 5,000 rows
                # against 6 ms sealed). Small writes are left to Milvus' own flushing.
                self._call("flush", self.name)
            stale = [r["pk"] for r in old_rows if r["pk"] not in new_pks]
            for i in range(0, len(stale), IN_BATCH):
                self._call("delete", self.name, filter=f"pk in {_lit(stale[i:i + IN_BATCH])}")
            result = self.write_counts(documents, set(old_meta),
                                  sum(1 for i in set(delete_ids) if i in old_meta))
            counts: dict[str, int] = json.loads(self._meta_value("fields") or "{}")
            for meta in old_meta.values():
                for f in meta:
                    counts[f] = counts.get(f, 0) - 1
            for d in documents:
                for f in d.metadata:
                    counts[f] = counts.get(f, 0) + 1
            self._set_meta({"fields": json.dumps({f: n for f, n in counts.items() if n > 0},
                                                 ensure_ascii=False),
                            "generation": str(self.generation() + 1)})
            # staged vectors served an interrupted write; after a complete one they are stored
            self._call("delete", self.meta_name, filter='key like "staged:%"')
            # a swap that began while this wrote may have copied the rows before it did
            self._await_current(written=True)
        return result

    def close(self) -> None:
        if self.client is not None:
            disconnect(self.address, self.client)
            self.client = None


# -- settings -------------------------------------------------------------------------------


def resolve_settings(address: Address, index: str, index_params: dict[str, Any],
                     search_params: dict[str, Any]) -> dict[str, Any]:
    """Milvus index type, metric and parameters from neartext's ``--index`` and the
    ``--index-param``/``--search-param`` options (unknown values are refused)."""
    if index == "auto":
        index_type = "FLAT" if address.kind == "milvus-lite" else "AUTOINDEX"
    elif index in INDEX_TYPES:
        index_type = INDEX_TYPES[index]
    else:
        raise InputError(f"unknown index '{index}'; choose one of: auto, {', '.join(INDEX_TYPES)}")
    params = dict(index_params)
    metric = str(params.pop("metric_type", "IP")).upper()
    if metric not in METRICS:
        raise InputError(f"metric_type {metric} is not supported; use IP (the default; equal to "
                         "cosine on the normalized vectors neartext stores) or COSINE")
    return {"index_type": index_type, "metric_type": metric,
            "index_params": {**DEFAULT_INDEX_PARAMS.get(index_type, {}), **params},
            "search_params": {**DEFAULT_SEARCH_PARAMS.get(index_type, {}), **search_params}}


# -- rows -----------------------------------------------------------------------------------


def check_document(d: Document, address: Address | str) -> None:
    """Refuse, naming the document, what Milvus cannot store."""
    if len(d.id.encode("utf-8")) > MAX_ID:
        raise InputError(f"{address}: document id '{d.id[:40]}...' is over {MAX_ID} bytes")
    size = max(len(d.text.encode("utf-8")), len(d.text.casefold().encode("utf-8")))
    if size > MAX_VARCHAR:
        raise InputError(f"{address}: document '{d.id}' has {size:,} bytes of text; a Milvus "
                         f"text field holds at most {MAX_VARCHAR:,} (split it, or keep this "
                         "collection in a directory)")
    if len(json.dumps(d.metadata, ensure_ascii=False).encode("utf-8")) > MAX_JSON:
        raise InputError(f"{address}: document '{d.id}': metadata over {MAX_JSON:,} bytes")


def _same_build(left: dict[str, Any], new: dict[str, Any]) -> bool:
    """Whether an unfinished build's manifest describes the build ``new`` describes (the same
    model, dimension, index and options; only when it was started differs)."""
    when = ("created", "neartext_version")
    stored = json.loads(json.dumps(new, ensure_ascii=False))  # as the manifest is stored
    return {k: v for k, v in left.items() if k not in when} == \
        {k: v for k, v in stored.items() if k not in when}


def row_key(seq: int, doc_id: str) -> str:
    """The primary key of a document's ``seq``-th passage row."""
    return f"{seq}|{doc_id}"


def document_rows(d: Document, passages: list[Passage]) -> list[dict[str, Any]]:
    """The Milvus rows of one document: one per passage, the text on the first."""
    typed = typed_metadata(d.metadata)
    folded = d.text.casefold()
    return [{"pk": row_key(seq, d.id), "doc_id": d.id, "seq": seq, "start": p.start, "end": p.end,
             "hash": p.hash, "doc_hash": d.hash, "text": d.text if seq == 0 else "",
             "folded": folded if seq == 0 else "", "meta": d.metadata if seq == 0 else {},
             "terms": index_text(d.text) if seq == 0 else "",
             **typed, "vec": _floats(p.vector)}
            for seq, p in enumerate(passages)]


def typed_metadata(metadata: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Copies of the metadata that Milvus can compare the way :func:`neartext.filters.matches`
    does: ``f_has`` (``b`` boolean, ``n`` a number or a string spelling one, ``s`` other),
    ``f_num`` (numbers), ``f_txt`` (text of every non-boolean), ``f_bool``. Nulls are absent."""
    has: dict[str, str] = {}
    num: dict[str, float] = {}
    txt: dict[str, str] = {}
    flag: dict[str, bool] = {}
    for k, v in metadata.items():
        if v is None:
            continue
        if isinstance(v, bool):
            has[k], flag[k] = "b", v
            continue
        n = as_number(v)
        if n is not None and math.isfinite(n):
            has[k], num[k] = "n", n
        else:
            has[k] = "s"
        txt[k] = (json.dumps(v, ensure_ascii=False, separators=(",", ":"))
                  if isinstance(v, (dict, list)) else str(v))
    return {"f_has": has, "f_num": num, "f_txt": txt, "f_bool": flag}


# -- filters -> Milvus boolean expressions ----------------------------------------------------


def conditions_expression(conditions: Sequence[Term],
                          resolve_not: Callable[[str], str | bool] | None = None) -> str | bool:
    """A Milvus expression true where every term holds (as in :func:`neartext.filters.matches`),
    or ``True``/``False`` when that is decided without one.

    Milvus cannot be asked ``not`` portably: its C++ engine (2.5) refuses the operator, and where
    it is accepted a JSON key a document lacks makes the comparison null and ``not null`` null, so
    ``!topic=x`` would leave out documents without a topic. ``resolve_not(expr)`` turns the
    negation of ``expr`` into an expression over document ids (the store queries which documents
    ``expr`` selects); without it a negation is refused.

    >>> from neartext.filters import parse_filter
    >>> conditions_expression(parse_filter(["year>=2023", "topic=sync|topic=x"]).conditions)
    '((f_num["year"] >= 2023) and ((f_txt["topic"] == "sync") or (f_txt["topic"] == "x")))'
    """
    return _combine(True, [term_expression(t, resolve_not) for t in conditions])


def term_expression(term: Term, resolve_not: Callable[[str], str | bool] | None = None
                    ) -> str | bool:
    """One filter term as a parenthesised Milvus expression (or ``True``/``False``)."""
    if isinstance(term, Condition):
        return f"({_condition(term)})"
    if isinstance(term, Not):
        inner = term_expression(term.term, resolve_not)
        if isinstance(inner, bool):
            return not inner
        if resolve_not is None:
            raise Unsupported("a negated filter (!) needs the collection to resolve it")
        return resolve_not(inner)
    return _combine(isinstance(term, AllOf), [term_expression(t, resolve_not)
                                              for t in term.terms])


def _combine(every: bool, parts: list[str | bool]) -> str | bool:
    """AND (``every``) or OR of expressions, with ``True``/``False`` folded in."""
    if every and False in parts or not every and True in parts:
        return not every
    kept = [p for p in parts if not isinstance(p, bool)]
    if not kept:
        return every
    joined = (" and " if every else " or ").join(kept)
    return joined if len(kept) == 1 else f"({joined})"


def _condition(c: Condition) -> str:
    key = _lit(c.field)
    has = f"f_has[{key}]"
    if isinstance(c.value, bool):
        if c.op == "=":
            return f"f_bool[{key}] == {_lit(c.value)}"
        return f'{has} == "n" or {has} == "s" or f_bool[{key}] == {_lit(not c.value)}'
    if isinstance(c.value, (int, float)):
        if not math.isfinite(c.value):
            raise InputError(f"filter {c.field}{c.op}{c.value}: the number is out of range")
        if c.op == "!=":
            return (f'{has} == "b" or {has} == "s" or '
                    f'({has} == "n" and f_num[{key}] != {_lit(c.value)})')
        op = "==" if c.op == "=" else c.op
        return f"f_num[{key}] {op} {_lit(c.value)}"
    if c.op == "=":
        return f"f_txt[{key}] == {_lit(c.value)}"
    return f'{has} == "b" or (({has} == "n" or {has} == "s") and f_txt[{key}] != {_lit(c.value)})'


def contains_expression(words: Sequence[str]) -> str:
    """Case-insensitive substring conditions on the case-folded text (``like``)."""
    parts = []
    for w in words:
        if "\\" in w:
            raise Unsupported(f"--contains '{w}': a backslash cannot be matched in a Milvus "
                              "'like' pattern; leave it out of the word")
        pat = w.casefold().replace("%", "\\%").replace("_", "\\_")
        parts.append(f"folded like {_lit('%' + pat + '%')}")
    return " and ".join(parts)


def _names(address: Address) -> tuple[str, str]:
    """The Milvus collections named after a neartext collection: its first passages (where its
    manifest names no others) and its manifest and state."""
    return str(address.name), f"{address.name}{META_SUFFIX}"


def passages_name(manifest: dict[str, Any], address: Address) -> str:
    """The Milvus collection holding the passages of the collection at ``address``."""
    return str((manifest.get("milvus") or {}).get("passages") or address.name)


def _vector_dim(description: dict[str, Any]) -> int | None:
    """The dimension of the vector field in a ``describe_collection`` answer."""
    for f in description.get("fields") or []:
        dim = (f.get("params") or {}).get("dim")
        if f.get("name") == "vec" and dim is not None:
            return int(dim)
    return None


def _renamed(address: Address, name: str) -> Address:
    """``address`` with another collection name (its text too)."""
    assert address.name is not None
    text = address.text[:-len(address.name)] if address.text.endswith(address.name) else \
        address.text + "/"
    return dataclasses.replace(address, name=name, text=text + name)


def _document(row: dict[str, Any]) -> Document:
    return Document(row["doc_id"], row["text"], dict(row["meta"] or {}), row["doc_hash"])


def _and(*parts: str) -> str:
    return " and ".join(f"({p})" for p in parts if p)


def _lit(v: Any) -> str:
    """A Milvus expression literal (strings double-quoted with JSON escapes)."""
    return json.dumps(v, ensure_ascii=False)


def _floats(v: np.ndarray) -> list[float]:
    out: list[float] = np.asarray(v, dtype=np.float32).tolist()
    return out


def _vec(v: Any) -> np.ndarray:
    return np.asarray(v, dtype=np.float32)


def _request_batches(groups: Iterable[list[dict[str, Any]]], dim: int
                     ) -> Iterator[list[dict[str, Any]]]:
    """Groups of rows (a document's) in requests of at most :data:`REQUEST_BYTES` (estimated),
    never splitting a group."""
    batch: list[dict[str, Any]] = []
    size = 0
    for group in groups:
        n = sum(dim * 8 + 2 * sum(len(r.get(f, "")) for f in ("text", "folded", "terms")) + 512
                for r in group)
        if batch and size + n > REQUEST_BYTES:
            yield batch
            batch, size = [], 0
        batch.extend(group)
        size += n
    if batch:
        yield batch


class MilvusKind:
    """:class:`~neartext.store.factory.StoreKind` of Milvus addresses (servers and Lite)."""

    name = "milvus"
    state_with_store = False  # ratings, adapters, models: in a local state directory

    def open(self, address: Address) -> MilvusStore:
        return MilvusStore(address)

    def create(self, address: Address, manifest: dict[str, Any],
               options: dict[str, Any] | None = None) -> MilvusStore:
        return MilvusStore.create(address, manifest, **(options or {}))

    def exists(self, address: Address) -> bool:
        """A collection whose build completed is there (an unfinished one is built again,
        resumed or replaced: see :meth:`building`)."""
        return MilvusStore.exists(address) and not MilvusStore.unfinished(address)

    @contextlib.contextmanager
    def building(self, address: Address) -> Iterator[Address]:
        """A new collection is built in place, marked ``building`` in its manifest until
        complete (it does not open before). If the block fails, or the run is killed, it stays
        unfinished when it holds vectors (staged, or the parts written), and the next build
        with the same settings resumes it (:meth:`MilvusStore.create`: reruns embed only what
        is missing); one with other settings replaces it; without vectors it is dropped. (Not
        built under another name and renamed: not every Milvus deployment implements
        renaming.)"""
        with held(address):
            if not MilvusStore.unfinished(address):  # (one an earlier run left: see create)
                MilvusStore.check_free(address)
            try:
                yield address
            except BaseException:
                if not MilvusStore.reusable(address):  # else kept for the rerun to resume
                    MilvusStore.drop(address)
                raise
            store = MilvusStore(address, unfinished_ok=True)
            try:
                store.finish_build()
            finally:
                store.close()

    def connected(self, address: Address) -> contextlib.AbstractContextManager[None]:
        return held(address)

    def beside(self, address: Address, what: str) -> Address:
        """Where a new version of the collection at ``address`` is built (``what``: reindex,
        remap): a collection ``<name>__neartext_<what>_<hex>`` in the same Milvus, the one a
        killed run left if there is one (a reindex resumes it)."""
        assert address.name is not None
        stem = f"{address.name}{BESIDE_INFIX}{what}_"
        left = re.compile(re.escape(stem) + "[0-9a-f]{8}" + re.escape(META_SUFFIX) + "$")
        client = connect(address)
        try:
            names = sorted(client.list_collections())
        finally:
            disconnect(address, client)
        found = [n[:-len(META_SUFFIX)] for n in names if left.match(n)]
        return _renamed(address, found[0] if found else stem + uuid.uuid4().hex[:8])

    def remove(self, address: Address) -> None:
        """Drop what was built at ``address`` (its Milvus collections and local state)."""
        MilvusStore.drop(address)
        shutil.rmtree(address.state_dir(), ignore_errors=True)

    def swap(self, store: Store, beside: Address, keep_previous: bool = False) -> None:
        """Make the collection built at ``beside`` the collection of ``store`` (whose writes
        the caller holds): its manifest, naming the new passages, replaces the current one in
        one row write, which is the switch (readers and writers see it at their next request,
        a served collection within :data:`MANIFEST_RECHECK_S`). The old passages are dropped
        :data:`DROP_GRACE_S` later (searches already under way finish on them), with any a
        killed swap left behind."""
        assert isinstance(store, MilvusStore)
        if keep_previous:
            raise Unsupported(f"{store.address}: keeping the previous version applies to "
                              "collections in a directory; on Milvus, 'neartext rollback' "
                              "goes back")
        new = MilvusStore(beside, unfinished_ok=True)
        try:
            manifest = {k: v for k, v in new.read_manifest().items() if k != "building"}
            passages, scratch_meta = new.name, new.meta_name
        finally:
            new.close()
        manifest["milvus"] = {**(manifest.get("milvus") or {}), "passages": passages}
        old = store.name
        store.check_hold()
        store._set_meta({"generation": str(store.generation() + 1)})
        # vectors an interrupted write staged are the old version's (keyed by text only)
        store._call("delete", store.meta_name, filter='key like "staged:%"')
        store._set_meta({"manifest": json.dumps(manifest, ensure_ascii=False)})  # the switch
        store._stamp = None
        store._call("drop_collection", scratch_meta)  # its passages are the collection's now
        time.sleep(DROP_GRACE_S)
        names = set(store._call("list_collections"))
        stem = f"{store.base_name}{BESIDE_INFIX}"
        orphans = {n for n in names if n.startswith(stem) and not n.endswith(META_SUFFIX)
                   and n + META_SUFFIX not in names}
        for n in ({old} | orphans) - {passages}:
            if n in names:
                store._call("drop_collection", n)

    def copy_to_directory(self, address: Address, into: Path) -> Path:
        """Copied with :func:`neartext.migrate.migrate`: same vectors, nothing re-embedded."""
        from ..migrate import migrate

        out = into / "collection"
        migrate(address, out)
        return out

    def bytes_on_disk(self, address: Address) -> int | None:
        return None


MILVUS = MilvusKind()
