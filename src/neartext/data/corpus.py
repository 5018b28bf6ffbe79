"""Read a corpus file into records: text, id and metadata, with row numbers for error messages.

Supported formats: ``.txt`` (a text per line), ``.csv`` / ``.tsv`` (delimiter from the extension
and the header line), ``.jsonl`` (an object per line) and ``.parquet``; the text formats are read
by :mod:`neartext.util.readers`.

Example:
    >>> from neartext.data.corpus import read_corpus
    >>> records = read_corpus("demo/feedback.csv", text=["text"], id_column="id")
    >>> records[0].id, sorted(records[0].metadata)[:2]
    ('fb-0191', ['link', 'platform'])
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from neartext.errors import CorpusFileNotFound, InputError
from neartext.util.optional import optional, parquet
from neartext.util.readers import delimited_rows, jsonl_values, lines, read_text
from neartext.util.validate import check_id, invalid_text_path

FORMATS = ("txt", "csv", "tsv", "jsonl", "parquet")
_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?")


@dataclass
class Record:
    """One row of a corpus: its id, the text to embed, the other columns, and where it came from."""

    id: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)
    row: int = 0  # 1-based line (txt, jsonl, csv) or row (parquet) in the source file
    # the row's own vector (a list or array), stored instead of encoding; not compared (arrays)
    vector: Any = field(default=None, compare=False)
    source: str = ""  # the file within a corpus directory ("" for a corpus of one file)

    @property
    def where(self) -> int | str:
        """The row for messages and reports: its number, with its file in a corpus directory."""
        return f"{self.source}:{self.row}" if self.source else self.row


def generated_id(text: str) -> str:
    """A stable id derived from the text, so re-reading a file gives the same ids."""
    return "t-" + hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


def detect_format(path: Path) -> str:
    """The corpus format from the file's suffix; an :class:`InputError` for unknown ones."""
    suffix = path.suffix.lower().lstrip(".")
    if suffix in ("jsonl", "ndjson"):
        return "jsonl"
    if suffix in FORMATS:
        return suffix
    spreadsheet = ("; save the sheet as CSV UTF-8 (comma delimited)"
                   if suffix in ("xlsx", "xls", "xlsm", "ods", "numbers") else "")
    raise InputError(f"{path}: unknown corpus format '.{suffix}'; use one of: .txt, .csv, .tsv, "
                     f".jsonl, .parquet{spreadsheet}")


def corpus_files(directory: Path) -> list[Path]:
    """The corpus files of a directory (any depth, by path; hidden ones and files of other
    formats left out); one line when there are none."""
    files = sorted(f for f in directory.rglob("*") if f.is_file()
                   and not any(part.startswith(".") for part in f.relative_to(directory).parts)
                   and f.suffix.lower().lstrip(".") in (*FORMATS, "ndjson"))
    if not files:
        raise InputError(f"{directory}: no corpus files in the directory (.txt, .csv, .tsv, "
                         ".jsonl, .parquet)")
    return files


# rows per batch when a build reads its corpus in batches (bounded memory; two are held at a
# time): 100,000 given 384-number vectors peaked at 520-580 MB in batches of 16,384 against
# 780-800 MB in batches of 50,000, in the same time
BATCH_ROWS = 16_384


def read_corpus(
    path: str | Path,
    text: Sequence[str] | None = None,
    id_column: str | None = None,
    *,
    encoding: str = "utf-8",
    join_with: str = "\n",
    vectors: str | None = None,
) -> list[Record]:
    """Read ``path`` (a file, or a directory of files read in order of their paths) into
    :class:`Record` objects.

    Args:
        path: the corpus file, or a directory of them (any of the formats, mixed).
        text: column(s) holding the text; several are joined with ``join_with`` and each also
            stays a metadata field of its own (a title shown apart, filtered). Default: a column
            named ``text`` if present, else the only column. Ignored for ``.txt``.
        id_column: column holding unique ids (across all files); default: ids generated from
            the text.
        encoding: the files' text encoding.
        join_with: separator placed between several text columns.
        vectors: a column holding each row's vector (a list of numbers; .jsonl and .parquet),
            stored instead of encoding the text (see :mod:`neartext.data.vectors`).

    Raises:
        CorpusFileNotFound: the path does not exist.
        InputError: unknown format or column, undecodable bytes, malformed JSON, duplicate ids;
            the file and row are named.
    """
    records = [r for batch in iter_corpus(path, text, id_column, encoding=encoding,
                                          join_with=join_with, vectors=vectors, unique=False)
               for r in batch]
    if id_column:
        _check_unique_ids(Path(path), records)
    return records


def iter_corpus(
    path: str | Path,
    text: Sequence[str] | None = None,
    id_column: str | None = None,
    *,
    encoding: str = "utf-8",
    join_with: str = "\n",
    vectors: str | None = None,
    batch_rows: int | None = None,
    unique: bool = True,
) -> Iterator[list[Record]]:
    """:func:`read_corpus` in batches of at most ``batch_rows`` records (None: a file at a
    time). A Parquet file is read that many rows at a time, each batch checked as it is read,
    so that a large corpus of vectors is never held whole; a text file (held whole as it is
    parsed) has all its rows checked before its first batch. With ``unique``, an id given twice
    is an error when its second row is read (naming both rows).

    >>> [len(b) for b in iter_corpus("demo/feedback.csv", ["text"], "id", batch_rows=100)]
    [100, 100, 47]
    """
    p = Path(path)
    ids = UniqueIds(p) if id_column and unique else None
    if p.is_dir():
        files = [(f, f.relative_to(p).as_posix()) for f in corpus_files(p)]
    else:
        files = [(p, "")]
    for f, name in files:
        for batch in _iter_file(f, text, id_column, encoding=encoding, join_with=join_with,
                                vectors=vectors, batch_rows=batch_rows):
            if name:
                for r in batch:
                    r.source = name
            if ids is not None:
                ids.add((r.id, r.where) for r in batch)
            yield batch


def _iter_file(
    path: Path,
    text: Sequence[str] | None = None,
    id_column: str | None = None,
    *,
    encoding: str = "utf-8",
    join_with: str = "\n",
    vectors: str | None = None,
    batch_rows: int | None = None,
) -> Iterator[list[Record]]:
    """One corpus file as batches of :class:`Record` objects (see :func:`read_corpus`); the
    file's columns are checked before the first batch.

    Raises:
        CorpusFileNotFound: the file does not exist.
        InputError: unknown format or column, undecodable bytes, malformed JSON.
    """
    p = Path(path)
    if not p.is_file():
        raise CorpusFileNotFound(f"{p}: no such file")
    fmt = detect_format(p)
    if fmt == "parquet":
        columns, row_batches = _parquet_batches(p, vectors, batch_rows)
    else:
        content = read_text(p, encoding)
        if not content.strip():
            raise InputError(f"{p}: the file is empty")
        if fmt == "txt":
            rows = [(i, {"text": line}) for i, line in enumerate(lines(content), 1)]
        elif fmt == "jsonl":
            rows = _jsonl_rows(p, content)
        else:
            rows = _csv_rows(p, content, "\t" if fmt == "tsv" else None)
        del content
        columns = _columns(rows)
        row_batches = iter([rows])
    text_cols = _text_columns(p, columns, text, fmt)
    if id_column is not None and id_column not in columns:
        raise InputError(
            f"{p}: unknown id column '{id_column}'; available columns: {', '.join(columns)}"
        )
    if vectors is not None:
        if fmt not in ("jsonl", "parquet"):
            raise InputError(f"{p}: vectors come in a list column of a .jsonl or .parquet file")
        if vectors not in columns:
            raise InputError(f"{p}: unknown vectors column '{vectors}'; available columns: "
                             f"{', '.join(columns)}")
    unit = "row" if fmt == "parquet" else "line"
    if fmt != "parquet":  # every row checked before the first batch (as the file is parsed)
        made = [_record(p, unit, row_no, row, text_cols, id_column, vectors, join_with)
                for rows in row_batches for row_no, row in rows]
        step = batch_rows or len(made) or 1
        for i in range(0, len(made), step):
            yield made[i:i + step]
        return
    records: list[Record] = []
    for rows in row_batches:  # a batch of rows read at a time: checked as read
        for row_no, row in rows:
            records.append(_record(p, unit, row_no, row, text_cols, id_column, vectors,
                                   join_with))
            if batch_rows and len(records) >= batch_rows:
                yield records
                records = []
    if records:
        yield records


def _record(p: Path, unit: str, row_no: int, row: dict[str, Any], text_cols: list[str],
            id_column: str | None, vectors: str | None, join_with: str) -> Record:
    """One row as a :class:`Record`, checked (errors name the file and row)."""
    # a row's vector is numbers (checked as an array where it is stored): not walked here
    bad = invalid_text_path({k: v for k, v in row.items() if k != vectors} if vectors else row)
    if bad is not None:  # JSON escapes and parquet strings can hold lone surrogates
        raise InputError(f"{p}: {unit} {row_no}: field '{bad}' is not valid Unicode text "
                         "(a lone surrogate)")
    for c in [*text_cols, *([id_column] if id_column else [])]:
        if isinstance(row.get(c), (dict, list)):
            kind = "an object" if isinstance(row[c], dict) else "a list"
            raise InputError(f"{p}: {unit} {row_no}: column '{c}' holds {kind}, not text")
    parts = [_as_text(row.get(c)) for c in text_cols]
    body = join_with.join(s for s in parts if s)
    fields = bool(text_fields(text_cols))
    meta = {k: v for k, v in row.items()
            if (fields or k not in text_cols) and k != id_column and k != vectors}
    for k, v in meta.items():
        if isinstance(v, list) and (n := vector_like(v)):
            raise InputError(
                f"{p}: {unit} {row_no}: column '{k}' holds a list of {n} numbers, which looks "
                f"like vectors: pass --vectors {k} --vectors-from MODEL to store them as the "
                f"rows' vectors, or drop the column (a metadata field holds at most "
                f"{METADATA_NUMBERS} numbers)")
    rid = _as_text(row.get(id_column)).strip() if id_column else ""
    if id_column and not rid:
        raise InputError(f"{p}: row {row_no}: empty id in column '{id_column}'")
    if rid:
        try:
            check_id(rid)
        except InputError as e:
            raise InputError(f"{p}: row {row_no}: {e}") from None
    vec = None
    if vectors is not None:
        if row.get(vectors) is None:
            raise InputError(f"{p}: {unit} {row_no}: no vector in column '{vectors}'")
        vec = as_vector(row[vectors], f"{p}: {unit} {row_no}: column '{vectors}'")
    return Record(rid or generated_id(body), body, meta, row_no, vec)


def _jsonl_rows(path: Path, content: str) -> list[tuple[int, dict[str, Any]]]:
    rows = []
    for i, obj in jsonl_values(path, content):
        if isinstance(obj, str):
            obj = {"text": obj}
        if not isinstance(obj, dict):
            raise InputError(
                f"{path}: line {i}: expected a JSON object or string, got {type(obj).__name__}"
            )
        rows.append((i, obj))
    return rows


def _csv_rows(path: Path, content: str, delimiter: str | None) -> list[tuple[int, dict]]:
    table = delimited_rows(path, content, delimiter)
    if not table:
        return []
    header = [h.strip() for h in table[0][1]]
    if len(set(header)) != len(header):
        dupes = sorted({h for h in header if header.count(h) > 1})
        raise InputError(f"{path}: line 1: repeated column names: {', '.join(dupes)}")
    rows = []
    for line, values in table[1:]:
        if len(values) > len(header):
            raise InputError(f"{path}: line {line}: {len(values)} fields, but the header has "
                             f"{len(header)}")
        rows.append((line, {h: _infer(v) for h, v in zip(header, values)}))
    if not rows:
        raise InputError(f"{path}: no rows below the header line")
    return rows


def _parquet_batches(path: Path, vectors: str | None, batch_rows: int | None
                     ) -> tuple[list[str], Iterator[list[tuple[int, dict]]]]:
    """A parquet file's columns, and its rows as dicts a batch at a time; the ``vectors``
    column, when it is a list column of numbers of one length without nulls, as rows of one
    float32 array per batch (a million 384-number vectors as Python floats took 12 GB; as an
    array they take 1.5 GB), otherwise as lists (whose problems are then named row by row)."""
    pq = parquet()
    pa = optional("pyarrow", "parquet")
    try:
        # buffered, not pre-buffered: pages are decoded as read, not a whole row group's
        # columns at once (200,000 rows of 384 numbers: 223 MB of memory instead of 518)
        f = pq.ParquetFile(path, buffer_size=1 << 20, pre_buffer=False)
        columns = list(f.schema_arrow.names)
        # (decoded 8,192 rows at a time: 50,000 rows of vectors at once took 0.5 GB)
        batches = f.iter_batches(batch_size=min(batch_rows or 8192, 8192))
    except Exception as e:  # pyarrow raises several unrelated types for bad files
        raise InputError(f"{path}: not a readable parquet file ({e})") from None

    def rows() -> Iterator[list[tuple[int, dict]]]:
        done = 0
        while True:
            try:
                batch = next(batches, None)
            except Exception as e:  # a damaged row group
                raise InputError(f"{path}: not a readable parquet file ({e})") from None
            if batch is None:
                return
            table = pa.Table.from_batches([batch])
            matrix = _vector_matrix(table, vectors) if vectors in table.column_names else None
            if matrix is not None:
                table = table.drop_columns([vectors])
            dicts = table.to_pylist()
            del table, batch
            if matrix is not None:
                for row, v in zip(dicts, matrix):
                    row[vectors] = v
            yield [(done + i, row) for i, row in enumerate(dicts, 1)]
            done += len(dicts)

    return columns, rows()


def _vector_matrix(table: Any, column: str | None) -> np.ndarray | None:
    """``column`` of ``table`` as an (n, dim) float32 array, or None where it is not a list
    column of numbers of one length without nulls."""
    pa = optional("pyarrow", "parquet")
    col = table.column(column).combine_chunks()
    kind = col.type
    if not (pa.types.is_list(kind) or pa.types.is_large_list(kind)
            or pa.types.is_fixed_size_list(kind)):
        return None
    if not (pa.types.is_floating(kind.value_type) or pa.types.is_integer(kind.value_type)):
        return None
    if col.null_count or len(col) == 0:
        return None
    values = col.flatten()
    if values.null_count or len(values) % len(col):
        return None
    dim = len(values) // len(col)
    if not pa.types.is_fixed_size_list(kind):
        offsets = np.asarray(col.offsets)
        if not (np.diff(offsets) == dim).all():
            return None
    return np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.float32).reshape(-1, dim)


def _columns(rows: list[tuple[int, dict]]) -> list[str]:
    seen: dict[str, None] = {}
    for _, row in rows:
        for k in row:
            seen.setdefault(k, None)
    return list(seen)


def text_fields(columns: Sequence[str]) -> list[str]:
    """The text columns a document keeps as fields of its own: all of them when there are
    several (a title shown apart, filtered; the searched text is their join), else none.

    >>> text_fields(["title", "description"]), text_fields(["text"])
    (['title', 'description'], [])
    """
    return list(columns) if len(columns) > 1 else []


def _text_columns(path: Path, columns: list[str], text: Sequence[str] | None, fmt: str) -> list[str]:
    if fmt == "txt":
        return ["text"]
    if not columns:
        return list(text or ["text"])
    if not text:
        if "text" in columns:
            return ["text"]
        if len(columns) == 1:
            return columns
        raise InputError(
            f"{path}: which column holds the text? pass --text; available columns: "
            f"{', '.join(columns)}"
        )
    unknown = [c for c in text if c not in columns]
    if unknown:
        raise InputError(
            f"{path}: unknown text column '{unknown[0]}'; available columns: {', '.join(columns)}"
        )
    return list(text)


def _check_unique_ids(path: Path, records: list[Record]) -> None:
    check_unique_ids(path, ((r.id, r.where) for r in records))


def check_unique_ids(path: Path, ids: Iterable[tuple[str, int | str]]) -> None:
    """One error naming the first duplicate ids and both of their rows, from ``(id, where)``
    pairs (``where``: a row number, or ``file:row`` in a directory)."""
    UniqueIds(path).add(ids)


class UniqueIds:
    """The ids of a corpus read so far, each with its first row: :meth:`add` the ids of each
    part of a corpus read in parts, and an id given twice anywhere is one error naming both
    rows (as :func:`check_unique_ids` does for a corpus read at once)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.first: dict[str, int | str] = {}

    def add(self, ids: Iterable[tuple[str, int | str]]) -> None:
        dupes: list[str] = []
        for i, where in ids:
            if i in self.first:
                dupes.append(f"'{i}' (rows {self.first[i]} and {where})")
            else:
                self.first[i] = where
        if dupes:
            more = f" and {len(dupes) - 3} more" if len(dupes) > 3 else ""
            raise InputError(f"{self.path}: duplicate ids: {', '.join(dupes[:3])}{more}")

    def __contains__(self, i: str) -> bool:
        return i in self.first


def _infer(value: str) -> Any:
    """CSV cells: '' -> None, plain numbers -> int/float (no leading zeros), else the string."""
    if value == "":
        return None
    if _NUMBER.fullmatch(value):
        return float(value) if "." in value else int(value)
    return value


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value != value:  # NaN from parquet/pandas
        return ""
    return str(value)


ID_LIKE = ("id", "_id", "doc_id", "docid")
METADATA_NUMBERS = 32  # a longer list of numbers in a metadata field is vectors, not a field


def vector_like(value: Any) -> int:
    """The length of ``value`` if it is a list of more than :data:`METADATA_NUMBERS` numbers
    (vectors that would be stored as metadata, as JSON), else 0.

    >>> vector_like([0.1] * 384), vector_like([1, 2, 3]), vector_like(["a"] * 40)
    (384, 0, 0)
    """
    if not isinstance(value, list | tuple) or len(value) <= METADATA_NUMBERS:
        return 0
    numbers = all(isinstance(x, int | float) and not isinstance(x, bool) for x in value)
    return len(value) if numbers else 0


def id_column_hint(path: str | Path, records: Sequence[Record], id_column: str | None
                   ) -> str | None:
    """When no id column was given but the file has a column named like one (``id``, ``_id``,
    ``doc_id``) whose values are unique and never empty: a line saying to pass it."""
    if id_column is not None or not records:
        return None
    for name in records[0].metadata:
        if name.lower() not in ID_LIKE:
            continue
        values = [_as_text(r.metadata.get(name)).strip() for r in records]
        if all(values) and len(set(values)) == len(values):
            return (f"{path}: column '{name}' looks like ids; pass --id {name} (without it, ids "
                    f"are made from the text and '{name}' is kept as metadata)")
    return None


def as_vector(value: Any, where: str) -> np.ndarray:
    """One vector from a list of numbers (or an array); an :class:`InputError` naming ``where``
    otherwise."""
    if isinstance(value, (list, tuple)) and None in value:
        raise InputError(f"{where}: the vector has no value at position {value.index(None) + 1}")
    try:  # (an array the file reader made of float32 stays one: no copy per row)
        v = np.asarray(value, dtype=np.float32 if isinstance(value, np.ndarray)
                       and value.dtype == np.float32 else np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{where}: the vector is not a list of numbers") from None
    if v.ndim != 1 or v.size == 0:
        raise InputError(f"{where}: the vector must be a flat list of numbers (got shape "
                         f"{v.shape})")
    return v
