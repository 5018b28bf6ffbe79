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
    >>> from neartext.data.address import parse_address
    >>> a = parse_address("milvus-lite:" + os.path.join(tempfile.mkdtemp(), "doc.db"))
    >>> s = MilvusStore.create(a, {"dim": 2, "index": "flat"})       # doctest: +SKIP
    >>> v = np.array([1.0, 0.0], dtype=np.float32)
    >>> _ = s.write([Document("a", "hi", {}, "h")], [Passage("a", 0, 2, "h", v)], [])  # doctest: +SKIP
    >>> s.search(v[None], k=1)[0][0].doc_id                           # doctest: +SKIP
    'a'
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

import numpy as np

from neartext.data.address import Address
from neartext.data.filters import Filter
from neartext.errors import (
    CollectionNotFound,
    CollectionReplaced,
    CorruptCollection,
    StoreUnavailable,
    Unsupported,
)
from neartext.store.base import (
    Document,
    Hit,
    Passage,
    StoreBase,
    StoreSettings,
    WriteResult,
    check_store_manifest,
)
from neartext.store.milvus.build import Build
from neartext.store.milvus.connection import connect, disconnect, disk_full, retry
from neartext.store.milvus.expressions import all_of, conditions_expression, contains_expression, literal
from neartext.store.milvus.keyword import KeywordSearch
from neartext.store.milvus.layout import names_of, passages_name, vector_dim
from neartext.store.milvus.leases import Leases
from neartext.store.milvus.rows import (
    DOCUMENT_FIELDS,
    MAX_TOPK,
    PASSAGE_FIELDS,
    as_vector,
    check_document,
    document_of,
    document_rows,
    floats,
    request_batches,
    row_key,
)

DROP_GRACE_S = 2.0  # the old passages are dropped this long after a swap (readers move over)
IN_BATCH = 1_000  # ids per "doc_id in [...]" expression
CONTAINS_IDS = 16_384  # documents a --contains filter may select on a chunked collection
MANIFEST_RECHECK_S = 1.0  # how often a long-lived reader looks for a new manifest
FLUSH_ROWS = 1_024  # a write of this many rows is sealed at once (see MilvusStore.write)


T = TypeVar("T")
log = logging.getLogger(__name__)






















class MilvusStore(Build, Leases, KeywordSearch, StoreBase):
    """A :class:`neartext.store.base.Store` on Milvus (a server, a cluster or Milvus Lite)."""

    def __init__(self, address: Address, client: Any | None = None, *,
                 unfinished_ok: bool = False) -> None:
        self.address = address
        assert address.name is not None
        self.base_name, self.meta_name = names_of(address)
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
            if StoreSettings.of(address, self._manifest).building and not unfinished_ok:
                raise CollectionNotFound(
                    f"{address}: the collection's build did not complete (it was interrupted); "
                    "run the index or migrate command again")
        except BaseException:
            self.close()
            raise
        conf = StoreSettings.of(address, self._manifest)
        self.dim = conf.dim
        self.requested_index = conf.index
        # the manifest's collection keeps the dimension it was made with (a reindex with
        # another model changes the passages' only): its rows carry vectors of that size
        self.meta_dim = vector_dim(self._call("describe_collection", self.meta_name)) or self.dim
        self.chunked = conf.chunked
        self.settings: dict[str, Any] = conf.milvus

    # -- creation -------------------------------------------------------------------------------

    # -- plumbing -------------------------------------------------------------------------------

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        fn = getattr(self.client, method)
        try:
            return retry(lambda: fn(*args, **kwargs), f"{self.address}: {method}")
        except StoreUnavailable:
            raise
        except Exception as e:
            if (full := disk_full(self.address, e, f"this {method}")) is not None:
                raise full from None
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
            expr = f"doc_id in {literal(ids[i:i + IN_BATCH])}"
            out += self._query(self.name, f"{expr} and seq == 0" if first_only else expr, fields)
        return out

    def _meta_value(self, key: str) -> str | None:
        rows = self._call("query", self.meta_name, filter=f"key == {literal(key)}",
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
                "requested": self.requested_index,
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
            for r in self._query(self.name, f"hash in {literal(hashes[i:i + IN_BATCH])}",
                                 ["hash", "vec"]):
                out.setdefault(r["hash"], as_vector(r["vec"]))
        return out

    def _staged_vectors(self, hashes: list[str]) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for i in range(0, len(hashes), IN_BATCH):
            keys = ["staged:" + h for h in hashes[i:i + IN_BATCH]]
            for r in self._query(self.meta_name, f"key in {literal(keys)}", ["key", "vec"]):
                out.setdefault(r["key"][7:], as_vector(r["vec"]))
        return out

    def _documents_by_id(self, ids: Sequence[str]) -> dict[str, Document]:
        return {r["doc_id"]: document_of(r) for r in self._by_ids(ids, DOCUMENT_FIELDS, True)}

    def _passages_of(self, doc_ids: Sequence[str]) -> dict[str, list[Passage]]:
        """The stored passages of each document, in order, vectors included."""
        out: dict[str, list[Passage]] = {}
        for r in sorted(self._by_ids(doc_ids, PASSAGE_FIELDS, False), key=lambda r: (r["doc_id"], r["seq"])):
            out.setdefault(r["doc_id"], []).append(
                Passage(r["doc_id"], r["start"], r["end"], r["hash"], as_vector(r["vec"])))
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
            out.setdefault(r["doc_id"], []).append((r["seq"], as_vector(r["vec"])))
        return {d: np.stack([v for _, v in sorted(rows, key=lambda x: x[0])])
                for d, rows in out.items()}

    def export(self, batch_size: int = 1024) -> Iterator[tuple[list[Document], list[Passage]]]:
        """Every document with its passages (vectors included), in batches."""
        for batch in self._iterate(self.name, "seq == 0", DOCUMENT_FIELDS, batch_size):
            docs = [document_of(r) for r in batch]
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
        hit = {r["doc_id"] for r in self._query(self.name, all_of("seq == 0", expr), ["doc_id"])}
        if not hit:
            return True
        if len(hit) <= CONTAINS_IDS:
            return f"doc_id not in {literal(sorted(hit))}"
        rest = [r["doc_id"] for r in self._query(self.name, "seq == 0", ["doc_id"])
                if r["doc_id"] not in hit]
        if not rest:
            return False
        if len(rest) > CONTAINS_IDS:
            raise Unsupported(
                f"{self.address}: a negated filter (!) here selects {len(rest):,} documents and "
                f"leaves out {len(hit):,} (at most {CONTAINS_IDS:,} either way on Milvus); "
                "narrow it with more conditions")
        return f"doc_id in {literal(rest)}"

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
            return all_of(cond, words)
        ids = [r["doc_id"] for r in self._query(self.name, all_of("seq == 0", words), ["doc_id"])]
        if not ids:
            return None
        if len(ids) > CONTAINS_IDS:
            raise Unsupported(
                f"{self.address}: the --contains filter selects {len(ids):,} documents (at most "
                f"{CONTAINS_IDS:,} when the collection is chunked or a word holds % or _); "
                "narrow it with more words or --where")
        return all_of(cond, f"doc_id in {literal(ids)}")

    # -- writes ---------------------------------------------------------------------------------

    @property
    def keeps_staged(self) -> bool:
        # not after a reindex to another dimension (the metadata collection keeps the first
        # one's): an interrupted write then embeds its texts again
        return self.meta_dim == self.dim

    def stage_vectors(self, hashes: Sequence[str], vectors: np.ndarray) -> None:
        if not self.keeps_staged:
            return
        rows = [[{"key": "staged:" + h, "value": "", "vec": floats(v)}]
                for h, v in zip(hashes, vectors)]
        for batch in request_batches(rows, self.dim):
            self._call("upsert", self.meta_name, batch)

    def ids_where(self, flt: Filter) -> list[str]:
        expr = self._search_expression(flt)
        if expr is None:
            return []
        return [r["doc_id"] for r in self._query(self.name, all_of("seq == 0", expr), ["doc_id"])]

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
            for batch in request_batches(groups, self.dim):
                self._call("upsert", self.name, batch)
            if len(new_pks) >= FLUSH_ROWS:
                # Seal a bulk write into indexed segments now: unsealed rows are searched by
                # brute force (on Milvus Lite in Python: 140 ms per query for 5,000 rows
                # against 6 ms sealed). Small writes are left to Milvus' own flushing.
                self._call("flush", self.name)
            stale = [r["pk"] for r in old_rows if r["pk"] not in new_pks]
            for i in range(0, len(stale), IN_BATCH):
                self._call("delete", self.name, filter=f"pk in {literal(stale[i:i + IN_BATCH])}")
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
            try:
                self._await_current(written=True)
            except CollectionReplaced as e:
                e.done = result  # made on the old version: its repeat may find it done
                raise
        return result

    def close(self) -> None:
        if self.client is not None:
            disconnect(self.address, self.client)
            self.client = None


# -- settings -------------------------------------------------------------------------------




# -- rows -----------------------------------------------------------------------------------












# -- filters -> Milvus boolean expressions ----------------------------------------------------


































