""":class:`~neartext.store.factory.StoreKind` of collections in a directory: built in
``<dir>.partial`` and renamed into place, new versions built beside and swapped in one step,
copied, measured.

Example:
    >>> from neartext.data.address import parse_address
    >>> LOCAL.beside(parse_address("/data/feedback"), "reindex").path.name
    'feedback.reindex'
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from neartext.data.address import Address
from neartext.errors import CollectionExists, CollectionNotFound, InputError
from neartext.store.base import Store
from neartext.store.local.index_cache import INDEX_FILE
from neartext.store.local.reuse import has_staged
from neartext.store.local.sqlite import copy_sqlite
from neartext.store.local.store import MANIFEST, LocalStore
from neartext.util.atomic import settle_swap, swap_dirs
from neartext.util.locking import exclusive, release_file


class LocalKind:
    """:class:`~neartext.store.factory.StoreKind` of directories."""

    name = "local"
    state_with_store = True  # ratings, adapters, models: in the collection's directory

    def beside(self, address: Address, what: str) -> Address:
        """Where a new version of the collection is built: ``<dir>.<what>`` next to it."""
        path = _path(address)
        settle_swap(path)  # what an interrupted swap left there is the old version, or the new
        scratch = path.with_name(f"{path.name}.{what}")
        return Address("local", str(scratch), path=scratch)

    def remove(self, address: Address) -> None:
        shutil.rmtree(_path(address), ignore_errors=True)

    def swap(self, store: Store, beside: Address, keep_previous: bool = False) -> None:
        """Put the directory built at ``beside`` in the place of ``store``'s (whose writes the
        caller holds) in one step (:func:`neartext.util.atomic.swap_dirs`: a kill at any point
        leaves the old version or the new one at the path); the old one goes to
        ``<dir>.previous``, kept with ``keep_previous``. Processes that had the old one open
        find it replaced."""
        assert isinstance(store, LocalStore)
        target = store.path
        swap_dirs(target, _path(beside), target.with_name(target.name + ".previous"),
                  keep_previous)

    def open(self, address: Address) -> LocalStore:
        path = _path(address)
        settle_swap(path)
        if not (path / MANIFEST).is_file():
            raise CollectionNotFound(f"{path}: no collection here; create one with "
                                     "'neartext index'")
        return LocalStore(path)

    def create(self, address: Address, manifest: dict[str, Any],
               options: dict[str, Any] | None = None) -> LocalStore:
        if options:
            raise InputError("--index-param and --search-param apply to Milvus collections")
        return LocalStore.create(_path(address), manifest)

    def exists(self, address: Address) -> bool:
        settle_swap(_path(address))
        return (_path(address) / MANIFEST).is_file()

    @contextlib.contextmanager
    def building(self, address: Address) -> Iterator[Address]:
        """Build in a scratch directory, ``<target>.partial``, that becomes ``target`` only if
        the block completes. One run at a time: the scratch directory is locked, and a second
        run is told who holds it (:class:`~neartext.errors.CollectionBusy`). Vectors an earlier
        run computed before it stopped stay there, and the next build reuses those that fit its
        model (:meth:`LocalStore.create`)."""
        target = _path(address)
        _check_target(target)
        tmp = target.with_name(target.name + ".partial")
        with exclusive(tmp, f"building {target}"):
            _check_target(target)  # again: the run that held the lock may just have finished
            try:
                yield Address("local", str(tmp), path=tmp)
            except BaseException:
                if not has_staged(tmp):  # nothing worth keeping for a rerun
                    release_file(tmp)
                    shutil.rmtree(tmp, ignore_errors=True)
                raise
            if target.exists():
                target.rmdir()
            release_file(tmp)
            tmp.rename(target)

    def connected(self, address: Address) -> contextlib.nullcontext[None]:
        return contextlib.nullcontext()

    def copy_to_directory(self, address: Address, into: Path) -> Path:
        """The manifest and index file copied, the database through SQLite's backup API (a
        writer in another process is no problem; the index is caught up on open)."""
        src = _path(address)
        out = into / "collection"
        out.mkdir(parents=True)
        for name in (MANIFEST, INDEX_FILE):
            if (src / name).is_file():
                shutil.copy2(src / name, out / name)
        copy_sqlite(src / "data.sqlite", out / "data.sqlite")
        return out

    def bytes_on_disk(self, address: Address) -> int | None:
        return sum(f.stat().st_size for f in _path(address).rglob("*") if f.is_file())


def _path(address: Address) -> Path:
    assert address.path is not None
    return address.path


def _check_target(target: Path) -> None:
    settle_swap(target)  # a collection an interrupted swap left aside is the one here
    if (target / MANIFEST).exists():
        raise CollectionExists(f"{target}: a collection already exists here")
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise CollectionExists(f"{target}: exists and is not an empty directory")
    if not target.parent.is_dir():
        raise InputError(f"{target.parent}: the parent directory does not exist")


LOCAL = LocalKind()
