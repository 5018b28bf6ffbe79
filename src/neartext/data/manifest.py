"""The manifest: what built a collection (model, settings, source columns) and what was learned
about it since (a calibrated threshold, its versions). Stored by the store as JSON; above the store
it is this typed object, the one place that knows its keys.

Example:
    >>> m = Manifest.from_dict("x", {"dim": 384, "metric": "cosine", "created": "2026-01-01",
    ...     "neartext_version": "0.1.0", "cleaning": {},
    ...     "model": {"name": "all-MiniLM-L6-v2", "fingerprint": "ab12", "settings": {}}})
    >>> m.encoder_settings().model, m.chunk_size, m.to_dict()["index"]
    ('all-MiniLM-L6-v2', None, 'auto')
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timezone
from typing import Any, Protocol

from neartext.data.cleaning import CleaningOptions
from neartext.data.corpus import text_fields
from neartext.data.encoder_settings import EncoderSettings
from neartext.data.ranking import Ranking
from neartext.data.results import Calibration
from neartext.errors import CorruptCollection, InputError
from neartext.version import __version__

FORMAT_VERSION = 1
#: how a local collection may keep its vectors (neartext.store.codec encodes them)
PRECISIONS = ("float32", "float16", "int8")
STORE_KEYS = ("milvus", "building")  # written by a store for itself, not carried to another


_REQUIRED: dict[str, type | tuple[type, ...]] = {
    "dim": int, "metric": str, "model": dict, "cleaning": dict, "created": str,
    "neartext_version": str}
_REQUIRED_MODEL: dict[str, type] = {"name": str, "fingerprint": str, "settings": dict}


def check_manifest(where: object, manifest: Any) -> dict[str, Any]:
    """``manifest`` if it holds what neartext reads from it, else a
    :class:`~neartext.errors.CorruptCollection` naming the field at fault."""
    def bad(what: str) -> CorruptCollection:
        return CorruptCollection(f"{where}: damaged manifest: {what}")

    if not isinstance(manifest, dict):
        raise bad(f"expected a JSON object, found {type(manifest).__name__}")
    for key, typ in _REQUIRED.items():
        if not isinstance(manifest.get(key), typ) or isinstance(manifest.get(key), bool):
            raise bad(f"'{key}' is missing or not of type {getattr(typ, '__name__', typ)}")
    if manifest["dim"] < 1:
        raise bad(f"'dim' is {manifest['dim']}")
    for key, typ in _REQUIRED_MODEL.items():
        if not isinstance(manifest["model"].get(key), typ):
            raise bad(f"'model.{key}' is missing or not of type {typ.__name__}")
    return manifest


def check_precision(precision: str) -> str:
    """``precision`` if it is one of :data:`PRECISIONS`; an InputError naming them otherwise."""
    if precision not in PRECISIONS:
        raise InputError(f"unknown vector precision {precision!r}; choose one of: "
                         f"{', '.join(PRECISIONS)}")
    return precision


class Built(Protocol):
    """What a new manifest records of the encoder that builds the collection."""

    @property
    def dim(self) -> int: ...

    @property
    def fingerprint(self) -> str: ...

    @property
    def settings(self) -> EncoderSettings: ...


@dataclass
class AdapterInfo:
    """A version's adapter (:mod:`neartext.algo.adapters`): its ``file`` (in the collection's
    state directory, e.g. ``adapters/v2.npz``, or absolute), ``kind`` and ``side``; ``details``
    keeps what was measured of it (metrics, the data it learned from). Stored flat."""

    file: str
    kind: str
    side: str = "query"
    created: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AdapterInfo:
        d = dict(data)
        return cls(str(d.pop("file")), str(d.pop("kind", "linear")),
                   str(d.pop("side", "query")), d.pop("created", None), d)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"file": self.file, "kind": self.kind, "side": self.side}
        if self.created is not None:
            out["created"] = self.created
        return {**out, **self.details}

    @property
    def space(self) -> str | None:
        """The space its version's stored vectors are in: this adapter's file when it maps
        the documents too (``side`` both), else None (the encoder's own)."""
        return self.file if self.side == "both" else None


@dataclass
class VersionRecord:
    """What the history keeps of an earlier version: its number, model (name, fingerprint,
    settings), adapter, ranking and calibrated threshold, and when it was replaced."""

    version: int
    model: str | None = None
    fingerprint: str | None = None
    settings: dict[str, Any] | None = None
    adapter: AdapterInfo | None = None
    search: Ranking | None = None
    threshold: float | None = None
    replaced: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> VersionRecord:
        d = dict(data)
        adapter, search = d.pop("adapter", None), d.pop("search", None)
        return cls(int(d.pop("version", 0)), d.pop("model", None), d.pop("fingerprint", None),
                   d.pop("settings", None), AdapterInfo.from_dict(adapter) if adapter else None,
                   Ranking.from_dict(search) if search else None, d.pop("threshold", None),
                   d.pop("replaced", None), d)

    def to_dict(self) -> dict[str, Any]:
        out = {"version": self.version, "model": self.model, "fingerprint": self.fingerprint,
               "settings": self.settings,
               "adapter": self.adapter.to_dict() if self.adapter else None,
               "search": self.search.to_dict() if self.search else None,
               "threshold": self.threshold}
        if self.replaced is not None:
            out["replaced"] = self.replaced
        return {**out, **self.extra}


@dataclass
class ModelInfo:
    """The collection's model: its name (built-in or path), vector fingerprint and settings."""

    name: str
    fingerprint: str
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "fingerprint": self.fingerprint,
                "settings": dict(self.settings)}


@dataclass
class Manifest:
    """A collection's manifest. Keys this class does not know (a newer neartext's, a store's
    own) are kept in ``extra`` and written back unchanged."""

    dim: int
    metric: str
    model: ModelInfo
    created: str
    neartext_version: str
    format: int = FORMAT_VERSION
    index: str = "auto"
    precision: str = "float32"  # how the local store keeps vectors: neartext.store.codec
    chunking: dict[str, int] | None = None  # {"size": words, "overlap": words}
    cleaning: dict[str, Any] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)  # {"text": [columns], "id": column}
    threshold: float | None = None
    calibration: Calibration | None = None
    version: int = 1
    adapter: AdapterInfo | None = None  # the current version's adapter
    search: Ranking | None = None  # its ranking, if tuned (else the default: semantic)
    history: list[VersionRecord] = field(default_factory=list)  # the earlier versions
    migrated: dict[str, Any] | None = None  # {"from": address, "date": ...}
    extra: dict[str, Any] = field(default_factory=dict)

    # -- building and (de)serializing ---------------------------------------------------------

    @classmethod
    def new(cls, encoder: Built, name: str, *, index: str = "auto", chunk: int | None = None,
            overlap: int = 0, cleaning: CleaningOptions | None = None,
            source: dict[str, Any] | None = None, precision: str = "float32") -> Manifest:
        """The manifest of a new collection built with ``encoder`` (called ``name``)."""
        return cls(
            dim=encoder.dim,
            metric="cosine" if encoder.settings.normalize else "dot",
            model=ModelInfo(name, encoder.fingerprint,
                            encoder.settings.to_dict() | {"model": name}),
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            neartext_version=__version__, index=index, precision=check_precision(precision),
            chunking={"size": chunk, "overlap": overlap} if chunk else None,
            cleaning=dict(vars(cleaning or CleaningOptions())), source=dict(source or {}))

    @classmethod
    def from_dict(cls, where: object, data: Any) -> Manifest:
        """Parse a stored manifest; :class:`~neartext.errors.CorruptCollection` naming the
        field at fault when it lacks what neartext reads."""
        d = dict(check_manifest(where, data))
        known = {f.name for f in fields(cls)} - {"extra"}
        m = d.pop("model")
        kw = {k: d.pop(k) for k in list(d) if k in known}
        if kw.get("search") is not None:
            kw["search"] = Ranking.from_dict(kw["search"])
        if kw.get("adapter") is not None:
            kw["adapter"] = AdapterInfo.from_dict(kw["adapter"])
        if kw.get("calibration") is not None:
            kw["calibration"] = Calibration(**kw["calibration"])
        kw["history"] = [VersionRecord.from_dict(h) for h in kw.get("history") or []]
        return cls(model=ModelInfo(m["name"], m["fingerprint"], dict(m["settings"])),
                   extra=d, **kw)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name == "extra":
                continue
            v = getattr(self, f.name)
            if f.name == "history":
                v = [h.to_dict() for h in v]
            out[f.name] = v.to_dict() if hasattr(v, "to_dict") else v
        return {**out, **self.extra}

    def portable(self) -> Manifest:
        """A copy without the keys a store keeps for itself (Milvus' index settings, its build
        flag): what another store is created with by ``migrate``."""
        return replace(self, model=replace(self.model, settings=dict(self.model.settings)),
                       extra={k: v for k, v in self.extra.items() if k not in STORE_KEYS})

    # -- what the rest of neartext asks of it --------------------------------------------------

    def encoder_settings(self, model: str | None = None) -> EncoderSettings:
        """The settings that give this collection's vectors; ``model`` names where to load the
        model from when it is not the recorded name (an MLflow artifact, a moved directory)."""
        s = dict(self.model.settings)
        s["model"] = model if model is not None else self.model.name
        return EncoderSettings(**s)

    def record(self, replaced: str | None = None) -> VersionRecord:
        """This version as the history keeps it (``replaced``: when another replaced it)."""
        return VersionRecord(self.version, self.model.name, self.model.fingerprint,
                             dict(self.model.settings), self.adapter, self.search,
                             self.threshold, replaced)

    def details(self) -> dict[str, Any]:
        """What was measured of the current version (its adapter's, else its ranking's)."""
        return dict(self.adapter.details if self.adapter else self.ranking().details)

    def ranking(self) -> Ranking:
        """The version's ranking: as tuned, else the default (semantic)."""
        return self.search or Ranking()

    def text_fields(self) -> list[str]:
        """The text columns the documents keep as fields (:func:`~neartext.data.corpus.text_fields`
        of the columns it was built from), in order."""
        columns = self.source.get("text") or []
        return text_fields([columns] if isinstance(columns, str) else columns)

    def calibrate(self, cal: Calibration) -> None:
        """Use the threshold ``cal`` chose from labeled pairs (``mine``, ``dedup`` and
        ``paraphrases`` then use it by default)."""
        self.threshold = cal.threshold
        self.calibration = cal

    def cleaning_options(self) -> CleaningOptions:
        return CleaningOptions(**self.cleaning)

    @property
    def chunk_size(self) -> int | None:
        return int(self.chunking["size"]) if self.chunking else None

    @property
    def chunk_overlap(self) -> int:
        return int(self.chunking.get("overlap", 0)) if self.chunking else 0


def next_version(m: Manifest) -> int:
    """The number a new version of the collection ``m`` describes gets: one above every number
    it has used (numbers are never reused, even after a rollback)."""
    return max([m.version, *(h.version for h in m.history)]) + 1
