"""The vector index a local store's handle keeps in memory: a cache of the database's passages
(the source of truth), opened from its file, caught up with other processes' writes by passage
ids (never reused), rebuilt when stale, saved labelled with the generation it holds, repaired.

Part of :class:`neartext.store.local.LocalStore` (a mixin over its connections and locks).
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import struct
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from neartext.data.vectors import tuning_vectors
from neartext.errors import CorruptCollection
from neartext.store.codec import VectorCodec
from neartext.store.index_file import load_index, read_index_header, save_index
from neartext.store.local.sqlite import batches, has_table, passage_vectors, storage_error
from neartext.store.vector_index import (
    ADD_ROWS,
    FaissIndex,
    VectorIndex,
    build_hnsw,
    build_index,
)

log = logging.getLogger("neartext")
INDEX_FILE = "index.bin"
# passages from which `auto` uses an HNSW graph (tuned at build for recall@10 >= 0.99): at 20,000
# real vectors (bench/bench_ann.py) a query takes a tenth of the exact index's time, filtered
# ones are exact; below, the exact index is about a millisecond and builds in no time
AUTO_ANN_ABOVE = 20_000
# passages read at a time when an index file's vectors come back (sqlite.passage_vectors: SQLite
# joins each chunk's vectors): at a million 384-float vectors the whole read took 0.9-1.1 s in
# chunks of 256-1,024 and 2.2 s in chunks of 16,384 or 65,536, the joined bytes of a small chunk
# staying in the processor's cache (the whole open: 2.0-2.2 s against 3.0-3.8 s before)
READ_ROWS = 1_024
# what a search setting chosen on given queries reaches: recall@10 against exact search, as
# the one-sided 95% lower bound over those queries (FaissIndex.tune's bound)
TUNED_RECALL = 0.99
QUERIES_TABLE = "CREATE TABLE IF NOT EXISTS index_queries (n INTEGER PRIMARY KEY, vec BLOB NOT NULL)"


class IndexCache:
    """The vector index a handle keeps in memory and its file (see the module docs); what it
    needs of the store is declared here and provided by :class:`LocalStore`."""

    path: Path
    dim: int
    index_kind: str
    codec: VectorCodec
    index: VectorIndex
    _index_gen: int  # the database generation ``index`` holds
    _defer_index = False  # inside index_deferred(): writes leave the index alone
    _tuned_for = 0  # the stored tuning queries (their stamp) the index's setting was chosen on
    _lock: threading.RLock
    _write_lock: threading.RLock

    @property
    def conn(self) -> sqlite3.Connection:
        raise NotImplementedError

    def generation(self) -> int:
        raise NotImplementedError

    def count(self) -> int:
        raise NotImplementedError

    def passage_count(self) -> int:
        raise NotImplementedError

    def iter_vectors(self, batch_size: int = 8192) -> Iterator[tuple[list[str], np.ndarray]]:
        raise NotImplementedError

    def _snapshot(self) -> contextlib.AbstractContextManager[None]:
        raise NotImplementedError

    def _as_writer(self) -> contextlib.AbstractContextManager[None]:
        raise NotImplementedError

    def _transaction(self) -> contextlib.AbstractContextManager[None]:
        raise NotImplementedError

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
        seen: list[np.ndarray] = []  # every passage id, when the vectors come in one scan
        try:
            with self._snapshot():
                gen = self.generation()
                self.index, header = load_index(
                    self.path / INDEX_FILE, self.dim,
                    lambda pids: self._vectors_by_pid(pids, seen))
            self._index_gen = int(header["generation"])
            self._tuned_for = int(header.get("tuned_for") or 0)
            if isinstance(self.index, FaissIndex):
                self.index.tuned_on = int(header.get("tuned_on") or 0)
        except (OSError, ValueError, RuntimeError, KeyError, TypeError, struct.error):
            return self._rebuild_index(save=True)  # missing, old format or damaged
        if self._index_gen > gen:  # a database restored from an older copy
            return self._rebuild_index(save=True)
        file_generation = self._index_gen
        # the scan that read the vectors listed the database's passages at generation `gen`:
        # caught up against that list, not a second scan (0.6 s at a million)
        known = (gen, np.concatenate(seen)) if seen else None
        # saved again when it changed, or when only its label was behind (passages another
        # process removed were already left out while reading it)
        if self._catch_up(force=True, known=known) or self._index_gen != file_generation:
            self._persist_index(quiet=True)
        return self.index

    def _sync_index(self) -> None:
        """Catch the in-memory index up when the database moved on (call with the lock)."""
        if self.generation() != self._index_gen:
            self._catch_up()  # (setting tuning queries moves the generation too)

    def _catch_up(self, force: bool = False,
                  known: tuple[int, np.ndarray] | None = None) -> bool:
        """Make the index hold exactly the database's passages, reading only those added since
        (passage ids are never reused, so ids tell what changed). Returns whether anything
        changed. One read snapshot, so the generation and the passages agree; ``known``: a
        generation and its passage ids (sorted) the caller read in one snapshot, listed again
        only if the database moved on since."""
        with self._snapshot():
            gen = self.generation()
            if gen == self._index_gen and not force:
                return False
            if known is not None and known[0] == gen:
                db = known[1]
            else:  # no ORDER BY: SQLite then scans a small covering index, not the vector pages
                db = np.sort(np.fromiter((r[0] for r in self.conn.execute(
                    "SELECT pid FROM passages")), dtype=np.int64))
            have = self.index.stored_ids()
            gone = np.setdiff1d(have, db, assume_unique=True)
            new = np.setdiff1d(db, have, assume_unique=True)
            if not len(gone) and not len(new):
                self._index_gen = gen
                return self._tune_on_queries()
            if self._stale(len(db)) or len(new) > max(1024, len(db) // 2) or (
                    len(gone) and not self.index.remove(gone)):
                self._rebuild_index()
                return True
            self.index.add(self._vectors_of(new), new)
            self._index_gen = gen
            self._tune_on_queries()
            return True

    # -- the search setting, tuned on queries like the users' -----------------------------------

    def tunes_index(self) -> bool:
        return True

    def tune_index(self, queries: np.ndarray) -> dict[str, Any]:
        """Store ``queries`` (vectors, as the index is searched with) as the ones this
        collection's search setting is chosen on, instead of rows held out of the collection,
        and choose it now: the cheapest whose recall@10 against exact search reaches
        :data:`TUNED_RECALL` as a one-sided 95% lower bound over them. Kept in the database,
        so every later rebuild, and every process, tunes on them too (a write: the generation
        moves, other handles retune when they catch up). Returns :meth:`index_info`.

        >>> store.tune_index(col.query_encoder.encode(queries, kind="query"))  # doctest: +SKIP
        """
        q = tuning_vectors(queries, self.dim)
        with self._transaction():
            self.conn.execute(QUERIES_TABLE)
            self.conn.execute("DELETE FROM index_queries")
            self.conn.executemany("INSERT INTO index_queries VALUES (?, ?)",
                                  [(i, row.tobytes()) for i, row in enumerate(q)])
            self.conn.execute(
                "UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key='generation'")
            self.conn.execute("INSERT OR REPLACE INTO meta SELECT 'tuning_queries', value "
                              "FROM meta WHERE key='generation'")
        with self._lock:
            self._catch_up()
            self._persist_index()
        return self.index_info()

    def _query_stamp(self) -> int:
        """Which tuning queries the database holds: the generation that stored them, 0 if
        none (in the caller's snapshot)."""
        row = self.conn.execute("SELECT value FROM meta WHERE key='tuning_queries'").fetchone()
        return int(row[0]) if row else 0

    def _tune_on_queries(self) -> bool:
        """Choose the index's search setting on the stored tuning queries if it was not chosen
        on these (in the caller's snapshot); whether it was."""
        stamp = self._query_stamp()
        if stamp == self._tuned_for:
            return False
        self._tuned_for = stamp
        if not isinstance(self.index, FaissIndex) or self.index.ntotal <= 10 \
                or not has_table(self.conn, "index_queries"):
            return False
        raw = b"".join(r[0] for r in self.conn.execute("SELECT vec FROM index_queries ORDER BY n"))
        q = np.frombuffer(raw, dtype=np.float32).reshape(-1, self.dim)
        if len(q):
            self.index.tune(None, queries=q, exact=self._exact_top(q, 10), bound=TUNED_RECALL)
            self.index.tuned_on = len(q)
        return True

    def _exact_top(self, queries: np.ndarray, k: int) -> np.ndarray:
        """The pids of each query's ``k`` best passages by a scan of the database (in the
        caller's snapshot), a chunk of :data:`READ_ROWS` at a time."""
        best_s = np.full((len(queries), 0), -np.inf, dtype=np.float32)
        best_i = np.zeros((len(queries), 0), dtype=np.int64)
        for ids, raw in passage_vectors(self.conn, self.codec.row_bytes, READ_ROWS * 4):
            s = queries @ self.codec.decode_joined(raw, len(ids), writeable=False).T
            all_s = np.concatenate([best_s, s], axis=1)
            all_i = np.concatenate([best_i, np.broadcast_to(ids, s.shape)], axis=1)
            if all_s.shape[1] > k:
                top = np.argpartition(-all_s, k - 1, axis=1)[:, :k]
                all_s = np.take_along_axis(all_s, top, 1)
                all_i = np.take_along_axis(all_i, top, 1)
            best_s, best_i = all_s, all_i
        return best_i

    def _vectors_by_pid(self, pids: np.ndarray, seen: list[np.ndarray] | None = None
                        ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(pids found, their vectors)`` in ascending pid order, a chunk at a time, in one
        read snapshot: how an index file's vectors come back from the database (they are stored
        once, here). When that takes a scan of every passage, their ids (ascending) are
        appended to ``seen``."""
        pids = np.asarray(pids, dtype=np.int64)
        if len(pids) and not (pids[1:] > pids[:-1]).all():  # (an index file's are sorted)
            pids = np.unique(pids)
        with self._snapshot():
            if len(pids) * 2 >= self.passage_count():  # most of them: one ordered scan
                for ids, raw in passage_vectors(self.conn, self.codec.row_bytes, READ_ROWS):
                    if seen is not None:
                        seen.append(ids)
                    # (read only by the caller: no copy of the bytes)
                    vectors = self.codec.decode_joined(raw, len(ids), writeable=False)
                    keep = _members(ids, pids)
                    if not keep.all():
                        ids, vectors = ids[keep], vectors[keep]
                    if len(ids):
                        yield ids, vectors
                return
            found: dict[int, bytes] = {}
            for part in batches([int(p) for p in pids], 900):
                marks = ",".join("?" * len(part))
                found.update(self.conn.execute(
                    f"SELECT pid, vec FROM passages WHERE pid IN ({marks})", part))
        if found:
            order = sorted(found)
            yield np.asarray(order, dtype=np.int64), self.codec.decode([found[p] for p in order])

    def _vectors_of(self, pids: np.ndarray) -> np.ndarray:
        out = np.zeros((len(pids), self.dim), dtype=np.float32)
        pos = {int(p): i for i, p in enumerate(pids)}
        for part in batches([int(p) for p in pids], 900):
            marks = ",".join("?" * len(part))
            for pid, blob in self.conn.execute(
                    f"SELECT pid, vec FROM passages WHERE pid IN ({marks})", part):
                out[pos[pid]] = self.codec.decode_one(blob)
        return out

    def _vector_chunks(self, pids: np.ndarray, rows: int) -> Iterator[np.ndarray]:
        """The vectors of ``pids`` (every passage's, ascending, read in the caller's snapshot)
        in new float32 arrays of ``rows`` (the last one shorter). SQLite joins them
        :data:`READ_ROWS` at a time (:func:`~neartext.store.local.sqlite.passage_vectors`), each
        decoded into its place: besides the array being filled only one small chunk of bytes is
        held (100,000 vectors in arrays of 65,536 read as rows of bytes, joined, then copied:
        about 300 MB more at the first array)."""
        done = 0
        buf = np.empty((min(rows, len(pids)), self.dim), dtype=np.float32)
        filled = 0
        for ids, raw in passage_vectors(self.conn, self.codec.row_bytes, READ_ROWS):
            if not np.array_equal(ids, pids[done:done + len(ids)]):
                raise CorruptCollection(f"{self.path}: the passages' vectors do not match "
                                        "their ids; run `neartext repair`")
            vectors = self.codec.decode_joined(raw, len(ids), writeable=False)
            done += len(ids)
            at = 0
            while at < len(ids):
                take = min(len(ids) - at, len(buf) - filled)
                buf[filled:filled + take] = vectors[at:at + take]
                filled, at = filled + take, at + take
                if filled == len(buf):
                    yield buf
                    buf = np.empty((min(rows, len(pids) - done + len(ids) - at), self.dim),
                                   dtype=np.float32)
                    filled = 0
        if done != len(pids):
            raise CorruptCollection(f"{self.path}: {done} passages' vectors for {len(pids)} ids; "
                                    "run `neartext repair`")

    def _rebuild_index(self, save: bool = False) -> VectorIndex:
        """A new index of every passage in SQLite (the source of truth), in one snapshot."""
        with self._snapshot():
            gen = self.generation()
            pids = np.fromiter((r[0] for r in self.conn.execute(
                "SELECT pid FROM passages ORDER BY pid")), dtype=np.int64)
            kind = self._wanted_kind(len(pids))
            # tuned: the cheapest search setting reaching recall@10 >= 0.993
            if kind == "hnsw":  # the graph takes the vectors as they are read: one copy of them
                self.index = build_hnsw(self.dim, self._vector_chunks(pids, ADD_ROWS), pids)
            else:
                self.index = build_index(kind, self.dim, next(
                    self._vector_chunks(pids, len(pids)),
                    np.zeros((0, self.dim), dtype=np.float32)), pids)
            self._tuned_for = 0
            self._tune_on_queries()  # (when the database holds tuning queries)
        self._index_gen = gen
        if save:
            self._persist_index(quiet=True)
        return self.index

    @contextlib.contextmanager
    def index_deferred(self) -> Iterator[None]:
        """Writes inside leave the vector index alone (nor save it); when the block ends
        without an error it is built once from every passage and saved: a new collection
        written in parts gets one HNSW build of all its vectors, tuned for all of them, instead
        of one per part. A search inside catches the index up first, as always."""
        self._defer_index = True
        try:
            yield
        finally:
            self._defer_index = False
        with self._lock:
            self._rebuild_index(save=True)

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
            save_index(self.index, self.path / INDEX_FILE, {"generation": self._index_gen,
                                                             "tuned_for": self._tuned_for})
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
        # one read snapshot: the passages counted are those of the generation the index holds
        # (counted after it, a write landing between said "vectors 27,340, passages 27,385")
        with self._lock, self._snapshot():
            self._sync_index()
            info = {"kind": self.index.kind, "requested": self.index_kind,
                    "vectors": self.index.ntotal, "passages": self.passage_count(),
                    "generation": self._index_gen, "file": self.index_file_info()}
            if isinstance(self.index, FaissIndex):
                # measured when the setting was chosen: on rows held out of the graph while
                # it was built, or on the tuning queries stored (tune_index)
                info["recall_at_10"] = self.index.recall
                info["tuned_on"] = (f"{self.index.tuned_on} given queries"
                                    if self.index.tuned_on else "the collection's rows")
                if self.index.kind == "ivf":
                    info.update(lists=self.index.nlist, lists_searched=self.index.nprobe)
                else:
                    info.update(ef_search=self.index.ef_search,
                                removed_nodes=len(self.index.deleted))
            return info


def _members(ids: np.ndarray, pids: np.ndarray) -> np.ndarray:
    """Which of ``ids`` are in ``pids`` (both ascending, unique); a run of ``pids``, as when
    an index file's vectors are read back, is recognised in one comparison of the run."""
    if not len(ids):
        return np.zeros(0, dtype=bool)
    lo = int(np.searchsorted(pids, ids[0]))
    if np.array_equal(pids[lo:lo + len(ids)], ids):
        return np.ones(len(ids), dtype=bool)
    return np.isin(ids, pids, assume_unique=True)
