"""The embedded store: documents and vectors in SQLite, plus an in-memory vector index.

Layout of a collection directory::

    manifest.json   what built the collection (model, settings); see neartext.manifest (this
                    store reads only ``dim``, ``index`` and ``chunking`` from it)
    manifest.lock   locked around a manifest's read-modify-write (versions, calibration)
    data.sqlite     documents, passages (+ vectors: stored here only, at the manifest's
                    ``precision``: neartext.store.codec), staged vectors, a
                    generation counter; 8 KiB pages, incremental vacuum
    index.bin       the vector index's state without the vectors (ids; IVF centroids and each
                    id's list; an HNSW graph and the vectors of its removed nodes), with a
                    header naming the generation it holds; the vectors are read back from
                    SQLite on open

SQLite is the source of truth and every write is one transaction, so killing a process mid-write
leaves the previous state. Any number of processes may open the same collection: each keeps its
own in-memory index and brings it up to the database's generation before every search (one
SQLite read when nothing changed; otherwise only the passages added or removed since are read).
The index file is rewritten (temp file + rename) after each write, labelled with the generation
its contents were built from; one that is missing, damaged or behind the database is caught up
or rebuilt from SQLite when the collection is opened.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import sqlite3
import struct
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..address import Address
from ..atomic import TEMP_NAME, settle_swap, staged_file, swap_dirs
from ..errors import (
    CollectionExists,
    CollectionNotFound,
    CollectionReplaced,
    CorruptCollection,
    InputError,
    StorageError,
)
from ..filters import AnyOf, Condition, Filter, Not, Term, as_number
from ..lexical import index_text, match_expression
from ..locking import exclusive, release_file, waiting
from .base import (
    Document,
    Hit,
    Passage,
    Store,
    StoreBase,
    WriteResult,
    check_store_manifest,
)
from .codec import codec
from .vector_index import (
    FaissIndex,
    VectorIndex,
    build_index,
    load_index,
    read_index_header,
    save_index,
)

log = logging.getLogger("neartext")

INDEX_KINDS = ("auto", "flat", "hnsw", "ivf")
# passages from which `auto` uses an HNSW graph (tuned at build for recall@10 >= 0.99): at 20,000
# real vectors (bench/bench_ann.py) a query takes a tenth of the exact index's time, filtered
# ones are exact; below, the exact index is about a millisecond and builds in no time
AUTO_ANN_ABOVE = 20_000
PASSAGE_INFO_CACHE = 100_000  # passages whose document and span a handle remembers
MANIFEST = "manifest.json"
MANIFEST_LOCK = "manifest.lock"
INDEX_FILE = "index.bin"
_SCHEMA = """
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
# Full-text index of stemmed words (neartext.lexical); rowid = the document's rowid.
_LEXICAL_SCHEMA = ("CREATE VIRTUAL TABLE lexical USING fts5(terms, "
                   "tokenize = 'unicode61 remove_diacritics 0')")


def _connect(db: Path) -> sqlite3.Connection:
    # Autocommit mode: transactions are explicit (BEGIN IMMEDIATE ... COMMIT) in the writers.
    try:
        if _read_only_fs(db.parent):
            # SQLite cannot make its WAL index on a read-only file system; nobody can write
            # there either, so the file is opened as immutable (searches work, writes are
            # refused as read-only).
            conn = sqlite3.connect(db.resolve().as_uri() + "?mode=ro&immutable=1", uri=True,
                                   check_same_thread=False, isolation_level=None)
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
    except sqlite3.DatabaseError as e:
        raise storage_error(db.parent, e, "nothing was changed (the collection could not be "
                                          "opened)") from None
    return conn


def _read_only_fs(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _free_bytes(path: Path) -> int:
    try:
        st = os.statvfs(path)
    except OSError:
        return 1 << 62
    return st.f_bavail * st.f_frsize


def storage_error(path: Path, e: sqlite3.Error, outcome: str = "nothing was changed"
                  ) -> StorageError | CorruptCollection:
    """SQLite's error as one line naming the collection, the cause and what happened."""
    msg = str(e)
    if "disk I/O error" in msg and _free_bytes(path) < 1 << 16:
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


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, not ours
    return True


def remove_orphan_temp_files(path: Path) -> None:
    """Remove temporary files that a killed process left in ``path`` (``.NAME.tmpPID`` whose
    process is gone). Best effort: a read-only directory is left as it is."""
    with contextlib.suppress(OSError):
        for f in path.iterdir():
            m = TEMP_NAME.match(f.name)
            if m and int(m.group(1)) != os.getpid() and not _pid_alive(int(m.group(1))):
                with contextlib.suppress(OSError):
                    f.unlink()


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to ``path`` so that readers see either the old or the new file, never half."""
    with staged_file(path) as tmp, tmp.open("w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, ensure_ascii=False)


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


class LocalStore(StoreBase):
    """SQLite + vector index store in one directory. Thread-safe; one writer at a time.

    Example:
        >>> import numpy as np, tempfile
        >>> s = LocalStore.create(tempfile.mkdtemp(), {"dim": 2})
        >>> v = np.array([[1.0, 0.0]], dtype=np.float32)
        >>> _ = s.write([Document("a", "hello", {}, "h1")], [Passage("a", 0, 5, "h1", v[0])], [])
        >>> s.search(v, k=1)[0][0].doc_id
        'a'
    """

    def __init__(self, path: str | Path, *, index: str | None = None) -> None:
        self.path = Path(path)
        settle_swap(self.path)  # a swap of versions a kill interrupted: finished or undone
        if not (self.path / MANIFEST).is_file():
            raise CollectionNotFound(f"{self.path}: no collection here (no {MANIFEST})")
        self._manifest = self.read_manifest()
        self.dim = int(self._manifest["dim"])
        self.index_kind = index or self._manifest.get("index", "auto")
        self.codec = codec(self._manifest.get("precision", "float32"), self.dim)
        if self.index_kind not in INDEX_KINDS:
            raise InputError(f"Unknown index '{self.index_kind}'; choose one of: {', '.join(INDEX_KINDS)}")
        # Two connections, so that reading never waits for a writer: writes (one at a time in
        # this process, under ``_write_lock``) go through ``_wconn``, which may wait up to 30 s
        # for another process's write lock; everything else reads through ``_rconn`` (WAL:
        # readers see the last commit and are never blocked). ``_lock`` guards the in-memory
        # index and is never held while waiting for a write lock. ``conn`` is the writer's
        # connection in the thread inside a write, the reader's everywhere else.
        self._lock = threading.RLock()
        self._write_lock = threading.RLock()
        self._writing = threading.local()
        db = self.path / "data.sqlite"
        if not db.is_file():
            raise CorruptCollection(f"{self.path}: data.sqlite is missing")
        while True:  # the database file these connections are to (a swap replaces the
            ino = os.stat(db).st_ino  # directory), and the manifest that goes with it
            self._wconn = _connect(db)
            self._rconn = _connect(db)
            self._db_ino = os.stat(db).st_ino
            if self._db_ino == ino:
                self._manifest = self.read_manifest()
                if not self.replaced():
                    break
            self._wconn.close()
            self._rconn.close()
        tables = {r[0] for r in self._rconn.execute("SELECT name FROM sqlite_master")}
        if not {"meta", "documents", "passages", "staged"} <= tables:
            raise CorruptCollection(f"{db}: not a neartext collection database")
        for conn in (self._wconn, self._rconn):
            conn.create_function("nt_num", 1, as_number, deterministic=True)
            conn.create_function("nt_fold", 1, lambda s: s.casefold() if s else s,
                                 deterministic=True)
        self._filter_cache: dict[tuple, np.ndarray] = {}
        # pid -> (document, start, end) of passages found by searches: always valid, since a
        # passage id is never reused and the index returns only passages the database holds
        self._passage_info: dict[int, tuple[str, int, int]] = {}
        self._passage_info_loaded = False
        self._index_gen = -1  # the database generation self.index holds
        remove_orphan_temp_files(self.path)
        self.index = self._open_index()

    # -- creation and manifest ------------------------------------------------------------------

    @classmethod
    def create(cls, path: str | Path, manifest: dict[str, Any]) -> LocalStore:
        """Create an empty store in ``path`` (made if needed) with ``manifest``."""
        p = Path(path)
        p.mkdir(parents=True, exist_ok=True)
        cls._keep_reusable_vectors(p, manifest)
        conn = _connect(p / "data.sqlite")
        try:
            conn.executescript(_SCHEMA)
        except sqlite3.Error as e:
            raise storage_error(p, e, "the collection was not created") from None
        finally:
            conn.close()
        write_json_atomic(p / MANIFEST, manifest)
        return cls(p)

    @staticmethod
    def _keep_reusable_vectors(p: Path, manifest: dict[str, Any]) -> None:
        """A build directory left by a run that stopped: keep the vectors it computed when they
        come from the same model (same fingerprint) and are stored at the same precision as
        staged vectors, and nothing else; otherwise nothing at all."""
        db = p / "data.sqlite"
        if not db.is_file():
            return
        try:
            old = json.loads((p / MANIFEST).read_text(encoding="utf-8"))
            same = old["model"]["fingerprint"] == manifest["model"]["fingerprint"] and \
                old["dim"] == manifest["dim"] and \
                old.get("precision", "float32") == manifest.get("precision", "float32")
        except (OSError, ValueError, KeyError, TypeError):
            same = False
        if same:
            conn = _connect(db)
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

    @staticmethod
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

    def read_manifest(self) -> dict[str, Any]:
        try:
            data = json.loads((self.path / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError) as e:
            raise CorruptCollection(f"{self.path / MANIFEST}: unreadable manifest ({e})") from None
        return check_store_manifest(self.path / MANIFEST, data)

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        if hasattr(self, "_db_ino") and self.replaced():  # it would land on the new version
            raise CollectionReplaced(
                f"{self.path}: a new version of this collection was swapped in while this "
                "process had the old one open; the manifest was not written: open it again "
                "and repeat the change")
        try:
            write_json_atomic(self.path / MANIFEST, manifest)
        except OSError as e:
            raise StorageError(f"{self.path / MANIFEST}: could not be written "
                               f"({e.strerror or e}); the manifest is unchanged") from None
        self._manifest = manifest

    def manifest_stamp(self) -> object:
        try:  # the manifest is replaced by a rename: a new inode and time at every write
            st = os.stat(self.path / MANIFEST)
        except OSError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def manifest_lock(self) -> contextlib.AbstractContextManager[None]:
        return waiting(self.path / MANIFEST_LOCK)

    @property
    def conn(self) -> sqlite3.Connection:
        """The writer's connection in a thread inside a write (:meth:`_as_writer`), else the
        reader's."""
        return self._wconn if getattr(self._writing, "on", False) else self._rconn

    @contextlib.contextmanager
    def _as_writer(self) -> Iterator[None]:
        """The block runs in this thread on the writer's connection (with ``_write_lock``)."""
        with self._write_lock:
            outer = getattr(self._writing, "on", False)
            self._writing.on = True
            try:
                yield
            finally:
                self._writing.on = outer

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """One write transaction on the writer's connection (taking ``_write_lock``; never
        ``_lock``, which searches need): committed if the block completes, rolled back
        otherwise; SQLite's storage errors (disk full, read-only, locked) become one
        :class:`StorageError` line saying nothing was changed. A write that failed for lack
        of space gives back what its log took (:meth:`_give_back_log`)."""
        with self._as_writer():
            conn = self._wconn
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    if self.replaced():
                        raise CollectionReplaced(
                            f"{self.path}: a new version of this collection was swapped in "
                            "(reindex, rollback, a both-side adapter) while this write had the "
                            "old one open; nothing was written: repeat the change (a running "
                            "service serves the new version from its next request)")
                    yield
                    conn.execute("COMMIT")
                except BaseException:
                    # SQLite may already have rolled back (a full disk does): ROLLBACK would
                    # then fail with "no transaction is active" and hide the real error.
                    if conn.in_transaction:
                        with contextlib.suppress(sqlite3.Error):
                            conn.execute("ROLLBACK")
                    raise
            except sqlite3.OperationalError as e:
                error = storage_error(self.path, e)
                if getattr(error, "kind", None) == "full":
                    self._give_back_log()
                raise error from None

    def _give_back_log(self) -> None:
        """After a write failed for lack of space: the pages it wrote to the write-ahead log
        are of no use, and the log file keeps the space they took; truncated, it gives that
        space back, so that freeing some is enough for the next write (a delete, say).
        Best effort: other processes' readers may keep it from happening now."""
        conn = self._wconn
        try:
            conn.execute("PRAGMA busy_timeout = 200")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        except sqlite3.Error:
            pass
        finally:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("PRAGMA busy_timeout = 30000")

    def replaced(self) -> bool:
        """Whether the directory now holds another database than the one this store opened
        (another process's ``reindex`` swapped in a new version)."""
        try:
            return os.stat(self.path / "data.sqlite").st_ino != self._db_ino
        except OSError:
            return True

    @contextlib.contextmanager
    def hold_writes(self) -> Iterator[None]:
        """Hold the collection's write lock for the block: writers of every process wait
        (up to SQLite's 30 s busy timeout, then a 'locked' error), readers go on. What
        ``reindex`` takes for its last catch-up and the swap."""
        with self._transaction():
            yield

    @contextlib.contextmanager
    def _snapshot(self) -> Iterator[None]:
        """A read transaction, so that several queries see one committed state."""
        if self.conn.in_transaction:
            yield
            return
        self.conn.execute("BEGIN")
        try:
            yield
        finally:
            if self.conn.in_transaction:
                self.conn.execute("COMMIT")

    # -- reads ----------------------------------------------------------------------------------

    def generation(self) -> int:
        row = self.conn.execute("SELECT value FROM meta WHERE key='generation'").fetchone()
        return int(row[0])

    def count(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM documents").fetchone()[0])

    def passage_count(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM passages").fetchone()[0])

    def document_hashes(self, ids: Sequence[str] | None = None) -> dict[str, str]:
        if ids is None:
            return dict(self.conn.execute("SELECT id, hash FROM documents"))
        out: dict[str, str] = {}
        for part in _batches(list(ids), 900):
            q = f"SELECT id, hash FROM documents WHERE id IN ({','.join('?' * len(part))})"
            out.update(self.conn.execute(q, part))
        return out

    def _vectors_in(self, table: str, hashes: list[str]) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for part in _batches(hashes, 900):
            marks = ",".join("?" * len(part))
            for h, blob in self.conn.execute(
                    f"SELECT hash, vec FROM {table} WHERE hash IN ({marks})", part):
                out.setdefault(h, self.codec.decode_one(blob))
        return out

    def _stored_vectors(self, hashes: list[str]) -> dict[str, np.ndarray]:
        return self._vectors_in("passages", hashes)

    def _staged_vectors(self, hashes: list[str]) -> dict[str, np.ndarray]:
        return self._vectors_in("staged", hashes)

    def _documents_by_id(self, ids: Sequence[str]) -> dict[str, Document]:
        found: dict[str, Document] = {}
        for part in _batches(list(ids), 900):
            q = f"SELECT id, text, metadata, hash FROM documents WHERE id IN ({','.join('?' * len(part))})"
            for i, t, m, h in self.conn.execute(q, part):
                found[i] = Document(i, t, json.loads(m), h)
        return found

    def _metadata_field_names(self) -> set[str]:
        rows = self.conn.execute(
            "SELECT DISTINCT j.key FROM documents, json_each(documents.metadata) AS j")
        return {r[0] for r in rows}

    def iter_texts(self, batch_size: int = 4096) -> Iterator[str]:
        cur = self.conn.execute("SELECT text FROM documents")
        while rows := cur.fetchmany(batch_size):
            yield from (r[0] for r in rows)

    def iter_vectors(self, batch_size: int = 8192) -> Iterator[tuple[list[str], np.ndarray]]:
        cur = self.conn.execute("SELECT doc_id, vec FROM passages ORDER BY pid")
        while rows := cur.fetchmany(batch_size):
            yield [r[0] for r in rows], self.codec.decode([r[1] for r in rows])

    def export(self, batch_size: int = 1024) -> Iterator[tuple[list[Document], list[Passage]]]:
        """Every document with its passages (vectors included), in batches of documents."""
        cur = self.conn.cursor()
        cur.execute("SELECT id, text, metadata, hash FROM documents ORDER BY rowid")
        while rows := cur.fetchmany(batch_size):
            docs = [Document(i, t, json.loads(m), h) for i, t, m, h in rows]
            marks = ",".join("?" * len(docs))
            passages = [Passage(d, s, e, h, self.codec.decode_one(v))
                        for d, s, e, h, v in self.conn.execute(
                            f"SELECT doc_id, start, end, hash, vec FROM passages "
                            f"WHERE doc_id IN ({marks}) ORDER BY pid", [d.id for d in docs])]
            yield docs, passages

    # -- writes ---------------------------------------------------------------------------------

    def stage_vectors(self, hashes: Sequence[str], vectors: np.ndarray) -> None:
        rows = list(zip(hashes, self.codec.encode(np.asarray(vectors).reshape(-1, self.dim))))
        with self._transaction():
            self.conn.executemany("INSERT OR REPLACE INTO staged VALUES (?, ?)", rows)

    def write(
        self, documents: Sequence[Document], passages: Sequence[Passage],
        delete_ids: Sequence[str] | Filter
    ) -> WriteResult:
        replaced = {p.doc_id for p in passages}
        with self._write_lock:
            with self._transaction():
                before = self.generation()
                existing = set(self.document_hashes([d.id for d in documents]))
                # a filter's documents are chosen inside the transaction: what it deletes is
                # exactly what matched at the commit, whatever other writers do
                gone = self.ids_where(delete_ids) if isinstance(delete_ids, Filter) \
                    else list(delete_ids)
                old_pids = self._pids_of(list(replaced) + gone)
                for part in _batches(list(replaced) + gone, 900):
                    marks = ",".join("?" * len(part))
                    self.conn.execute(f"DELETE FROM passages WHERE doc_id IN ({marks})", part)
                lexical = self.has_keyword_index()
                if lexical:
                    self._lexical_delete(list(existing) + gone)  # before their rows go
                removed = 0
                for part in _batches(gone, 900):
                    marks = ",".join("?" * len(part))
                    cur = self.conn.execute(f"DELETE FROM documents WHERE id IN ({marks})", part)
                    removed += cur.rowcount
                # An upsert, not INSERT OR REPLACE: a document keeps its rowid (the key of its
                # row in the full-text index).
                self.conn.executemany(
                    "INSERT INTO documents VALUES (?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET "
                    "text = excluded.text, metadata = excluded.metadata, hash = excluded.hash",
                    [(d.id, d.text, json.dumps(d.metadata, ensure_ascii=False), d.hash)
                     for d in documents])
                if lexical:
                    self._lexical_add([(d.id, d.text) for d in documents])
                result = self.write_counts(documents, existing, removed)
                new_pids = self._next_pids(len(passages))
                self.conn.executemany(
                    "INSERT INTO passages VALUES (?, ?, ?, ?, ?, ?)",
                    [(int(pid), p.doc_id, p.start, p.end, p.hash, blob)
                     for pid, p, blob in zip(new_pids, passages, self.codec.encode(
                         np.array([p.vector for p in passages], dtype=np.float32)))])
                # Staged vectors exist to resume an interrupted write; those stored now are no
                # longer needed. Others may belong to a write still running in another process.
                for part in _batches(sorted({p.hash for p in passages}), 900):
                    marks = ",".join("?" * len(part))
                    self.conn.execute(f"DELETE FROM staged WHERE hash IN ({marks})", part)
                self.conn.execute(
                    "UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key='generation'")
            # Committed. The index is a cache: from here on a failure is a warning, never an
            # error that would claim the committed change did not happen.
            vecs = (np.stack([np.asarray(p.vector, dtype=np.float32) for p in passages])
                    if passages else np.zeros((0, self.dim), dtype=np.float32))
            with self._lock:
                if self._index_gen == before:  # nobody else wrote in between: apply this write
                    self._apply_to_index(old_pids, new_pids, vecs, before + 1)
                else:
                    self._catch_up()
                warning = self._persist_index()
            if warning:
                result.warnings.append(warning)
            self._reclaim()
        return result

    def _reclaim(self, at_least: float = 0.1) -> None:
        """Give the pages that a write freed (staged vectors stored for good, replaced or
        deleted passages) back to the file system once they are ``at_least`` of the file: the
        database is built for incremental vacuum. Best effort: the write has committed."""
        conn = self._wconn  # (the caller holds ``_write_lock``)
        try:
            free = conn.execute("PRAGMA freelist_count").fetchone()[0]
            pages = conn.execute("PRAGMA page_count").fetchone()[0]
            if free and free >= at_least * pages:
                # (executescript steps the pragma to the end; execute frees one page)
                conn.executescript("PRAGMA incremental_vacuum;")
        except sqlite3.Error:
            pass

    def _next_pids(self, n: int) -> np.ndarray:
        """Fresh passage ids (inside a write). Never reused, even after the highest ones are
        deleted, so another process's index can tell which passages are new by id alone."""
        row = self.conn.execute("SELECT value FROM meta WHERE key='next_pid'").fetchone()
        top = self.conn.execute("SELECT COALESCE(MAX(pid), 0) + 1 FROM passages").fetchone()[0]
        first = max(int(row[0]) if row else 0, int(top))
        self.conn.execute("INSERT OR REPLACE INTO meta VALUES ('next_pid', ?)", (str(first + n),))
        return np.arange(first, first + n, dtype=np.int64)

    def _pids_of(self, doc_ids: list[str]) -> np.ndarray:
        pids: list[int] = []
        for part in _batches(doc_ids, 900):
            marks = ",".join("?" * len(part))
            pids += [r[0] for r in self.conn.execute(
                f"SELECT pid FROM passages WHERE doc_id IN ({marks})", part)]
        return np.array(pids, dtype=np.int64)

    def close(self) -> None:
        with self._write_lock, self._lock:
            self._wconn.close()
            self._rconn.close()

    # -- search ---------------------------------------------------------------------------------

    def search(self, queries: np.ndarray, k: int, flt: Filter | None = None) -> list[list[Hit]]:
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dim)
        with self._lock:
            self._sync_index()  # another process (or handle) may have written since
            total = self.index.ntotal
            empty: list[list[Hit]] = [[] for _ in range(len(queries))]
            if total == 0 or k < 1:
                return empty
            allowed = self._filtered_pids(flt) if flt else None
            if allowed is not None and len(allowed) == 0:
                return empty
            cap = total if allowed is None else len(allowed)
            chunked = bool(self._manifest.get("chunking"))
            fetch = min(cap, k * 4 if chunked else k)
            while True:
                scores, pids = self.index.search(queries, fetch, allowed)
                hits = self._collapse(scores, pids, k)
                if fetch >= cap or all(len(h) >= k for h in hits):
                    return hits
                fetch = min(cap, fetch * 4)

    def _collapse(self, scores: np.ndarray, pids: np.ndarray, k: int) -> list[list[Hit]]:
        """Passage hits -> best passage per document, top ``k`` documents."""
        info = self._passage_info
        if not self._passage_info_loaded:  # all at once when they fit: no lookup per search
            self._passage_info_loaded = True
            if self.passage_count() <= PASSAGE_INFO_CACHE:
                info.update((pid, (doc, s, e)) for pid, doc, s, e in self.conn.execute(
                    "SELECT pid, doc_id, start, end FROM passages"))
        score_rows, pid_rows = scores.tolist(), pids.tolist()  # Python numbers: fast to walk
        wanted = sorted({p for row in pid_rows for p in row if p >= 0 and p not in info})
        if len(info) + len(wanted) > PASSAGE_INFO_CACHE:
            info.clear()
        for part in _batches(wanted, 900):
            marks = ",".join("?" * len(part))
            for pid, doc, s, e in self.conn.execute(
                    f"SELECT pid, doc_id, start, end FROM passages WHERE pid IN ({marks})", part):
                info[pid] = (doc, s, e)

        def hits(row_s: list[float], row_p: list[int]) -> list[Hit]:
            found = [(sc, info.get(p)) for sc, p in zip(row_s, row_p) if p >= 0]
            return [Hit(at[0], sc, at[1], at[2]) for sc, at in found if at is not None]

        return self.best_per_document(
            (hits(s, p) for s, p in zip(score_rows, pid_rows)), k)

    # -- keyword search (SQLite FTS5 over stemmed words, BM25) ----------------------------------

    def keyword_search(
        self, queries: Sequence[str], k: int, flt: Filter | None = None
    ) -> list[list[Hit]]:
        """Top ``k`` documents per query by BM25 over their stemmed words (``score`` is the
        BM25 score, higher is better). The full-text index is built on first use and kept in
        step with every write after that."""
        self.ensure_lexical()
        where, params = filter_to_sql(flt) if flt else ("1", [])
        out: list[list[Hit]] = []
        with self._lock:
            for q in queries:
                expr = match_expression(q)
                if not expr or k < 1:
                    out.append([])
                    continue
                rows = self.conn.execute(
                    "SELECT d.id, -bm25(lexical), length(d.text) FROM lexical "
                    "JOIN documents d ON d.rowid = lexical.rowid "
                    f"WHERE lexical MATCH ? AND {where} ORDER BY bm25(lexical) LIMIT ?",
                    [expr, *params, k])
                out.append([Hit(doc, float(score), 0, n) for doc, score, n in rows])
        return out

    def _document_frequencies(self, words: list[str]) -> dict[str, int]:
        """Documents holding each stemmed word, from FTS5's vocabulary."""
        self.ensure_lexical()
        df: dict[str, int] = {}
        with self._lock:
            self.conn.execute("CREATE VIRTUAL TABLE IF NOT EXISTS temp.lexical_vocab "
                              "USING fts5vocab(main, lexical, row)")
            for part in _batches(words, 900):
                marks = ",".join("?" * len(part))
                df.update(self.conn.execute(
                    f"SELECT term, doc FROM temp.lexical_vocab WHERE term IN ({marks})", part))
        return df

    @staticmethod
    def _idf(n: int, df: int) -> float:
        # FTS5's BM25 IDF, floored as FTS5 does: a word no document has still counts, so
        # matching the rest of a query is a partial match
        return max(math.log((n - df + 0.5) / (df + 0.5)), 1e-6)

    def ensure_lexical(self) -> bool:
        """Build the full-text index if this collection has none yet (one transaction).
        Returns True when it was built now."""
        if self.has_keyword_index():
            return False
        with self._transaction():
            if self.has_keyword_index():  # built by another process meanwhile
                return False
            self.conn.execute(_LEXICAL_SCHEMA)
            cur = self.conn.execute("SELECT rowid, text FROM documents")
            while rows := cur.fetchmany(4096):
                self.conn.executemany("INSERT INTO lexical(rowid, terms) VALUES (?, ?)",
                                      [(r, index_text(t)) for r, t in rows])
        return True

    def doc_vectors(self, doc_ids: Sequence[str]) -> dict[str, np.ndarray]:
        """Every passage vector of the given documents, ``doc_id -> (n_passages, dim)``."""
        out: dict[str, list[np.ndarray]] = {}
        for part in _batches(list(doc_ids), 900):
            marks = ",".join("?" * len(part))
            for doc, blob in self.conn.execute(
                    f"SELECT doc_id, vec FROM passages WHERE doc_id IN ({marks})", part):
                out.setdefault(doc, []).append(self.codec.decode_one(blob))
        return {d: np.stack(v) for d, v in out.items()}

    def has_keyword_index(self) -> bool:
        """Whether the full-text index exists (it is built by the first keyword search)."""
        # Asked every time (microseconds): another process may have built it meanwhile.
        return self.conn.execute(
            "SELECT 1 FROM sqlite_master WHERE name = 'lexical'").fetchone() is not None

    def _lexical_delete(self, doc_ids: list[str]) -> None:
        for part in _batches(doc_ids, 900):
            marks = ",".join("?" * len(part))
            self.conn.execute(f"DELETE FROM lexical WHERE rowid IN "
                              f"(SELECT rowid FROM documents WHERE id IN ({marks}))", part)

    def _lexical_add(self, docs: list[tuple[str, str]]) -> None:
        self.conn.executemany(
            "INSERT INTO lexical(rowid, terms) SELECT rowid, ? FROM documents WHERE id = ?",
            [(index_text(text), doc) for doc, text in docs])

    def ids_where(self, flt: Filter) -> list[str]:
        where, params = filter_to_sql(flt)
        return [r[0] for r in self.conn.execute(f"SELECT d.id FROM documents d WHERE {where}",
                                                params)]

    def _filtered_pids(self, flt: Filter) -> np.ndarray:
        """Passage ids that pass ``flt``; cached per database generation (writes invalidate)."""
        where, params = filter_to_sql(flt)
        key = (self.generation(), where, tuple(map(repr, params)))
        cached = self._filter_cache.get(key)
        if cached is not None:
            return cached
        rows = self.conn.execute(
            f"SELECT p.pid FROM passages p JOIN documents d ON d.id = p.doc_id WHERE {where}",
            params)
        pids = np.fromiter((r[0] for r in rows), dtype=np.int64)
        if len(self._filter_cache) >= 64 or any(k[0] != key[0] for k in self._filter_cache):
            self._filter_cache.clear()
        self._filter_cache[key] = pids
        return pids

    # -- the vector index cache ----------------------------------------------------------------

    def _wanted_kind(self, n: int) -> str:
        if n == 0:
            return "flat"  # nothing to train an IVF index on yet
        if self.index_kind != "auto":
            return self.index_kind
        return "hnsw" if n >= AUTO_ANN_ABOVE else "flat"

    def _stale(self, n: int) -> bool:
        """Wrong kind for the size, or an IVF index trained on far fewer vectors than it holds."""
        ix = self.index
        return self._wanted_kind(n) != ix.kind or (
            isinstance(ix, FaissIndex) and ix.kind == "ivf" and n > 4 * max(ix.trained_on, 1))

    def _open_index(self) -> VectorIndex:
        """The index file if it is readable, else one rebuilt from SQLite; either way checked
        against the database's passages and caught up (a file behind the database, or one that
        lacks passages the database has, is repaired in memory and saved again)."""
        try:
            self.index, header = load_index(self.path / INDEX_FILE, self.dim, self._vectors_by_pid)
            self._index_gen = int(header["generation"])
        except (OSError, ValueError, RuntimeError, KeyError, TypeError, struct.error):
            return self._rebuild_index(save=True)  # missing, old format or damaged
        if self._index_gen > self.generation():  # a database restored from an older copy
            return self._rebuild_index(save=True)
        file_generation = self._index_gen
        # saved again when it changed, or when only its label was behind (passages another
        # process removed were already left out while reading it)
        if self._catch_up(force=True) or self._index_gen != file_generation:
            self._persist_index(quiet=True)
        return self.index

    def _sync_index(self) -> None:
        """Catch the in-memory index up when the database moved on (call with the lock)."""
        if self.generation() != self._index_gen:
            self._catch_up()

    def _catch_up(self, force: bool = False) -> bool:
        """Make the index hold exactly the database's passages, reading only those added since
        (passage ids are never reused, so ids tell what changed). Returns whether anything
        changed. One read snapshot, so the generation and the passages agree."""
        with self._snapshot():
            gen = self.generation()
            if gen == self._index_gen and not force:
                return False
            # no ORDER BY: SQLite then scans a small covering index, not the vector pages
            db = np.sort(np.fromiter((r[0] for r in self.conn.execute(
                "SELECT pid FROM passages")), dtype=np.int64))
            have = self.index.stored_ids()
            gone = np.setdiff1d(have, db, assume_unique=True)
            new = np.setdiff1d(db, have, assume_unique=True)
            if not len(gone) and not len(new):
                self._index_gen = gen
                return False
            if self._stale(len(db)) or len(new) > max(1024, len(db) // 2) or (
                    len(gone) and not self.index.remove(gone)):
                self._rebuild_index()
                return True
            self.index.add(self._vectors_of(new), new)
            self._index_gen = gen
            return True

    def _vectors_by_pid(self, pids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(pids found, their vectors)`` in ascending pid order, in one read snapshot: how
        an index file's vectors come back from the database (they are stored once, here)."""
        pids = np.unique(np.asarray(pids, dtype=np.int64))
        with self._snapshot():
            if len(pids) * 2 >= self.passage_count():  # most of them: one ordered scan
                rows = self.conn.execute("SELECT pid, vec FROM passages ORDER BY pid")
                found, blobs = [], []
                wanted = set(pids.tolist())
                for pid, blob in rows:
                    if pid in wanted:
                        found.append(pid)
                        blobs.append(blob)
            else:
                got: dict[int, bytes] = {}
                for part in _batches([int(p) for p in pids], 900):
                    marks = ",".join("?" * len(part))
                    got.update(self.conn.execute(
                        f"SELECT pid, vec FROM passages WHERE pid IN ({marks})", part))
                found = sorted(got)
                blobs = [got[p] for p in found]
        return np.asarray(found, dtype=np.int64), self.codec.decode(blobs)

    def _vectors_of(self, pids: np.ndarray) -> np.ndarray:
        out = np.zeros((len(pids), self.dim), dtype=np.float32)
        pos = {int(p): i for i, p in enumerate(pids)}
        for part in _batches([int(p) for p in pids], 900):
            marks = ",".join("?" * len(part))
            for pid, blob in self.conn.execute(
                    f"SELECT pid, vec FROM passages WHERE pid IN ({marks})", part):
                out[pos[pid]] = self.codec.decode_one(blob)
        return out

    def _rebuild_index(self, save: bool = False) -> VectorIndex:
        """A new index of every passage in SQLite (the source of truth), in one snapshot."""
        with self._snapshot():
            gen = self.generation()
            pids = np.fromiter((r[0] for r in self.conn.execute(
                "SELECT pid FROM passages ORDER BY pid")), dtype=np.int64)
            vecs = np.concatenate([v for _, v in self.iter_vectors()]) if len(pids) else \
                np.zeros((0, self.dim), dtype=np.float32)
        # tuned: the cheapest search setting reaching recall@10 >= 0.993
        self.index = build_index(self._wanted_kind(len(pids)), self.dim, vecs, pids)
        self._index_gen = gen
        if save:
            self._persist_index(quiet=True)
        return self.index

    def _apply_to_index(self, old: np.ndarray, new: np.ndarray, vecs: np.ndarray,
                        gen: int) -> None:
        """Apply one write's change (the index held the generation before it)."""
        n = self.index.ntotal - len(old) + len(new)  # passages after this write
        if self._stale(n) or (len(old) and not self.index.remove(old)):
            self._rebuild_index()  # reads the database as it is now
            return
        self.index.add(vecs, new)
        self._index_gen = gen

    def _persist_index(self, quiet: bool = False) -> str | None:
        """Save the index file for the generation it holds. A failure (disk full, read-only)
        is a warning: the index is a cache, and a file left behind is recognised as stale by
        its generation. Returns the warning."""
        try:
            save_index(self.index, self.path / INDEX_FILE, {"generation": self._index_gen})
            (self.path / "index.json").unlink(missing_ok=True)  # the old sidecar; the header says it now
        except OSError as e:
            msg = (f"{self.path}: the vector index cache could not be saved "
                   f"({e.strerror or e}); the data is committed and the index will be "
                   "rebuilt from it when the collection is next opened")
            # on open (a search on a read-only copy, say) nothing was asked to be written
            log.log(logging.INFO if quiet else logging.WARNING, msg)
            return msg
        return None

    def repair(self) -> dict[str, Any]:
        """Rebuild the vector index from SQLite and save it; report what was found: the index
        file's generation and size against the database's, and orphaned rows (passages whose
        document is gone, documents without a passage)."""
        with self._write_lock, self._lock:  # (always in this order)
            before = self.index_file_info()
            with self._snapshot():
                orphans = self.conn.execute(
                    "SELECT COUNT(*) FROM passages p WHERE NOT EXISTS "
                    "(SELECT 1 FROM documents d WHERE d.id = p.doc_id)").fetchone()[0]
                bare = self.conn.execute(
                    "SELECT COUNT(*) FROM documents d WHERE NOT EXISTS "
                    "(SELECT 1 FROM passages p WHERE p.doc_id = d.id)").fetchone()[0]
                check = self.conn.execute("PRAGMA quick_check").fetchone()[0]
            compacted = self._compact()
            self._rebuild_index()
            warning = self._persist_index()
            return {"database": check, "generation": self._index_gen,
                    "passages": self.index.ntotal, "documents": self.count(),
                    "index_file_before": before, "passages_without_document": orphans,
                    "documents_without_passage": bare, "saved": warning is None,
                    "warning": warning, "compacted_bytes": compacted}

    def _compact(self) -> int:
        """Rewrite the database without its free pages, set up for incremental vacuum (a
        collection made before neartext reclaimed space is converted here); bytes saved."""
        size = (self.path / "data.sqlite").stat().st_size
        try:
            with self._as_writer():
                self.conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
                self.conn.execute("VACUUM")
                self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()  # into the file
        except sqlite3.OperationalError as e:
            raise storage_error(self.path, e) from None
        return size - (self.path / "data.sqlite").stat().st_size

    def index_file_info(self) -> dict[str, Any]:
        """What the index file on disk holds, from its header: generation, kind, vectors,
        and whether it is ``current`` (holds the database's generation)."""
        try:
            h = read_index_header(self.path / INDEX_FILE)
        except (OSError, ValueError, struct.error) as e:
            return {"current": False, "problem": str(e) or type(e).__name__}
        return {"generation": h.get("generation"), "kind": h.get("kind"),
                "vectors": h.get("ntotal"), "current": h.get("generation") == self.generation()}

    def index_info(self) -> dict[str, Any]:
        with self._lock:
            self._sync_index()
            info = {"kind": self.index.kind, "requested": self.index_kind,
                    "vectors": self.index.ntotal, "passages": self.passage_count(),
                    "generation": self._index_gen, "file": self.index_file_info()}
            if isinstance(self.index, FaissIndex):
                # measured when the index was built: sampled stored vectors as queries
                info["recall_at_10"] = self.index.recall
                if self.index.kind == "ivf":
                    info.update(lists=self.index.nlist, lists_searched=self.index.nprobe)
                else:
                    info.update(ef_search=self.index.ef_search,
                                removed_nodes=len(self.index.deleted))
            return info


def filter_to_sql(flt: Filter) -> tuple[str, list[Any]]:
    """SQL for :class:`Filter` over ``documents d``; agrees with :func:`neartext.filters.matches`."""
    parts: list[str] = []
    params: list[Any] = []
    for w in flt.contains:
        parts.append("instr(nt_fold(d.text), ?) > 0")
        params.append(w.casefold())
    for t in flt.conditions:
        sql, ps = term_sql(t)
        parts.append(sql)
        params += ps
    return (" AND ".join(parts) or "1"), params


def term_sql(term: Term) -> tuple[str, list[Any]]:
    """SQL for one filter term, in two-valued logic: each condition is wrapped so that a missing
    field gives false, not NULL, and ``NOT`` of it gives true, as :func:`neartext.filters.matches`
    has it."""
    if isinstance(term, Condition):
        sql, ps = _condition_sql(term)
        return f"COALESCE(({sql}), 0)", ps
    if isinstance(term, Not):
        sql, ps = term_sql(term.term)
        return f"(NOT {sql})", ps
    parts, params = [], []
    for t in term.terms:
        sql, ps = term_sql(t)
        parts.append(sql)
        params += ps
    return "(" + (" OR " if isinstance(term, AnyOf) else " AND ").join(parts) + ")", params


def _condition_sql(c: Condition) -> tuple[str, list[Any]]:
    path = '$."' + c.field.replace('"', '\\"') + '"'
    val = "json_extract(d.metadata, ?)"
    typ = "json_type(d.metadata, ?)"
    if isinstance(c.value, bool):
        want = "true" if c.value else "false"
        if c.op == "=":
            return f"{typ} = ?", [path, want]
        if c.op == "!=":
            return f"({typ} IS NOT NULL AND {typ} != 'null' AND {typ} != ?)", [path, path, path, want]
        return "0", []
    if isinstance(c.value, (int, float)):
        if c.op == "!=":
            return (f"({typ} IS NOT NULL AND {typ} != 'null' AND COALESCE("
                    f"nt_num(IIF({typ} IN ('true','false'), NULL, {val})) != ?, 1))",
                    [path, path, path, path, float(c.value)])
        # JSON true/false come out of json_extract as 1/0: they are not numbers here.
        return (f"nt_num(IIF({typ} IN ('true','false'), NULL, {val})) {c.op} ?",
                [path, path, float(c.value)])
    txt = f"CAST({val} AS TEXT)"
    if c.op == "=":
        return f"({typ} NOT IN ('true','false','null') AND {txt} = ?)", [path, path, c.value]
    return (f"({typ} IS NOT NULL AND {typ} != 'null' AND ({typ} IN ('true','false') OR {txt} != ?))",
            [path, path, path, path, c.value])


def _batches(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


class LocalKind:
    """:class:`~neartext.store.factory.StoreKind` of directories."""

    name = "local"
    state_with_store = True  # ratings, adapters, models: in the collection's directory

    def beside(self, address: Address, what: str) -> Address:
        """Where a new version of the collection is built: ``<dir>.<what>`` next to it."""
        path = _path(address)
        settle_swap(path)  # what an interrupted swap left there is the old version, or the new
        scratch = path.with_name(f"{path.name}.{what}")
        return Address("local", str(scratch), path=scratch)

    def remove(self, address: Address) -> None:
        shutil.rmtree(_path(address), ignore_errors=True)

    def swap(self, store: Store, beside: Address, keep_previous: bool = False) -> None:
        """Put the directory built at ``beside`` in the place of ``store``'s (whose writes the
        caller holds) in one step (:func:`neartext.atomic.swap_dirs`: a kill at any point
        leaves the old version or the new one at the path); the old one goes to
        ``<dir>.previous``, kept with ``keep_previous``. Processes that had the old one open
        find it replaced."""
        assert isinstance(store, LocalStore)
        target = store.path
        swap_dirs(target, _path(beside), target.with_name(target.name + ".previous"),
                  keep_previous)

    def open(self, address: Address) -> LocalStore:
        path = _path(address)
        settle_swap(path)
        if not (path / MANIFEST).is_file():
            raise CollectionNotFound(f"{path}: no collection here; create one with "
                                     "'neartext index'")
        return LocalStore(path)

    def create(self, address: Address, manifest: dict[str, Any],
               options: dict[str, Any] | None = None) -> LocalStore:
        if options:
            raise InputError("--index-param and --search-param apply to Milvus collections")
        return LocalStore.create(_path(address), manifest)

    def exists(self, address: Address) -> bool:
        settle_swap(_path(address))
        return (_path(address) / MANIFEST).is_file()

    @contextlib.contextmanager
    def building(self, address: Address) -> Iterator[Address]:
        """Build in a scratch directory, ``<target>.partial``, that becomes ``target`` only if
        the block completes. One run at a time: the scratch directory is locked, and a second
        run is told who holds it (:class:`~neartext.errors.CollectionBusy`). Vectors an earlier
        run computed before it stopped stay there, and the next build reuses those that fit its
        model (:meth:`LocalStore.create`)."""
        target = _path(address)
        _check_target(target)
        tmp = target.with_name(target.name + ".partial")
        with exclusive(tmp, f"building {target}"):
            _check_target(target)  # again: the run that held the lock may just have finished
            try:
                yield Address("local", str(tmp), path=tmp)
            except BaseException:
                if not LocalStore.has_staged(tmp):  # nothing worth keeping for a rerun
                    release_file(tmp)
                    shutil.rmtree(tmp, ignore_errors=True)
                raise
            if target.exists():
                target.rmdir()
            release_file(tmp)
            tmp.rename(target)

    def connected(self, address: Address) -> contextlib.nullcontext[None]:
        return contextlib.nullcontext()

    def copy_to_directory(self, address: Address, into: Path) -> Path:
        """The manifest and index file copied, the database through SQLite's backup API (a
        writer in another process is no problem; the index is caught up on open)."""
        src = _path(address)
        out = into / "collection"
        out.mkdir(parents=True)
        for name in (MANIFEST, INDEX_FILE):
            if (src / name).is_file():
                shutil.copy2(src / name, out / name)
        copy_sqlite(src / "data.sqlite", out / "data.sqlite")
        return out

    def bytes_on_disk(self, address: Address) -> int | None:
        return sum(f.stat().st_size for f in _path(address).rglob("*") if f.is_file())


def _path(address: Address) -> Path:
    assert address.path is not None
    return address.path


def _check_target(target: Path) -> None:
    settle_swap(target)  # a collection an interrupted swap left aside is the one here
    if (target / MANIFEST).exists():
        raise CollectionExists(f"{target}: a collection already exists here")
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise CollectionExists(f"{target}: exists and is not an empty directory")
    if not target.parent.is_dir():
        raise InputError(f"{target.parent}: the parent directory does not exist")


LOCAL = LocalKind()
