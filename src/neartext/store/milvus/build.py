"""Creating a Milvus collection and its life until published: unfinished (not openable) while
built, dropped if the build fails, resumed by the next build of the same settings when it
stopped holding vectors.

Part of :class:`neartext.store.milvus.MilvusStore` (a mixin)."""

from __future__ import annotations

import contextlib
import json
import time
from typing import Any, TypeVar

from neartext.data.address import Address
from neartext.errors import CollectionExists, CollectionNotFound, StoreUnavailable
from neartext.store.base import StoreSettings
from neartext.store.milvus.connection import connect, disconnect, disk_full, load_pymilvus
from neartext.store.milvus.layout import BESIDE_INFIX, names_of, passages_name, resolve_settings, same_build
from neartext.store.milvus.rows import MAX_ID, MAX_VARCHAR

B = TypeVar("B", bound="Build")
BM25_PARAMS = {"bm25_k1": 1.2, "bm25_b": 0.75}  # SQLite FTS5's, used by the local store
INDEX_WAIT_S = 120.0  # an index of a new (empty) collection not built by then is an error


def create_indexed(client: Any, name: str, schema: Any, index_params: Any) -> None:
    """Create the Milvus collection ``name`` with ``index_params``, its indexes built, loaded.

    ``create_collection(..., index_params=...)`` would wait for each index with pymilvus'
    fixed half second before it first asks whether it is built (1.5 s of every build and
    version swap here, for indexes of empty collections that are built at once); this asks
    after 5 ms, then at doubling intervals up to that half second."""
    client.create_collection(name, schema=schema, consistency_level="Strong")
    client.create_index(name, index_params, sync=False)
    for param in index_params:
        index = param.index_name or param.field_name
        pause, deadline = 0.005, time.monotonic() + INDEX_WAIT_S
        while (info := client.describe_index(name, index) or {}).get("state") != "Finished":
            if info.get("state") == "Failed" or time.monotonic() > deadline:
                raise StoreUnavailable(f"Milvus could not build the index of '{index}' in "
                                       f"{name} (state: {info.get('state')})")
            time.sleep(pause)
            pause = min(2 * pause, 0.5)
    client.load_collection(name)


class Build:
    """The build life cycle (see the module docs); what it needs of the store is declared here
    and provided by :class:`MilvusStore`."""

    _manifest: dict[str, Any]
    meta_name: str

    def __init__(self, address: Address, client: Any | None = None, *,
                 unfinished_ok: bool = False) -> None:
        raise NotImplementedError

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        raise NotImplementedError

    def count(self) -> int:
        raise NotImplementedError

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    @classmethod
    def exists(cls, address: Address) -> bool:
        """Whether a neartext collection is at ``address`` (its manifest's Milvus collection)."""
        return cls._taken(address)[names_of(address)[1]]

    @classmethod
    def check_free(cls, address: Address, client: Any | None = None) -> None:
        """:class:`CollectionExists` if a neartext collection, or any Milvus collection under one
        of the names a new one needs, is at ``address``."""
        name, meta = names_of(address)
        taken = cls._taken(address, client)
        if taken[meta]:
            raise CollectionExists(f"{address}: a collection already exists there")
        if taken[name]:
            raise CollectionExists(f"{address}: Milvus already has a collection '{name}' "
                                   "that is not a neartext collection; choose another name")

    @classmethod
    def _taken(cls, address: Address, client: Any | None = None) -> dict[str, bool]:
        """Which of the two Milvus collections named after ``address`` exist."""
        if client is not None:
            return {n: bool(client.has_collection(n)) for n in names_of(address)}
        own = connect(address)
        try:
            return cls._taken(address, own)
        finally:
            disconnect(address, own)

    @classmethod
    def create(
        cls: type[B], address: Address, manifest: dict[str, Any], *,
        index_params: dict[str, Any] | None = None, search_params: dict[str, Any] | None = None,
    ) -> B:
        """Create the Milvus collections for ``address`` with ``manifest``, or resume the
        unfinished build of the same settings left there; :class:`CollectionExists` if it is
        taken. ``index_params`` may hold ``metric_type`` and
        the index's build parameters (``M``, ``efConstruction``, ``nlist``); ``search_params``
        those of a search (``ef``, ``nprobe``)."""
        pm = load_pymilvus()
        assert address.name is not None
        conf = StoreSettings.of(address, manifest)
        settings = resolve_settings(address, conf.index, index_params or {},
                                    search_params or {})
        # "building" until finish_build(): an interrupted build never opens as a collection
        manifest = dict(manifest, milvus=settings, building=True)
        left = cls._unfinished_manifest(address)
        if left is not None:
            if same_build(left, manifest):  # resumed: its rows and staged vectors are reused
                store = cls(address, unfinished_ok=True)
                store.write_manifest(manifest)
                return store
            cls.drop(address)  # another build's: replaced
        client = connect(address)
        name, meta = names_of(address)
        try:
            cls.check_free(address, client)
        except CollectionExists:
            disconnect(address, client)
            raise
        dim = conf.dim
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
        # keyword search: neartext's stems of the text (neartext.data.lexical, as on the local
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
            create_indexed(client, meta, ms, mp)
            create_indexed(client, name, s, ip)
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
            if (full := disk_full(address, e, "creating the collection")) is not None:
                raise full from None
            raise StoreUnavailable(f"{address}: could not create the collection: "
                                   f"{str(e).strip().splitlines()[0]}") from None
        return cls(address, client, unfinished_ok=True)

    @staticmethod
    def drop(address: Address) -> None:
        """Delete the Milvus collections of ``address``: its manifest's, the passages it names,
        and what versions built beside it left (missing ones are ignored)."""
        name, meta = names_of(address)
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

    @classmethod
    def unfinished(cls, address: Address) -> bool:
        """Whether ``address`` holds a collection whose build never completed."""
        return cls._unfinished_manifest(address) is not None

    @classmethod
    def _unfinished_manifest(cls, address: Address) -> dict[str, Any] | None:
        try:
            store = cls(address, unfinished_ok=True)
        except CollectionNotFound:
            return None
        try:
            building = StoreSettings.of(address, store._manifest).building
            return dict(store._manifest) if building else None
        finally:
            store.close()

    @classmethod
    def reusable(cls, address: Address) -> bool:
        """Whether an unfinished build at ``address`` holds vectors a rerun can reuse: staged
        ones, or the rows of the parts it wrote."""
        try:
            store = cls(address, unfinished_ok=True)
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
