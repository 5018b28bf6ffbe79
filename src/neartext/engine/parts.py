"""What the engine's functions ask of a collection: its address and state directory, its
store and manifest, its encoder, its current version, and how document vectors are stored.

:class:`neartext.collection.Collection` is one (it passes itself); the engine never imports it,
so the layers stay one way: the façade calls the engine, never the reverse.

Example::

    def count_words(col: Parts) -> int:
        return sum(len(t.split()) for t in col.store.iter_texts())
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from neartext.algo.adapters import Adapter
from neartext.data.address import Address
from neartext.data.manifest import Manifest
from neartext.encoders import Encoder
from neartext.store.base import Store

if TYPE_CHECKING:
    from neartext.engine.compute import RayCompute

Version = tuple[Manifest, Adapter | None]


class Parts(Protocol):
    """A collection as the engine sees it."""

    address: Address
    path: Path  # where its local state lives (ratings, adapters, caches)
    store: Store
    manifest: Manifest
    compute: RayCompute | None  # where its new texts are embedded (Ray), or None: here

    @property
    def encoder(self) -> Encoder:
        """Its encoder, loaded on first use."""
        ...

    @property
    def query_encoder(self) -> Encoder:
        """What encodes its queries (an ONNX export of the model when one is cached)."""
        ...

    def current(self) -> Version:
        """The current version's manifest and adapter, taken together."""
        ...

    def to_stored_space(self, vectors: np.ndarray, version: Version | None = None
                        ) -> np.ndarray:
        """Document vectors from the encoder as the stored ones are (a both-side adapter's
        mapping applied)."""
        ...
