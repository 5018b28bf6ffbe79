"""The local store's SQLite: the schema, connections (WAL; immutable on a read-only file
system), SQLite's errors as one line, a consistent copy of a database.

Example:
    >>> import tempfile, pathlib
    >>> conn = connect(pathlib.Path(tempfile.mkdtemp()) / "data.sqlite")
    >>> _ = conn.executescript(SCHEMA)
    >>> conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()[0]
    '0'
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from neartext.data.filters import as_number
from neartext.errors import CorruptCollection, StorageError
from neartext.util.atomic import staged_file

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS documents (
    id TEXT PRIMARY KEY, text TEXT NOT NULL, metadata TEXT NOT NULL, hash TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS passages (
    pid INTEGER PRIMARY KEY, doc_id TEXT NOT NULL, start INTEGER NOT NULL, end INTEGER NOT NULL,
    hash TEXT NOT NULL, vec BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS passages_doc ON passages(doc_id);
CREATE INDEX IF NOT EXISTS passages_hash ON passages(hash);
CREATE TABLE IF NOT EXISTS staged (hash TEXT PRIMARY KEY, vec BLOB NOT NULL);
INSERT OR IGNORE INTO meta VALUES ('generation', '0');
"""


# Full-text index of stemmed words (neartext.data.lexical); rowid = the document's rowid.
LEXICAL_SCHEMA = ("CREATE VIRTUAL TABLE lexical USING fts5(terms, "
                   "tokenize = 'unicode61 remove_diacritics 0')")


def has_table(conn: sqlite3.Connection, name: str) -> bool:
    """Whether table ``name`` exists (asked every time: microseconds, and another process may
    have made it meanwhile)."""
    return conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (name,)).fetchone() is not None


def fill_from_documents(conn: sqlite3.Connection, schema: str, insert: str,
                        row_of: Callable[[int, str], tuple[Any, ...]]) -> None:
    """Make a table (``schema``) and fill it with ``row_of(rowid, text)`` of every document
    (``insert``), a batch at a time; inside the caller's write transaction."""
    conn.execute(schema)
    cur = conn.execute("SELECT rowid, text FROM documents")
    while rows := cur.fetchmany(4096):
        conn.executemany(insert, [row_of(r, t) for r, t in rows])


#: the database's first bytes SQLite reads through a memory map (the page cache's own pages,
#: shared by every connection) rather than by copying each page it reads into its own cache
#: of 2 MB: a learned ranking reads about a hundred candidates' rows, vectors, stems and
#: sentences per query, in pages scattered over the file. Measured on Quora 20k (300 queries,
#: three rounds, both ways in turn in one process): a remembering ranker's search 0.5-0.9 ms
#: faster, blend's 0.0-0.2. Writes still go through the file (SQLite maps for reading only)
MMAP_BYTES = 1 << 30


def connect(db: Path) -> sqlite3.Connection:
    # Autocommit mode: transactions are explicit (BEGIN IMMEDIATE ... COMMIT) in the writers.
    try:
        if read_only_fs(db.parent):
            # SQLite cannot make its WAL index on a read-only file system; nobody can write
            # there either, so the file is opened as immutable (searches work, writes are
            # refused as read-only).
            conn = sqlite3.connect(db.resolve().as_uri() + "?mode=ro&immutable=1", uri=True,
                                   check_same_thread=False, isolation_level=None)
            conn.execute(f"PRAGMA mmap_size = {MMAP_BYTES}")
            _add_functions(conn)
            return conn
        new = not db.exists()
        conn = sqlite3.connect(db, check_same_thread=False, isolation_level=None, timeout=30)
        if new:  # settable only before the first table (and page_size before WAL)
            # freed pages can be given back (LocalStore._reclaim); 8 KiB pages hold five
            # 384-d vectors where 4 KiB ones hold two (20,000 Quora questions: 37 MB vs 45 MB)
            conn.execute("PRAGMA page_size = 8192")  # (before auto_vacuum, or it is ignored)
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        conn.execute("PRAGMA journal_mode=WAL")  # readers are not blocked by a writer
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute(f"PRAGMA mmap_size = {MMAP_BYTES}")
        _add_functions(conn)
    except sqlite3.DatabaseError as e:
        raise storage_error(db.parent, e, "nothing was changed (the collection could not be "
                                          "opened)") from None
    return conn


def _add_functions(conn: sqlite3.Connection) -> None:
    """The SQL functions filters compile to (:mod:`neartext.store.local.sql`)."""
    conn.create_function("nt_num", 1, as_number, deterministic=True)
    conn.create_function("nt_fold", 1, lambda s: s.casefold() if s else s, deterministic=True)


class ThreadReaders:
    """A reading connection per thread to the database ``db`` (inode ``ino``), opened at the
    thread's first read, so that one thread's read snapshot never holds another thread's reads
    in the past; ``first`` (the opening thread's) is also the fallback: after a swap of
    versions the path holds another database, and a thread then reads through ``first``, to
    this handle's version. Connections of threads that ended are closed as new ones open; once
    closed, a thread gets ``first``, closed too (its use is SQLite's error, as before)."""

    def __init__(self, db: Path, ino: int, first: sqlite3.Connection) -> None:
        self.db, self.ino, self.first = db, ino, first
        self._local = threading.local()
        self._local.conn = first
        self._of: dict[threading.Thread, sqlite3.Connection] = {}
        self._lock = threading.Lock()
        self._closed = False

    def get(self) -> sqlite3.Connection:
        """This thread's connection."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._open()
        return conn

    def _open(self) -> sqlite3.Connection:
        with self._lock:
            if self._closed:
                return self.first
            for thread in [t for t in self._of if not t.is_alive()]:
                self._of.pop(thread).close()
            try:
                conn = connect(self.db)
            except (StorageError, CorruptCollection):  # (the first connection's error stands)
                return self.first
            try:
                same = os.stat(self.db).st_ino == self.ino
            except OSError:
                same = False
            if not same:
                conn.close()
                return self.first
            self._of[threading.current_thread()] = conn
            return conn

    def close(self) -> None:
        """Close every connection."""
        with self._lock:
            self._closed = True
            for conn in [self.first, *self._of.values()]:
                conn.close()
            self._of.clear()


def read_only_fs(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def free_bytes(path: Path) -> int:
    try:
        st = os.statvfs(path)
    except OSError:
        return 1 << 62
    return st.f_bavail * st.f_frsize


def storage_error(path: Path, e: sqlite3.Error, outcome: str = "nothing was changed"
                  ) -> StorageError | CorruptCollection:
    """SQLite's error as one line naming the collection, the cause and what happened."""
    msg = str(e)
    if "disk I/O error" in msg and free_bytes(path) < 1 << 16:
        msg = "disk is full"  # SQLite says I/O error when it cannot even make its WAL files
    if "disk is full" in msg or "SQLITE_FULL" in msg:
        kind, why = "full", "the disk is full"
    elif "readonly" in msg or "read-only" in msg:
        kind, why = "read-only", "the collection is read-only (file system or permissions)"
    elif "locked" in msg or "busy" in msg:
        kind, why = "locked", "another process kept the collection locked for over 30 s"
    elif "malformed" in msg or "not a database" in msg:
        return CorruptCollection(f"{path}: data.sqlite is damaged ({msg})")
    else:
        kind, why = "io", f"SQLite failed ({msg})"
    return StorageError(f"{path}: {why}; {outcome}", kind=kind)


def copy_sqlite(src: Path, dst: Path) -> None:
    """A consistent copy of the SQLite database ``src`` at ``dst`` (SQLite's backup API, so a
    writer in another process is no problem), written to a temporary file and renamed."""
    with staged_file(dst) as tmp:
        a, b = sqlite3.connect(src), sqlite3.connect(tmp)
        try:
            a.backup(b)
        finally:
            a.close()
            b.close()


def batches(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


# A chunk of passages as one row: SQLite joins the chunk's vectors itself. group_concat reads a
# blob's bytes as text unchanged in a UTF-8 database and CAST gives them back as a blob; pids and
# vectors are aggregated over the same rows, so they stay paired. Read this way, a million
# passages in chunks of 1,024 took 0.9-1.1 s, against 1.6 s for fetching the rows and joining
# their vectors in Python (2.0-2.1 s in chunks of 16,384).
_CHUNK = ("SELECT count(*), group_concat(pid), CAST(group_concat(vec, '') AS BLOB) FROM "
          "(SELECT pid, vec FROM passages WHERE pid {} ? ORDER BY pid LIMIT ?)")


def passage_vectors(conn: sqlite3.Connection, row_bytes: int, rows: int = 1_024
                    ) -> Iterator[tuple[np.ndarray, bytes]]:
    """Every passage's pid and stored vector, in ascending pid order and chunks of ``rows``
    passages: ``(pids, their vectors' bytes one after another)``, in the caller's transaction
    (one read snapshot when the caller holds one). A vector whose bytes are not ``row_bytes``
    long makes the chunk's bytes the wrong length, which the codec refuses.

    >>> import tempfile, pathlib
    >>> conn = connect(pathlib.Path(tempfile.mkdtemp()) / "data.sqlite")
    >>> _ = conn.executescript(SCHEMA)
    >>> _ = conn.executemany("INSERT INTO passages VALUES (?, 'd', 0, 1, 'h', ?)",
    ...                      [(7, b"\\x00\\xff"), (3, b"\\xc3(")])
    >>> [(p.tolist(), raw) for p, raw in passage_vectors(conn, 2, rows=1)]
    [([3], b'\\xc3('), ([7], b'\\x00\\xff')]
    """
    if conn.execute("PRAGMA encoding").fetchone()[0] != "UTF-8":  # (text would be re-encoded)
        cur = conn.execute("SELECT pid, vec FROM passages ORDER BY pid")
        while chunk := cur.fetchmany(rows):
            got_pids, vecs = zip(*chunk)
            yield np.fromiter(got_pids, dtype=np.int64, count=len(chunk)), b"".join(vecs)
        return
    after, since = -(2 ** 63), _CHUNK.format(">=")  # (the first chunk from the least pid)
    while True:
        count, pid_text, raw = conn.execute(since, (after, rows)).fetchone()
        if not count:
            return
        pids = np.fromstring(pid_text, sep=",", dtype=np.int64)
        if len(pids) != count:
            raise CorruptCollection(f"passage ids after {after} could not be read")
        if count > 1 and not (pids[1:] > pids[:-1]).all():  # (SQLite keeps the order; if not)
            order = np.argsort(pids, kind="stable")
            pids = pids[order]
            if len(raw) == count * row_bytes:
                raw = np.frombuffer(raw, dtype=np.uint8).reshape(count, row_bytes)[order].tobytes()
        yield pids, raw
        after, since = int(pids[-1]), _CHUNK.format(">")
