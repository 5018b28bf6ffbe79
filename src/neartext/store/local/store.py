"""The embedded store: documents and vectors in SQLite, plus an in-memory vector index.

Layout of a collection directory::

    manifest.json   what built the collection (model, settings); see neartext.data.manifest (this
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
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from neartext.data.filters import Filter
from neartext.errors import (
    CollectionNotFound,
    CollectionReplaced,
    CorruptCollection,
    InputError,
    StorageError,
)
from neartext.store.base import (
    Document,
    Hit,
    Passage,
    StoreBase,
    StoreSettings,
    WriteResult,
    check_store_manifest,
)
from neartext.store.codec import codec
from neartext.store.local.chars import CharsIndex
from neartext.store.local.files import remove_orphan_temp_files, write_json_atomic
from neartext.store.local.index_cache import IndexCache
from neartext.store.local.keyword import KeywordIndex
from neartext.store.local.reuse import MANIFEST, keep_reusable_vectors
from neartext.store.local.sql import filter_to_sql
from neartext.store.local.sqlite import SCHEMA, ThreadReaders, batches, connect, storage_error
from neartext.store.vector_index import ExactIndex
from neartext.util.atomic import settle_swap
from neartext.util.locking import waiting

log = logging.getLogger("neartext")

INDEX_KINDS = ("auto", "flat", "hnsw", "ivf")
PASSAGE_INFO_CACHE = 100_000  # passages whose document and span a handle remembers
MANIFEST_LOCK = "manifest.lock"


















class LocalStore(KeywordIndex, CharsIndex, IndexCache, StoreBase):
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
        conf = StoreSettings.of(self.path / MANIFEST, self._manifest)
        self.dim = conf.dim
        self.chunked = conf.chunked
        self.index_kind = index or conf.index
        self.codec = codec(conf.precision, self.dim)
        if self.index_kind not in INDEX_KINDS:
            raise InputError(f"Unknown index '{self.index_kind}'; choose one of: {', '.join(INDEX_KINDS)}")
        # Writes (one at a time in this process, under ``_write_lock``) go through ``_wconn``,
        # which may wait up to 30 s for another process's write lock; reads go through a
        # connection of the reading thread's own (WAL: readers see the last commit and are
        # never blocked), so that one thread's read snapshot never holds another thread's
        # reads in the past (``_rconn``, the opening thread's, is also the fallback). ``_lock``
        # guards the in-memory index and is never held while waiting for a write lock.
        # ``conn`` is the writer's connection in the thread inside a write, the thread's
        # reader everywhere else.
        self._lock = threading.RLock()
        self._write_lock = threading.RLock()
        self._writing = threading.local()
        db = self.path / "data.sqlite"
        if not db.is_file():
            raise CorruptCollection(f"{self.path}: data.sqlite is missing")
        while True:  # the database file these connections are to (a swap replaces the
            ino = os.stat(db).st_ino  # directory), and the manifest that goes with it
            self._wconn = connect(db)
            self._rconn = connect(db)
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
        self._readers = ThreadReaders(db, self._db_ino, self._rconn)
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
        keep_reusable_vectors(p, manifest)
        conn = connect(p / "data.sqlite")
        try:
            conn.executescript(SCHEMA)
        except sqlite3.Error as e:
            raise storage_error(p, e, "the collection was not created") from None
        finally:
            conn.close()
        write_json_atomic(p / MANIFEST, manifest)
        return cls(p)

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
        thread's reader (:class:`~neartext.store.local.sqlite.ThreadReaders`)."""
        if getattr(self._writing, "on", False):
            return self._wconn
        return self._readers.get()

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
        for part in batches(list(ids), 900):
            q = f"SELECT id, hash FROM documents WHERE id IN ({','.join('?' * len(part))})"
            out.update(self.conn.execute(q, part))
        return out

    def _vectors_in(self, table: str, hashes: list[str]) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for part in batches(hashes, 900):
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
        for part in batches(list(ids), 900):
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
                for part in batches(list(replaced) + gone, 900):
                    marks = ",".join("?" * len(part))
                    self.conn.execute(f"DELETE FROM passages WHERE doc_id IN ({marks})", part)
                lexical, chars = self.has_keyword_index(), self.has_chars_index()
                if lexical:
                    self._lexical_delete(list(existing) + gone)  # before their rows go
                if chars:
                    self._chars_delete(gone)
                removed = 0
                for part in batches(gone, 900):
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
                if chars:  # (a document kept its rowid: its row is replaced)
                    self._chars_add([(d.id, d.text) for d in documents])
                result = self.write_counts(documents, existing, removed)
                new_pids = self._next_pids(len(passages))
                self.conn.executemany(
                    "INSERT INTO passages VALUES (?, ?, ?, ?, ?, ?)",
                    [(int(pid), p.doc_id, p.start, p.end, p.hash, blob)
                     for pid, p, blob in zip(new_pids, passages, self.codec.encode(
                         np.array([p.vector for p in passages], dtype=np.float32)))])
                # Staged vectors exist to resume an interrupted write; those stored now are no
                # longer needed. Others may belong to a write still running in another process.
                for part in batches(sorted({p.hash for p in passages}), 900):
                    marks = ",".join("?" * len(part))
                    self.conn.execute(f"DELETE FROM staged WHERE hash IN ({marks})", part)
                self.conn.execute(
                    "UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key='generation'")
            # Committed. The index is a cache: from here on a failure is a warning, never an
            # error that would claim the committed change did not happen.
            if self._defer_index:  # built at the end of the block (index_deferred)
                self._reclaim()
                return result
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
        for part in batches(doc_ids, 900):
            marks = ",".join("?" * len(part))
            pids += [r[0] for r in self.conn.execute(
                f"SELECT pid FROM passages WHERE doc_id IN ({marks})", part)]
        return np.array(pids, dtype=np.int64)

    def close(self) -> None:
        with self._write_lock, self._lock:
            self._wconn.close()
            self._readers.close()
            self.index = ExactIndex(self.dim)  # its memory goes now (closed: it searches nothing)

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
            chunked = self.chunked
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
        for part in batches(wanted, 900):
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

    def doc_vectors(self, doc_ids: Sequence[str]) -> dict[str, np.ndarray]:
        """Every passage vector of the given documents, ``doc_id -> (n_passages, dim)``."""
        out: dict[str, np.ndarray] = {}
        for part in batches(list(doc_ids), 900):
            marks = ",".join("?" * len(part))
            rows = self.conn.execute(f"SELECT doc_id, vec FROM passages WHERE doc_id IN "
                                     f"({marks}) ORDER BY doc_id, pid", part).fetchall()
            if not rows:
                continue
            vecs = self.codec.decode([r[1] for r in rows])  # one decode, one array per batch
            docs = [r[0] for r in rows]
            starts = [i for i in range(len(docs)) if i == 0 or docs[i] != docs[i - 1]]
            for a, b in zip(starts, [*starts[1:], len(docs)]):
                out[docs[a]] = vecs[a:b]
        return out

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
