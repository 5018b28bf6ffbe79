"""Which store serves an address: the one place that decides, keyed by the address kind.

Everything that depends on where a collection lives (opening, creating, asking whether one
exists, building all-or-nothing, staying connected across several steps, a local copy, size on
disk) is asked of the address's :class:`StoreKind`. ``Collection``, ``migrate``, ``reindex`` and
the exports never branch on the kind themselves.

Example:
    >>> from neartext.data.address import parse_address
    >>> kind_of(parse_address("feedback/")).name
    'local'
    >>> store_exists(parse_address("/no/such/dir"))
    False
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

from neartext.data.address import Address, parse_address
from neartext.store.base import Store
from neartext.store.local import LOCAL
from neartext.store.milvus import MILVUS


class StoreKind(Protocol):
    """What a backend provides for its addresses."""

    name: str
    #: whether the collection's local state (ratings, adapters, fine-tuned models) lives in
    #: the store's own directory, and so must go along when a new version is swapped in
    state_with_store: bool

    def open(self, address: Address) -> Store:
        """Open the collection at ``address``; ``CollectionNotFound`` if there is none."""
        ...

    def create(self, address: Address, manifest: dict[str, Any],
               options: dict[str, Any] | None = None) -> Store:
        """An empty store with ``manifest`` (``options``: backend settings such as Milvus'
        index and search parameters; refused by backends that have none)."""
        ...

    def exists(self, address: Address) -> bool: ...

    def building(self, address: Address) -> AbstractContextManager[Address]:
        """Around the build of a new collection: yields where to build it, which becomes the
        collection at ``address`` only if the block completes."""
        ...

    def connected(self, address: Address) -> AbstractContextManager[None]:
        """Around several operations on one address (keeps an embedded server running)."""
        ...

    def beside(self, address: Address, what: str) -> Address:
        """Where a new version of the collection at ``address`` is built (``what``: the
        operation), to be swapped in; the one a killed run left, if any."""
        ...

    def remove(self, address: Address) -> None:
        """Delete what was built at an address :meth:`beside` gave."""
        ...

    def swap(self, store: Store, beside: Address, keep_previous: bool = False) -> None:
        """Make the collection built at ``beside`` current in the place of ``store``'s, whose
        writes the caller holds (:meth:`Store.hold_writes`)."""
        ...

    def copy_to_directory(self, address: Address, into: Path) -> Path:
        """A consistent local copy of the collection in ``into`` (for exports)."""
        ...

    def bytes_on_disk(self, address: Address) -> int | None:
        """Size on this machine's disk, or None where the store is elsewhere."""
        ...


def kind_of(address: Address) -> StoreKind:
    """The backend of ``address`` (Milvus' is imported only when asked for: an extra)."""
    if address.kind == "local":

        return LOCAL

    return MILVUS


def open_store(address: str | Path | Address) -> Store:
    a = parse_address(address)
    return kind_of(a).open(a)


def create_store(address: Address, manifest: dict[str, Any],
                 options: dict[str, Any] | None = None) -> Store:
    return kind_of(address).create(address, manifest, options)


def store_exists(address: str | Path | Address) -> bool:
    """Whether a collection is at ``address`` (a directory or a Milvus collection)."""
    a = parse_address(address)
    return kind_of(a).exists(a)


def building(address: Address) -> AbstractContextManager[Address]:
    return kind_of(address).building(address)


def connected(address: str | Path | Address) -> AbstractContextManager[None]:
    """Around several operations on one address: a Milvus address stays connected between
    them; nothing for a directory."""
    a = parse_address(address)
    return kind_of(a).connected(a)
