"""Which version of a collection is current, and which encoder serves it, as one process
sees it.

A long-lived process (the service, the bot) keeps a collection open while other processes
promote versions, tune the ranking or calibrate; :class:`VersionState` adopts what they stored
(:meth:`VersionState.refresh`), changes the manifest without overwriting theirs
(:meth:`VersionState.update_manifest`), and hands out the manifest and adapter of one version
together (:meth:`VersionState.current`).

Example::

    col.update_manifest(lambda m: setattr(m, "threshold", 0.8))
    manifest, adapter = col.current()
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np

from neartext.algo.adapters import Adapter
from neartext.data.address import Address
from neartext.data.manifest import Manifest
from neartext.encoders import Encoder
from neartext.engine.building import checked_encoder
from neartext.engine.query_encoder import cached_query_encoder
from neartext.engine.records import load_adapter
from neartext.store import Store

T = TypeVar("T")


class VersionState:
    """The manifest of a collection as this process knows it, kept in step with the store
    (other processes promote, tune and calibrate), and the current version's adapter: the
    part of :class:`neartext.collection.Collection` that knows which version is current."""

    address: Address
    path: Path
    store: Store
    manifest: Manifest
    _manifest_stamp: object
    _adapter: tuple[tuple[int, str], Adapter | None] | None

    def _read_state(self) -> None:
        """Read the manifest as stored now (on open, and after a new version was swapped in)."""
        self._manifest_stamp = self.store.manifest_stamp()
        self.manifest = Manifest.from_dict(self.address, self.store.read_manifest())
        self._adapter = None

    @property
    def adapter(self) -> Adapter | None:
        """The current version's query-side adapter (:mod:`neartext.ops.versions`), if any;
        applied to query vectors by every search."""
        return self.current()[1]

    def current(self) -> tuple[Manifest, Adapter | None]:
        """The current version's manifest and adapter, taken together: a search that ranks
        with one pair never mixes the ranking of one version with the adapter of another,
        whatever another thread or process promotes meanwhile."""
        m = self.manifest
        key = (m.version, repr(m.adapter))
        cached = self._adapter
        if cached is None or cached[0] != key:
            cached = (key, load_adapter(self.path, m))
            self._adapter = cached
        return m, cached[1]

    def to_stored_space(self, vectors: np.ndarray,
                        version: tuple[Manifest, Adapter | None] | None = None) -> np.ndarray:
        """Document vectors from the encoder (or brought by rows) as the stored ones are:
        mapped by the current version's both-side adapter (:mod:`neartext.algo.adapters`), if any;
        ``version``: one taken by :meth:`current` (a long write maps every batch alike)."""
        _, adapter = version or self.current()
        if adapter is None or not adapter.documents_too:
            return vectors
        return adapter.apply(vectors)

    def forget_adapter(self) -> None:
        """Read the adapter again on next use (the manifest changed)."""
        self._adapter = None

    def save_manifest(self) -> None:
        """Store :attr:`manifest` (after changing it) with the store's atomic write. A change
        that must not overwrite another process's goes through :meth:`update_manifest`."""
        self.store.write_manifest(self.manifest.to_dict())
        self._manifest_stamp = self.store.manifest_stamp()

    def refresh(self) -> bool:
        """Adopt the manifest as another process stored it since this one read it (a new
        version, ranking or threshold), so a long-lived process (the service, the bot) serves
        what was promoted elsewhere; True if it changed. Cheap when nothing changed (one
        ``stat`` of the manifest; on Milvus one read a second at most).

        A manifest of other vectors (a ``reindex`` swapped in a re-embedded collection with
        another model) is not adopted: this process still reads the collection it opened,
        and serves it until it opens the collection again.
        """
        stamp = self.store.manifest_stamp()
        if stamp == self._manifest_stamp:
            return False
        new = Manifest.from_dict(self.address, self.store.read_manifest())
        self._manifest_stamp = stamp
        old = self.manifest
        if self.store.replaced() or (new.model.fingerprint, new.dim) != (
                old.model.fingerprint, old.dim):
            return False  # the manifest of another database (a reindex or remap swapped it)
        changed = new.to_dict() != old.to_dict()
        self.manifest = new
        return changed

    def update_manifest(self, change: Callable[[Manifest], T]) -> T:
        """Apply ``change`` to the manifest as stored now and store the result, with other
        processes' manifest writes kept out meanwhile (so neither overwrites the other's);
        returns what ``change`` returns. Nothing is stored if ``change`` raises.

        >>> col.update_manifest(lambda m: setattr(m, "threshold", 0.8))  # doctest: +SKIP
        """
        with self.store.manifest_lock():
            self._manifest_stamp = None
            self.refresh()
            draft = Manifest.from_dict(self.address, self.manifest.to_dict())
            out = change(draft)
            self.store.write_manifest(draft.to_dict())
            self.manifest = draft
            self._manifest_stamp = self.store.manifest_stamp()
        return out


class EncoderState:
    """Which encoder this process uses for a collection: its model, loaded on first use and
    checked against the manifest, or one given (:meth:`use_encoder`); queries may be encoded
    by the model's ONNX export instead (:attr:`query_encoder`). Part of
    :class:`neartext.collection.Collection`.

    Example::

        col.use_encoder(shared_encoder)      # one loaded model for several collections
        vecs = col.query_encoder.encode(["refund please"], kind="query")
    """

    address: Address
    path: Path
    manifest: Manifest
    _encoder: Encoder | None
    _query_encoder: Encoder | None

    @property
    def encoder(self) -> Encoder:
        """The collection's encoder, loaded on first use and checked against the manifest."""
        if self._encoder is None:
            self._encoder = checked_encoder(self.address, self.manifest, None)
        return self._encoder

    @property
    def query_encoder(self) -> Encoder:
        """What encodes queries: the model once loaded, else its ONNX export cached beside the
        collection (no torch: :mod:`neartext.engine.query_encoder`), else the model."""
        if self._encoder is None and self._query_encoder is None:
            self._query_encoder = cached_query_encoder(self.path, self.manifest)
        return self._encoder or self._query_encoder or self.encoder

    def use_encoder(self, encoder: str | Encoder) -> None:
        """Use ``encoder`` (one already loaded, shared with other collections, or where to load
        the model from); ``ModelMismatch`` if it gives other vectors than the collection's."""
        self._encoder = checked_encoder(self.address, self.manifest, encoder)

