"""A collection's versions: every promoted model state (the base model, an adapter on it, or a
re-embedding by ``reindex``) is a numbered version with its metrics; the one home for listing,
promoting and rolling back.

The manifest holds the current version (``version``, ``adapter``) and the earlier ones
(``history``: one record each). An adapter's weights live in ``adapters/vN.npz`` in the
collection's state directory and are never rewritten, so going back is one manifest write
(atomic): the searches of every process that opens the collection then use that version.

Example:
    >>> from neartext.versions import list_versions, rollback     # doctest: +SKIP
    >>> [v["version"] for v in list_versions(col)]                 # doctest: +SKIP
    [1, 2]
    >>> rollback(col)["version"]                                   # doctest: +SKIP
    1
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .adapters import Adapter
from .errors import CollectionBusy, InputError

if TYPE_CHECKING:
    from .collection import Collection
    from .manifest import Manifest

ADAPTERS = "adapters"
CANDIDATE = "candidate.npz"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def adapter_file(col: Collection, version: int) -> Path:
    return col.path / ADAPTERS / f"v{version}.npz"


def ranking(search: dict[str, Any] | None) -> dict[str, Any]:
    """The ranking settings of a version (mode, and for hybrid fusion and alpha)."""
    s = search or {}
    out = {"mode": s.get("mode", "semantic")}
    if out["mode"] == "hybrid":
        out["fusion"] = s.get("fusion", "blend")
        if out["fusion"] == "blend":
            out["alpha"] = s.get("alpha")
        elif out["fusion"] == "learned":
            out["weights"] = s.get("weights")
    return out


def current_record(col: Collection) -> dict[str, Any]:
    """The current version as a history record."""
    return _record(col.manifest)


def _record(m: Manifest) -> dict[str, Any]:
    return {"version": m.version, "model": m.model.name, "fingerprint": m.model.fingerprint,
            "adapter": m.adapter, "search": m.search}


def load_adapter(col: Collection, manifest: Manifest | None = None) -> Adapter | None:
    """The adapter of the current version (or of ``manifest``'s), None without one; checked
    against the model's fingerprint, so an adapter trained on another model's vectors is
    refused."""
    m = manifest or col.manifest
    if not m.adapter:
        return None
    return Adapter.load(col.path / m.adapter["file"], m.model.fingerprint)  # absolute stays


def version_view(col: Collection, spec: str | int) -> tuple[str, Manifest, Adapter | None]:
    """A version to search or evaluate as, without making it current: ``current``; ``base``
    (the model alone, semantic ranking); a version number (``2`` or ``v2``); or an adapter file
    (``.npz``, e.g. ``adapters/candidate.npz``, with the current ranking). Returns its label,
    a manifest with that version's adapter and ranking, and the adapter.

    >>> label, m, adapter = version_view(col, "v1")               # doctest: +SKIP
    >>> col.search_many(["refund"], version=(m, adapter))         # doctest: +SKIP
    """
    import dataclasses

    m = col.manifest
    text = str(spec).strip()
    if text == "current":
        now, adapter = col.current()
        return f"v{now.version} (current)", now, adapter
    if text == "base":
        return "base model", dataclasses.replace(m, adapter=None, search=None), None
    number = text[1:] if text[:1] in "vV" else text
    if number.isdigit():
        records = {int(h.get("version", 0)): h for h in m.history}
        records[m.version] = current_record(col)
        record = records.get(int(number))
        if record is None:
            known = ", ".join(str(v) for v in sorted(records))
            raise InputError(f"{col.address}: there is no version {number}; versions: {known}")
        if record.get("fingerprint") != m.model.fingerprint:
            raise InputError(f"{col.address}: version {number} used model "
                             f"{record.get('model')}, whose vectors were replaced by a "
                             "re-embedding; it cannot be searched here")
        view = dataclasses.replace(m, version=int(number), adapter=record.get("adapter"),
                                   search=record.get("search"))
        current = " (current)" if int(number) == m.version else ""
        return f"v{number}{current}", view, load_adapter(col, view)
    path = Path(text)
    if path.suffix != ".npz":
        raise InputError(f"{text!r}: give 'current', 'base', a version number (e.g. v2) or "
                         "an adapter file (.npz)")
    if not path.is_file() and (col.path / path).is_file():
        path = col.path / path
    adapter = Adapter.load(path, m.model.fingerprint)
    info = {"file": str(path), "kind": adapter.kind, "side": adapter.side}
    return path.name, dataclasses.replace(m, adapter=info), adapter


def promote(col: Collection, adapter: Adapter | None, details: dict[str, Any],
            search: dict[str, Any] | None = None, *, measured_against: int | None = None) -> int:
    """Make ``adapter`` (None: no adapter) with the ranking settings ``search`` the current
    version (a new number); returns it. ``details`` (metrics, data) are kept with it.

    ``measured_against``: the version the caller compared with; if another process promoted
    or rolled back meanwhile, nothing changes and :class:`CollectionBusy` says so (the gate
    measured against a version that is no longer current)."""

    def change(m: Manifest) -> int:
        if measured_against is not None and m.version != measured_against:
            raise CollectionBusy(
                f"{col.address}: version {m.version} became current while this run measured "
                f"against version {measured_against}; nothing promoted: run it again")
        number = max([m.version, *(int(h.get("version", 0)) for h in m.history)]) + 1
        info = None
        if adapter is not None:
            path = adapter_file(col, number)
            path.parent.mkdir(parents=True, exist_ok=True)
            adapter.save(path)
            info = {"file": f"{ADAPTERS}/{path.name}", "kind": adapter.kind, "side": adapter.side}
        m.history = [*m.history, {**_record(m), "replaced": _now()}]
        m.version = number
        m.adapter = None if info is None else {**info, "created": _now(), **details}
        m.search = dict(search) if search else None
        if info is None and details:  # settings only: their measurements go with them
            m.search = {**(m.search or {"mode": "semantic"}), "details": details}
        return number

    number = col.update_manifest(change)
    col.forget_adapter()
    return number


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
        seen[int(h.get("version", 0))] = {**h, "current": False}
    seen[col.manifest.version] = {**current_record(col), "current": True}
    return [seen[k] for k in sorted(seen)]


def rollback(col: Collection, to: int | None = None) -> dict[str, Any]:
    """Go back to version ``to`` (default: the one before the current). Only versions of the
    current model's vectors can come back (an adapter or none); a version before a re-embedding
    needs ``reindex`` with its model. Returns the version now current."""

    def change(m: Manifest) -> None:
        nonlocal to
        earlier = {int(h.get("version", 0)): h for h in m.history}
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
        if record.get("fingerprint") != m.model.fingerprint:
            raise InputError(
                f"{col.address}: version {to} used model {record.get('model')}, whose vectors "
                "were replaced by a re-embedding; go back with 'neartext reindex' and that model")
        adapter = record.get("adapter")
        if adapter:  # its weights must still load before anything changes
            Adapter.load(col.path / adapter["file"], m.model.fingerprint)
        m.history = [h for h in m.history if int(h.get("version", 0)) != to] + [
            {**_record(m), "replaced": _now()}]
        m.version, m.adapter, m.search = to, adapter, record.get("search")

    col.update_manifest(change)
    col.forget_adapter()
    return current_record(col)
