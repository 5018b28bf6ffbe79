"""Cleaning and chunking of corpus records before they are embedded.

Cleaning drops rows that would only add noise (empty texts, placeholder junk such as ``N/A``,
exact duplicate texts) and reports why each was dropped. Normalization (HTML tags, URLs,
whitespace) is optional. Chunking splits long texts into overlapping word windows.

Example:
    >>> from neartext.data.corpus import Record
    >>> from neartext.data.cleaning import CleaningOptions, clean
    >>> kept, report = clean([Record("a", "hi"), Record("b", " "), Record("c", "hi")])
    >>> [r.id for r in kept], report.dropped
    (['a'], {'empty': 1, 'duplicate text': 1})
"""

from __future__ import annotations

import hashlib
import html
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from neartext.data.corpus import Record
from neartext.errors import InputError

DEFAULT_JUNK = (
    "nan", "none", "null", "n/a", "na", "-", "--", "—", "?", "undefined", "#n/a", "tbd", "todo",
    "lorem ipsum", ".", "...",
)  # fmt: skip
_TAG = re.compile(r"<[^>]{1,500}>")
_URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
_SPACE = re.compile(r"\s+")
_WORD = re.compile(r"\S+")


@dataclass
class CleaningOptions:
    """What :func:`clean` does. Defaults: drop empty, junk and duplicate texts; no normalization."""

    enabled: bool = True
    drop_duplicates: bool = True
    junk_values: tuple[str, ...] = DEFAULT_JUNK
    strip_html: bool = False
    strip_urls: bool = False
    collapse_whitespace: bool = False

    @property
    def normalizes(self) -> bool:
        """Whether :func:`normalize` changes texts under these options."""
        return self.strip_html or self.strip_urls or self.collapse_whitespace

    def after_normalizing(self) -> CleaningOptions:
        """These options for texts already normalized with them (by Ray's reading tasks):
        normalizing twice is not always the same as once (``&amp;lt;`` unescapes twice)."""
        return replace(self, strip_html=False, strip_urls=False, collapse_whitespace=False)


@dataclass
class CleaningReport:
    """Counts of dropped rows by reason, with a few example rows for each reason."""

    read: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[int | str]] = field(default_factory=dict)

    def drop(self, reason: str, row: int | str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1
        ex = self.examples.setdefault(reason, [])
        if len(ex) < 5:
            ex.append(row)

    @property
    def kept(self) -> int:
        return self.read - sum(self.dropped.values())

    def to_dict(self) -> dict:
        return {"read": self.read, "kept": self.kept, "dropped": dict(self.dropped),
                "example_rows": {k: list(v) for k, v in self.examples.items()}}


def normalize(text: str, options: CleaningOptions) -> str:
    """Apply the optional normalizations of ``options`` to one text."""
    if options.strip_html:
        text = html.unescape(_TAG.sub(" ", text))
    if options.strip_urls:
        text = _URL.sub(" ", text)
    if options.normalizes:
        text = _SPACE.sub(" ", text).strip()
    return text


def clean(
    records: Iterable[Record], options: CleaningOptions | None = None, *,
    report: CleaningReport | None = None, seen: set[bytes] | None = None
) -> tuple[list[Record], CleaningReport]:
    """Return the records worth embedding and a report of what was dropped and why. A corpus
    cleaned in parts passes the same ``report`` and ``seen`` (digests of the texts kept so far)
    to every part: duplicates are found across the parts, as in one call."""
    options = options or CleaningOptions()
    report = report if report is not None else CleaningReport()
    junk = {j.casefold() for j in options.junk_values}
    seen = seen if seen is not None else set()
    kept: list[Record] = []
    for r in records:
        report.read += 1
        if not options.enabled:
            kept.append(r)
            continue
        r.text = normalize(r.text, options)
        stripped = r.text.strip()
        if not stripped:
            report.drop("empty", r.where)
        elif stripped.casefold() in junk:
            report.drop("junk value", r.where)
        elif options.drop_duplicates and (digest := _digest(stripped)) in seen:
            report.drop("duplicate text", r.where)
        else:
            if options.drop_duplicates:
                seen.add(digest)
            kept.append(r)
    return kept, report


def _digest(text: str) -> bytes:
    """16 bytes standing for a text among those seen (a corpus' texts need not be kept)."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def chunk_spans(text: str, size: int, overlap: int = 0) -> list[tuple[int, int]]:
    """Character spans of overlapping windows of ``size`` words (``overlap`` words shared).

    >>> chunk_spans("a b c d e", 2, 1)
    [(0, 3), (2, 5), (4, 7), (6, 9)]
    """
    if size < 1 or overlap < 0 or overlap >= size:
        raise InputError(f"--chunk must be at least 1 and --overlap from 0 to chunk - 1 "
                         f"(got --chunk {size} --overlap {overlap})")
    words = [(m.start(), m.end()) for m in _WORD.finditer(text)]
    if len(words) <= size:
        return [(0, len(text))]
    spans = []
    step = size - overlap
    for i in range(0, len(words), step):
        window = words[i : i + size]
        spans.append((window[0][0], window[-1][1]))
        if i + size >= len(words):
            break
    return spans
