"""Plain result objects returned by the library and printed by the front ends."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any


class AsDict:
    """``to_dict()`` of a result dataclass: its fields as plain JSON-ready values."""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = asdict(self)  # type: ignore[call-overload]
        return out


class Warns:
    """A report's warnings (its ``warnings`` list): each recorded and logged (the CLI shows
    logged warnings on stderr, one line each)."""

    warnings: list[str]

    def warn(self, message: str | None) -> None:
        """Record a warning (and log it); None records nothing."""
        if message:
            logging.getLogger("neartext").warning(message)
            self.warnings.append(message)


def reported_cosine(value: float) -> float:
    """A cosine of stored (float32) vectors as reports give it: within [-1, 1] and to 6
    decimals, the precision float32 vectors carry (a text's cosine with itself came out as
    1.000000238418579).

    >>> reported_cosine(1.000000238418579), reported_cosine(0.938921332359314)
    (1.0, 0.938921)
    """
    return round(min(1.0, max(-1.0, float(value))), 6)


@dataclass
class SearchResult:
    """One document found by a search. ``passage`` is the best-matching span when chunking."""

    id: str
    text: str
    score: float
    metadata: dict[str, Any] = field(default_factory=dict)
    passage: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if self.passage is None:
            d.pop("passage")
        return d


@dataclass
class IndexReport(Warns, AsDict):
    """What an index or upsert did: rows read and dropped, documents added/updated/... ."""

    rows_read: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    dropped_example_rows: dict[str, list[int]] = field(default_factory=dict)
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    kept_absent: int = 0  # a re-index without pruning: stored documents its corpus lacks, kept
    texts_embedded: int = 0
    vectors_reused: int = 0
    vectors_given: int = 0  # rows that brought their own vector (stored, not encoded)
    truncated: int = 0
    skipped_near_duplicates: int = 0
    near_duplicates: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)  # after the commit: the change happened
    # the vector index after its search setting was tuned on given queries (tune_queries)
    index: dict[str, Any] | None = None

    def merge(self, other: IndexReport) -> IndexReport:
        """This report with ``other``'s counts added (the parts of one build)."""
        for name in ("rows_read", "added", "updated", "unchanged", "removed", "texts_embedded",
                     "vectors_reused", "vectors_given", "truncated", "skipped_near_duplicates"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.near_duplicates += other.near_duplicates
        self.warnings += other.warnings
        self.seconds += other.seconds
        return self

    def count_kept_absent(self, stored: int) -> None:
        """Record how many of the ``stored`` documents (after a re-index that kept what its
        corpus lacks) are not in the corpus; 0 when they were removed."""
        self.kept_absent = max(0, stored - self.added - self.updated - self.unchanged)

    def add_cleaning(self, cleaning: Any) -> None:
        """Take rows read and dropped from a ``cleaning.CleaningReport``."""
        self.rows_read = cleaning.read
        self.dropped = cleaning.dropped
        self.dropped_example_rows = cleaning.examples

    def summary(self) -> str:
        dropped = sum(self.dropped.values())
        why = ", ".join(f"{n} {r}" for r, n in self.dropped.items())
        parts = [
            f"{self.rows_read} rows read",
            f"{dropped} dropped" + (f" ({why})" if why else ""),
            f"{self.added} added", f"{self.updated} updated", f"{self.unchanged} unchanged",
            f"{self.removed} removed", f"{self.texts_embedded} texts embedded",
        ]
        line = ", ".join(parts) + f" in {self.seconds:.1f}s"
        if self.kept_absent:
            line += (f"; {self.kept_absent} stored document{'s' if self.kept_absent > 1 else ''} "
                     "not in the corpus kept (--prune removes them)")
        if self.vectors_given:
            line += f"; {self.vectors_given} vectors given with the rows"
        if self.skipped_near_duplicates:
            line += f"; {self.skipped_near_duplicates} near-duplicates skipped"
        if self.truncated:
            line += (f"; {self.truncated} texts are longer than the model reads and were truncated"
                     " (consider --chunk)")
        if self.index and self.index.get("tuned_on"):
            ix = self.index
            setting = (f"ef_search {ix['ef_search']}" if "ef_search" in ix
                       else f"{ix.get('lists_searched')} lists searched" if "lists" in ix
                       else "exact search")
            line += (f"; search tuned on {ix['tuned_on']}: {setting}, recall@10 "
                     f"{ix.get('recall_at_10')}")
        elif self.index is not None:
            line += ("; the tuning queries are kept: the search is exact now, a graph built "
                     "later is tuned on them")
        return line


@dataclass
class Calibration(AsDict):
    """A threshold chosen from labeled pairs (``Collection.calibrate``): the ``rule`` (best F1,
    or precision at least some value), what it reaches, on which pairs, and when."""

    threshold: float
    rule: str
    precision: float
    recall: float
    pairs: int
    source: str
    average_precision: float
    date: str


@dataclass
class CollectionInfo(AsDict):
    """What ``neartext info`` shows (``Collection.info``)."""

    path: str
    store: str
    documents: int
    passages: int
    model: str
    fingerprint: str
    dim: int
    metric: str
    index: dict[str, Any]
    chunking: dict[str, int] | None
    prefixes: dict[str, str | None]
    pooling: str | None
    max_seq_length: int | None
    metadata_fields: list[str]
    scripts: dict[str, float]
    keyword_index: bool
    source: dict[str, Any]
    threshold: float | None
    created: str
    neartext_version: str
    bytes_on_disk: int | None


@dataclass
class MlflowExport:
    """An MLflow model made of a collection: saved at ``output``, or logged (``run_id``,
    ``model_uri``)."""

    documents: int
    model: str
    output: str | None = None
    logged: bool = False
    run_id: str | None = None
    model_uri: str | None = None
    mode: str = "search"

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass
class OnnxExport(AsDict):
    """An ONNX model directory: its files, the cosine parity with the torch model per file."""

    output: str
    base: str
    files: dict[str, str]
    parity: dict[str, dict[str, float]]
    warnings: list[str] = field(default_factory=list)


@dataclass
class StaticExport(AsDict):
    """A static (model2vec) model directory distilled from ``base``."""

    output: str
    base: str
    dim: int
    vocabulary: int

