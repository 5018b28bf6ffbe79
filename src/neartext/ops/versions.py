"""A collection's versions: every promoted model state (the base model, an adapter on it, or a
re-embedding by ``reindex``) is a numbered version with its metrics; the one home for listing,
promoting and rolling back.

The manifest holds the current version (``version``, ``adapter``) and the earlier ones
(``history``: one record each). An adapter's weights live in ``adapters/vN.npz`` in the
collection's state directory and are never rewritten, so going back is one manifest write
(atomic): the searches of every process that opens the collection then use that version.

A both-side adapter also maps the documents: the stored vectors of its version are in its
space (:func:`vector_space`). Promoting one, or going from it to a version of another space,
maps every stored vector (the adapter's matrix, or its inverse; the encoder does not run) into
a copy swapped in whole (:func:`neartext.ops.reindex.remap`), so a reader sees one version or the
other, never a mix.

Example:
    >>> from neartext.ops.versions import list_versions, rollback     # doctest: +SKIP
    >>> [v["version"] for v in list_versions(col)]                 # doctest: +SKIP
    [1, 2]
    >>> rollback(col)["version"]                                   # doctest: +SKIP
    1
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from neartext.algo.adapters import Adapter
from neartext.data.manifest import AdapterInfo, Manifest, VersionRecord, next_version
from neartext.data.ranking import Ranking
from neartext.encoders import EncoderSettings, load_encoder
from neartext.engine.records import (
    ADAPTERS,
    CANDIDATE,
    adapter_file,
    between_spaces,
    load_adapter,
    now,
    replaced_record,
    vector_space,
)
from neartext.errors import CollectionBusy, InputError
from neartext.ops.reindex import reindex, remap

__all__ = ["ADAPTERS", "CANDIDATE", "between_spaces", "keep_candidate", "list_versions", "promote",
           "replaced_record", "rollback", "vector_space", "version_view"]

if TYPE_CHECKING:
    from neartext.collection import Collection

def _in_space(col: Collection, space: str | None, change: Callable[[Manifest], Any]
              ) -> Callable[[Manifest], Any]:
    """``change``, refused if the stored vectors left ``space`` meanwhile (another process
    promoted or rolled back: the mapping computed from ``space`` would be wrong)."""

    def guarded(m: Manifest) -> Any:
        if vector_space(m.adapter) != space:
            raise CollectionBusy(f"{col.address}: version {m.version} became current "
                                 "meanwhile; nothing changed: run it again")
        return change(m)

    return guarded


def version_view(col: Collection, spec: str | int, *, in_place: bool = True
                 ) -> tuple[str, Manifest, Adapter | None]:
    """A version to search or evaluate as, without making it current: ``current``; ``base``
    (the model alone, semantic ranking); a version number (``2`` or ``v2``); or an adapter file
    (``.npz``, e.g. ``adapters/candidate.npz``, with the current ranking). Returns its label,
    a manifest with that version's adapter and ranking, and the adapter.

    >>> label, m, adapter = version_view(col, "v1")               # doctest: +SKIP
    >>> col.search_many(["refund"], version=(m, adapter))         # doctest: +SKIP

    ``in_place``: the view ranks this collection's stored documents, so a version whose
    documents' vectors are in another space (a both-side adapter's) than the stored ones is
    refused; without it (another corpus, embedded anew) any version goes.
    """

    m = col.manifest
    text = str(spec).strip()
    if text == "current":
        now, adapter = col.current()
        return f"v{now.version} (current)", now, adapter
    if text == "base":
        if in_place:
            _same_space(col, None, "the base model")
        return "base model", dataclasses.replace(m, adapter=None, search=None), None
    number = text[1:] if text[:1] in "vV" else text
    if number.isdecimal():  # (not isdigit: "²" is a digit int() cannot read)
        records = {h.version: h for h in m.history}
        records[m.version] = m.record()
        record = records.get(int(number))
        if record is None:
            known = ", ".join(str(v) for v in sorted(records))
            raise InputError(f"{col.address}: there is no version {number}; versions: {known}")
        if record.fingerprint != m.model.fingerprint:
            raise InputError(f"{col.address}: version {number} used model "
                             f"{record.model}, whose vectors were replaced by a "
                             "re-embedding; it cannot be searched here")
        if in_place:
            _same_space(col, vector_space(record.adapter), f"version {number}")
        view = dataclasses.replace(m, version=int(number), adapter=record.adapter,
                                   search=record.search)
        current = " (current)" if int(number) == m.version else ""
        return f"v{number}{current}", view, load_adapter(col.path, view)
    path = Path(text)
    if path.suffix != ".npz":
        raise InputError(f"{text!r}: give 'current', 'base', a version number (e.g. v2) or "
                         "an adapter file (.npz)")
    if not path.is_file() and (col.path / path).is_file():
        path = col.path / path
    adapter = Adapter.load(path, m.model.fingerprint)
    info = AdapterInfo(str(path), adapter.kind, adapter.side)
    if in_place:
        _same_space(col, vector_space(info), str(path))
    return path.name, dataclasses.replace(m, adapter=info), adapter


def _same_space(col: Collection, space: str | None, what: str) -> None:
    """An :class:`InputError` if ``what`` ranks documents whose vectors are in another space
    than the stored ones (a both-side adapter's): it can be searched once it is current."""
    now = vector_space(col.manifest.adapter)
    if space != now:
        which = f"those of {now}, a both-side adapter" if now else "the encoder's own"
        raise InputError(f"{col.address}: {what} ranks documents by vectors in another space "
                         f"than the stored ones ({which}); make it current to search it "
                         "(rollback or promote)")


def promote(col: Collection, adapter: Adapter | None, details: dict[str, Any],
            search: Ranking | Mapping[str, Any] | None = None, *,
            measured_against: int | None = None) -> int:
    """Make ``adapter`` (None: no adapter) with the ranking settings ``search`` the current
    version (a new number); returns it. ``details`` (metrics, data) are kept with it.

    ``measured_against``: the version the caller compared with; if another process promoted
    or rolled back meanwhile, nothing changes and :class:`CollectionBusy` says so (the gate
    measured against a version that is no longer current)."""

    # a ranking as stored (a mapping: ``{"mode": "hybrid", "fusion": "rrf"}``) is taken too
    ranking = Ranking.from_dict(search) if isinstance(search, Mapping) else search
    space = vector_space(col.manifest.adapter)
    # the current adapter again (with other ranking settings): its file, and its space, stay
    same = adapter is not None and adapter is col.adapter and col.manifest.adapter is not None
    kept_file = col.manifest.adapter.file if same and col.manifest.adapter else None
    new_space = space if same else (
        vector_space(AdapterInfo("?", adapter.kind, adapter.side)) if adapter else None)

    def change(m: Manifest) -> int:
        if measured_against is not None and m.version != measured_against:
            raise CollectionBusy(
                f"{col.address}: version {m.version} became current while this run measured "
                f"against version {measured_against}; nothing promoted: run it again")
        number = next_version(m)
        file = None
        if adapter is not None and kept_file is not None:
            if (m.adapter.file if m.adapter else None) != kept_file:
                raise CollectionBusy(f"{col.address}: version {m.version} became current "
                                     "meanwhile; nothing promoted: run it again")
            file = kept_file
        elif adapter is not None:
            path = adapter_file(col.path, number)
            path.parent.mkdir(parents=True, exist_ok=True)
            adapter.save(path)
            file = f"{ADAPTERS}/{path.name}"
        m.history = [*m.history, replaced_record(m)]
        m.version = number
        m.adapter = None if adapter is None or file is None else AdapterInfo(
            file, adapter.kind, adapter.side, now(), dict(details))
        m.search = ranking.setting() if ranking else None
        if m.adapter is None and details:  # settings only: their measurements go with them
            m.search = m.ranking().with_details(details)
        if space != new_space:
            m.threshold = None  # a calibrated threshold belongs to the old space's cosines
        return number

    if space == new_space:
        number = col.update_manifest(change)
        col.forget_adapter()
        return number
    return int(_remap(col, between_spaces(col.adapter, adapter), _in_space(col, space, change)))


def _remap(col: Collection, move: Callable[[np.ndarray], np.ndarray],
           change: Callable[[Manifest], Any]) -> Any:
    """A new version whose stored vectors are moved to another space (see the module docs);
    ``col`` is opened again on it (unless :attr:`Collection.shared`: its server does that)."""

    out = remap(col.address, move, change)
    if not col.shared:
        col.reopen()
    return out


def keep_candidate(col: Collection, adapter: Adapter) -> Path:
    """Keep an adapter that was not promoted (``adapters/candidate.npz``, replaced each time)."""
    path = col.path / ADAPTERS / CANDIDATE
    path.parent.mkdir(parents=True, exist_ok=True)
    adapter.save(path)
    return path


def list_versions(col: Collection) -> list[dict[str, Any]]:
    """Every version, oldest first: number, model, adapter (kind and metrics) and whether it
    is the current one."""
    seen: dict[int, dict[str, Any]] = {}
    for h in col.manifest.history:
        seen[h.version] = {**h.to_dict(), "current": False}
    seen[col.manifest.version] = {**col.manifest.record().to_dict(), "current": True}
    return [seen[k] for k in sorted(seen)]


def rollback(col: Collection, to: int | None = None) -> dict[str, Any]:
    """Go back to version ``to`` (default: the one before the current). Going to or from a
    both-side adapter's version maps the stored vectors (see the module docs); going to a
    version of another model (before ``improve --full`` or ``reindex``) re-embeds the documents
    with that model (:func:`neartext.ops.reindex.reindex`: swapped in whole). Returns the version
    now current."""
    col.refresh()
    space = vector_space(col.manifest.adapter)
    number, record = _earlier(col, col.manifest, to)  # what is wrong is said before any work
    if record.fingerprint != col.manifest.model.fingerprint:
        _reembed_back(col, number, record)
        return col.manifest.record().to_dict()

    def change(m: Manifest) -> None:
        number, record = _earlier(col, m, to)
        if vector_space(record.adapter) != vector_space(m.adapter):
            m.threshold = record.threshold  # its own space's calibrated one
        m.history = [h for h in m.history if h.version != number] + [replaced_record(m)]
        m.version, m.adapter, m.search = number, record.adapter, record.search

    info = record.adapter
    if vector_space(info) == space:
        col.update_manifest(change)
        col.forget_adapter()
    else:
        goal = Adapter.load(col.path / info.file, col.manifest.model.fingerprint) \
            if info else None
        _remap(col, between_spaces(col.adapter, goal), _in_space(col, space, change))
    return col.manifest.record().to_dict()


def _earlier(col: Collection, m: Manifest, to: int | None) -> tuple[int, VersionRecord]:
    """The version to go back to (``to``, else the one before the current) and its record;
    an :class:`InputError` naming what is wrong."""
    earlier = {h.version: h for h in m.history}
    if to is None:
        before = [v for v in earlier if v < m.version]
        if not before:
            raise InputError(f"{col.address}: version {m.version} is the first; nothing to "
                             "go back to")
        to = max(before)
    if to == m.version:
        raise InputError(f"{col.address}: version {to} is already the current one")
    record = earlier.get(to)
    if record is None:
        known = ", ".join(str(v) for v in sorted([*earlier, m.version]))
        raise InputError(f"{col.address}: there is no version {to}; versions: {known}")
    if record.adapter:  # its weights must still load before anything changes
        Adapter.load(col.path / record.adapter.file, record.fingerprint)
    return to, record


def _reembed_back(col: Collection, number: int, record: VersionRecord) -> None:
    """Make version ``number``, of another model than the current one, current again: the
    documents re-embedded with its model (which must still give its vectors), its adapter
    (query-side) and ranking restored."""

    model = str(record.model)
    if vector_space(record.adapter):
        raise InputError(f"{col.address}: version {number} is a both-side adapter on model "
                         f"{model}, whose vectors were replaced by a re-embedding; go back to "
                         "the version before it")
    now = col.manifest.model.settings
    kept = record.settings or {"normalize": now.get("normalize", True),
                               "batch_size": now.get("batch_size", 32)}
    settings = EncoderSettings(**{**kept, "model": model})
    if load_encoder(settings).fingerprint != record.fingerprint:
        raise InputError(f"{col.address}: the model of version {number} ({model}) no longer "
                         "gives that version's vectors (its files changed); nothing changed")
    reindex(col.address, settings, gate=lambda new: {
        "version": number, "adapter": record.adapter, "search": record.search,
        "threshold": record.threshold})
    if not col.shared:
        col.reopen()
