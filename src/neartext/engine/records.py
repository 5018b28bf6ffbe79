"""A collection's version records: what its manifest says of the current version and the
earlier ones (``history``), and where their adapters' files are (``adapters/vN.npz`` in the
collection's state directory, never rewritten). What :class:`neartext.collection.Collection`
reads to search as its current version; promoting and rolling back are
:mod:`neartext.ops.versions`.

Example:
    >>> vector_space(AdapterInfo("adapters/v2.npz", "linear", "both")), vector_space(None)
    ('adapters/v2.npz', None)
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from neartext.algo.adapters import Adapter
from neartext.algo.ranker import RANKERS
from neartext.data.manifest import AdapterInfo, Manifest, VersionRecord

ADAPTERS = "adapters"
CANDIDATE = "candidate.npz"
#: the state directory's folders of files that versions name (adapters, learned rankers): never
#: rewritten, and carried along wherever the collection goes (migrate, reindex, MLflow export)
VERSION_FILES = (ADAPTERS, RANKERS)


def now() -> str:
    """The time a record is stamped with (UTC, seconds)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def adapter_file(state: Path, version: int) -> Path:
    """Where version ``version``'s adapter is kept in the state directory ``state``."""
    return state / ADAPTERS / f"v{version}.npz"


def replaced_record(m: Manifest) -> VersionRecord:
    """What the history keeps of the version ``m`` holds, stamped with the time another
    replaces it."""
    return m.record(replaced=now())


def vector_space(adapter: AdapterInfo | None) -> str | None:
    """The space a version's stored vectors are in: its both-side adapter's file, else None
    (the encoder's own).

    >>> vector_space(AdapterInfo("adapters/v2.npz", "linear", "both")), vector_space(None)
    ('adapters/v2.npz', None)
    """
    return adapter.space if adapter else None


def between_spaces(current: Adapter | None, target: Adapter | None
                   ) -> Callable[[np.ndarray], np.ndarray]:
    """The map of stored vectors from ``current``'s space to ``target``'s (None, or a
    query-side adapter: the encoder's own)."""

    def move(v: np.ndarray) -> np.ndarray:
        if current is not None and current.documents_too:
            v = current.invert(v)
        if target is not None and target.documents_too:
            v = target.apply(v)
        return v

    return move


def load_adapter(state: Path, m: Manifest) -> Adapter | None:
    """The adapter of the version ``m`` holds (its file in the state directory ``state``), None
    without one; checked against the model's fingerprint, so an adapter trained on another
    model's vectors is refused."""
    if not m.adapter:
        return None
    return Adapter.load(state / m.adapter.file, m.model.fingerprint)  # absolute stays


