"""One reader for every text file neartext takes: corpora, evaluation pairs, training data,
query lists. Errors name the file and the line.

- Decoding: the given encoding (a BOM is dropped); bytes that are not valid, an unknown encoding
  or a binary file are one clear error each.
- Lines are split on ``\\n`` only (``\\r\\n`` too): U+2028, U+0085 and the other characters
  ``str.splitlines`` also breaks on are legal inside JSON strings and CSV fields.
- JSON Lines: one value per line; malformed or absurdly nested JSON names its line.
- Delimited files: ``.tsv`` is tab-separated; for other files the delimiter is the one of
  ``, ; TAB |`` that the header line holds most of (outside quotes), so free text in the rows
  cannot mislead it. Comma/semicolon files follow RFC 4180 quoting; tab-separated files are read
  without quoting unless that leaves rows with a wrong number of fields (STS Benchmark has bare
  quotes inside sentences, and rows with extra fields; a quoted multi-line TSV cell still works:
  quotes are honoured when reading without them leaves a row short of fields and reading with them
  does not).

Example:
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "pairs.csv"
    >>> _ = p.write_text("query,doc_id\\nпривет, мир,1\\n", encoding="utf-8")
    >>> delimiter_for(p, read_text(p))
    ','
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from neartext.errors import CorpusFileNotFound, InputError

DELIMITERS = ",;\t|"


def read_text(path: str | Path, encoding: str = "utf-8") -> str:
    """The file's text; :class:`InputError` naming the file (and line) when it cannot be."""
    p = Path(path)
    if not p.is_file():
        raise CorpusFileNotFound(f"{p}: no such file")
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise InputError(f"{p}: cannot be read ({e.strerror or e})") from None
    try:
        "".encode(encoding)
    except LookupError:
        raise InputError(f"unknown encoding '{encoding}'") from None
    if b"\x00" in raw[:8192] and not encoding.lower().replace("-", "").startswith("utf16"):
        raise InputError(f"{p}: looks like a binary file (NUL bytes), not text")
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise InputError(
            f"{p}: line {line}: bytes that are not valid {encoding} "
            f"(0x{raw[e.start]:02x} at byte {e.start}); pass the file's encoding, "
            "e.g. --encoding cp1251") from None
    return text.removeprefix("\ufeff")


def lines(content: str) -> list[str]:
    """``content`` split on newlines only (a trailing ``\\r`` dropped, no empty last line)."""
    out = content.split("\n")
    if out and out[-1] == "":
        out.pop()
    return [ln[:-1] if ln.endswith("\r") else ln for ln in out]


def jsonl_values(path: Path, content: str) -> list[tuple[int, Any]]:
    """``(line number, value)`` of each non-blank line of a JSON Lines file."""
    rows = []
    for i, line in enumerate(lines(content), 1):
        if not line.strip():
            continue
        try:
            rows.append((i, json.loads(line)))
        except json.JSONDecodeError as e:
            raise InputError(f"{path}: line {i}: malformed JSON ({e.msg})") from None
        except RecursionError:
            raise InputError(f"{path}: line {i}: JSON nested too deeply") from None
    return rows


def delimiter_for(path: Path, content: str) -> str:
    """``\\t`` for ``.tsv``; otherwise the delimiter the header line holds most of."""
    if path.suffix.lower() == ".tsv":
        return "\t"
    header = content.split("\n", 1)[0]
    counts: dict[str, int] = dict.fromkeys(DELIMITERS, 0)
    quoted = False
    for ch in header:
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch in counts:
            counts[ch] += 1
    best = max(DELIMITERS, key=lambda d: counts[d])
    return best if counts[best] else ","


def delimited_rows(path: Path, content: str, delimiter: str | None = None
                   ) -> list[tuple[int, list[str]]]:
    """``(line number, fields)`` of each non-empty row of a CSV/TSV text (the header included)."""
    delimiter = delimiter or delimiter_for(path, content)
    if delimiter == "\t":
        plain = [(i, ln.split("\t")) for i, ln in enumerate(lines(content), 1) if ln != ""]
        if '"' not in content or _complete(plain):
            return plain
        quoted = _quoted_rows(path, content, delimiter)
        return quoted if _complete(quoted) else plain
    return _quoted_rows(path, content, delimiter)


def _complete(rows: list[tuple[int, list[str]]]) -> bool:
    """No row has fewer fields than the first (extra trailing fields are allowed)."""
    return not rows or all(len(f) >= len(rows[0][1]) for _, f in rows)


def _quoted_rows(path: Path, content: str, delimiter: str) -> list[tuple[int, list[str]]]:
    rows: list[tuple[int, list[str]]] = []
    reader = csv.reader(io.StringIO(content, newline=""), delimiter=delimiter)
    start = 1
    try:
        for values in reader:
            if values:
                rows.append((start, values))
            start = reader.line_num + 1
    except csv.Error as e:
        raise InputError(f"{path}: line {start}: malformed CSV ({e})") from None
    return rows
