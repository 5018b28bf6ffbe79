"""Write result tables (.csv, .jsonl, .parquet) atomically: a temp file renamed into place."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .atomic import staged_file
from .errors import InputError, MissingExtra

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
            try:
                import pyarrow as pa
                import pyarrow.parquet as pq
            except ImportError:
                raise MissingExtra("pyarrow (needed for .parquet)", "parquet") from None
            table = pa.table({k: [_cell(r.get(k)) if isinstance(r.get(k), (dict, list)) else r.get(k)
                                  for r in rows] for k in columns})
            pq.write_table(table, tmp)
    return p


def _cell(v: Any) -> Any:
    return json.dumps(v, ensure_ascii=False) if isinstance(v, (dict, list)) else v
