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

from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from . import __version__
from .cleaning import CleaningOptions
from .encoders.base import EncoderSettings
from .store.base import check_manifest
from .store.codec import codec

if TYPE_CHECKING:
    from .encoders.base import Encoder

FORMAT_VERSION = 1
STORE_KEYS = ("milvus", "building")  # written by a store for itself, not carried to another


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
    calibration: dict[str, Any] | None = None
    version: int = 1
    adapter: dict[str, Any] | None = None  # the current version's adapter: neartext.versions
    search: dict[str, Any] | None = None  # its ranking settings (mode, fusion, alpha), if tuned
    history: list[dict[str, Any]] = field(default_factory=list)
    migrated: dict[str, Any] | None = None  # {"from": address, "date": ...}
    extra: dict[str, Any] = field(default_factory=dict)

    # -- building and (de)serializing ---------------------------------------------------------

    @classmethod
    def new(cls, encoder: Encoder, name: str, *, index: str = "auto", chunk: int | None = None,
            overlap: int = 0, cleaning: CleaningOptions | None = None,
            source: dict[str, Any] | None = None, precision: str = "float32") -> Manifest:
        """The manifest of a new collection built with ``encoder`` (called ``name``)."""
        return cls(
            dim=encoder.dim,
            metric="cosine" if encoder.settings.normalize else "dot",
            model=ModelInfo(name, encoder.fingerprint,
                            encoder.settings.to_dict() | {"model": name}),
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            neartext_version=__version__, index=index, precision=codec(precision, 1).precision,
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
        return cls(model=ModelInfo(m["name"], m["fingerprint"], dict(m["settings"])),
                   extra=d, **kw)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name == "extra":
                continue
            v = getattr(self, f.name)
            out[f.name] = v.to_dict() if isinstance(v, ModelInfo) else v
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

    def cleaning_options(self) -> CleaningOptions:
        return CleaningOptions(**self.cleaning)

    @property
    def chunk_size(self) -> int | None:
        return int(self.chunking["size"]) if self.chunking else None

    @property
    def chunk_overlap(self) -> int:
        return int(self.chunking.get("overlap", 0)) if self.chunking else 0
