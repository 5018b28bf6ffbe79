"""Write result tables (.csv, .jsonl, .parquet) atomically: a temp file renamed into place."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from neartext.errors import InputError
from neartext.util.atomic import staged_dir, staged_file
from neartext.util.optional import arrow, parquet

TABLE_FORMATS = (".csv", ".jsonl", ".parquet")


def check_output_path(path: str | Path, suffixes: Sequence[str] = tuple(TABLE_FORMATS)) -> Path:
    """Fail early (before any work) on an output path that cannot be written."""
    p = Path(path)
    if p.suffix.lower() not in suffixes:
        raise InputError(f"{p}: output must end in {', '.join(suffixes)}")
    if not p.parent.is_dir():
        raise InputError(f"{p}: the folder {p.parent} does not exist")
    if p.is_dir():
        raise InputError(f"{p}: is a directory")
    return p


def check_output_dir(path: str | Path, force: bool = False) -> Path:
    """A directory an export may create: its parent exists; it does not, unless ``force``."""
    p = Path(path)
    if not p.parent.is_dir():
        raise InputError(f"{p}: the folder {p.parent} does not exist")
    if p.exists() and not force:
        raise InputError(f"{p}: exists; choose another path or pass --force")
    return p


def write_table(path: str | Path, rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> Path:
    """Write ``rows`` (dicts) with ``columns`` to ``path``; the format comes from the suffix."""
    p = check_output_path(path)
    with staged_file(p) as tmp:
        suffix = p.suffix.lower()
        if suffix == ".csv":
            with tmp.open("w", newline="", encoding="utf-8") as f:
                w = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore")
                w.writeheader()
                for r in rows:
                    w.writerow({k: _cell(r.get(k)) for k in columns})
        elif suffix == ".jsonl":
            with tmp.open("w", encoding="utf-8") as f:
                for r in rows:
                    f.write(json.dumps({k: r.get(k) for k in columns}, ensure_ascii=False) + "\n")
        else:
            parquet().write_table(_arrow_table(rows, columns), tmp)
    return p


SHARD_ROWS = 1_000_000
SHARD_NAME = "part-{:05d}.parquet"


def is_shard_dir(path: str | Path) -> bool:
    """Whether an output path names a directory of Parquet shards: it ends in ``/`` or is an
    existing directory."""
    return str(path).endswith(("/", "\\")) or Path(path).is_dir()


def check_shard_dir(path: str | Path) -> Path:
    """Fail early on a shard directory that cannot be written: its parent must exist; an
    existing one may hold only earlier shards (nothing else of the user's is replaced)."""
    p = Path(path)
    if not p.parent.is_dir():
        raise InputError(f"{p}: the folder {p.parent} does not exist")
    if p.is_dir():
        other = [f.name for f in p.iterdir() if not (f.name.startswith("part-")
                                                     and f.suffix == ".parquet")]
        if other:
            raise InputError(f"{p}: holds files that are not Parquet shards ({other[0]}, ...); "
                             "give a new or empty directory")
    elif p.exists():
        raise InputError(f"{p}: is a file; give a directory for Parquet shards")
    return p


def write_shards(path: str | Path, rows: Sequence[dict[str, Any]], columns: Sequence[str],
                 shard_rows: int = SHARD_ROWS) -> tuple[Path, int]:
    """Write ``rows`` as Parquet shards ``part-00000.parquet`` ... of at most ``shard_rows``
    rows into the directory ``path``, all or nothing (the directory is replaced in one rename).
    Returns the directory and the number of shards (at least one, so the schema is there)."""
    p = check_shard_dir(path)
    pq = parquet()
    with staged_dir(p) as tmp:
        starts = range(0, max(len(rows), 1), shard_rows)
        for n, start in enumerate(starts):
            pq.write_table(_arrow_table(rows[start : start + shard_rows], columns),
                           tmp / SHARD_NAME.format(n))
    return p, len(starts)


def _arrow_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> Any:
    return arrow().table({k: [_cell(r.get(k)) if isinstance(r.get(k), (dict, list)) else r.get(k)
                         for r in rows] for k in columns})


def _cell(v: Any) -> Any:
    return json.dumps(v, ensure_ascii=False) if isinstance(v, (dict, list)) else v
