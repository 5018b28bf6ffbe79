"""Plain result objects returned by the library and printed by the front ends."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


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
class IndexReport:
    """What an index or upsert did: rows read and dropped, documents added/updated/... ."""

    rows_read: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    dropped_example_rows: dict[str, list[int]] = field(default_factory=dict)
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    texts_embedded: int = 0
    vectors_reused: int = 0
    truncated: int = 0
    skipped_near_duplicates: int = 0
    near_duplicates: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)  # after the commit: the change happened

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

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
        if self.skipped_near_duplicates:
            line += f"; {self.skipped_near_duplicates} near-duplicates skipped"
        if self.truncated:
            line += (f"; {self.truncated} texts are longer than the model reads and were truncated"
                     " (consider --chunk)")
        return line
