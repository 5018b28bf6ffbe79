""":class:`~neartext.store.factory.StoreKind` of Milvus addresses: build, beside, swap (by
rewriting the manifest row, which names the passages collection), copy to a local directory."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from neartext.data.address import Address
from neartext.data.manifest import Manifest
from neartext.errors import Unsupported
from neartext.store.base import Store, copy_documents
from neartext.store.local import LOCAL
from neartext.store.milvus.connection import connect, disconnect, held
from neartext.store.milvus.layout import BESIDE_INFIX, META_SUFFIX, renamed
from neartext.store.milvus.store import DROP_GRACE_S, MilvusStore


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
        return renamed(address, found[0] if found else stem + uuid.uuid4().hex[:8])

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
        """A local collection in ``into`` with the same documents and vectors (nothing is
        re-embedded), at float32 as Milvus keeps them."""
        out = into / "collection"
        src = self.open(address)
        try:
            manifest = Manifest.from_dict(address, src.read_manifest()).portable()
            manifest.precision = "float32"
            dst = LOCAL.create(Address("local", str(out), path=out), manifest.to_dict())
            try:
                copy_documents(src, dst)
            finally:
                dst.close()
        finally:
            src.close()
        return out

    def bytes_on_disk(self, address: Address) -> int | None:
        return None


MILVUS = MilvusKind()
