"""What a build that stopped left in its directory: the vectors it computed, kept for the next
build of the same model (as staged vectors), and nothing else.

Example:
    >>> import tempfile, pathlib
    >>> has_staged(pathlib.Path(tempfile.mkdtemp()))
    False
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

from neartext.errors import NeartextError
from neartext.store.base import StoreSettings
from neartext.store.local.sqlite import connect

MANIFEST = "manifest.json"


def keep_reusable_vectors(p: Path, manifest: dict[str, Any]) -> None:
    """A build directory left by a run that stopped: keep the vectors it computed when they
    come from the same model (same fingerprint) and are stored at the same precision as
    staged vectors, and nothing else; otherwise nothing at all."""
    db = p / "data.sqlite"
    if not db.is_file():
        return
    try:
        old = StoreSettings.of(p, json.loads((p / MANIFEST).read_text(encoding="utf-8")))
        new = StoreSettings.of(p, manifest)
        same = old.fingerprint is not None and (old.fingerprint, old.dim, old.precision) == (
            new.fingerprint, new.dim, new.precision)
    except (OSError, ValueError, KeyError, TypeError, NeartextError):
        same = False
    if same:
        conn = connect(db)
        try:
            conn.executescript(
                "BEGIN IMMEDIATE; INSERT OR IGNORE INTO staged SELECT hash, vec FROM passages;"
                "DELETE FROM passages; DELETE FROM documents; DROP TABLE IF EXISTS lexical;"
                "COMMIT;")
        except sqlite3.Error:
            same = False
        finally:
            conn.close()
    for f in p.iterdir():
        if f.name != "build.lock" and not (same and f.name.startswith("data.sqlite")):
            if f.is_dir():
                shutil.rmtree(f)
            else:
                f.unlink()

def has_staged(p: Path) -> bool:
    """Whether ``p`` holds a collection database with vectors a rerun can reuse: staged
    ones, or stored ones (the parts of a build in parts written before it stopped)."""
    try:
        conn = sqlite3.connect(f"file:{p / 'data.sqlite'}?mode=ro", uri=True, timeout=5)
        try:
            return conn.execute("SELECT 1 FROM staged UNION ALL SELECT 1 FROM passages "
                                "LIMIT 1").fetchone() is not None
        finally:
            conn.close()
    except sqlite3.Error:
        return False
