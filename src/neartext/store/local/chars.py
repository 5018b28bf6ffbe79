"""The ``chars`` channel of the local store: each document's character n-grams
(:mod:`neartext.data.chargrams`) in a table (``chargrams``, keyed by the document's rowid),
built by the first chars search (or the first tune that weighs them) in one transaction and
kept in step with every write after it, in the write's own transaction; searched through a
:class:`~neartext.data.chargrams.CharIndex` held in memory and rebuilt from the table when the
collection's generation moved (another process's write included).

Part of :class:`neartext.store.local.LocalStore` (a mixin over its connections and locks).
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Sequence

import numpy as np

from neartext.data import sentences
from neartext.data.chargrams import CharIndex, gram_counts
from neartext.data.filters import Filter
from neartext.store.base import Hit
from neartext.store.local.sql import filter_to_sql
from neartext.store.local.sqlite import batches, fill_from_documents, has_table

CHARS_SCHEMA = ("CREATE TABLE chargrams (rowid INTEGER PRIMARY KEY, grams BLOB NOT NULL, "
                "counts BLOB NOT NULL)")
#: each document's sentences as the learned ranking reads them (:mod:`neartext.data.sentences`),
#: made with the n-gram table and kept in step with it: a search reads them instead of making
#: them from each candidate's text (a collection whose n-grams were made before this table
#: existed gets it from its next ``tune``, or ``reindex``; until then its texts are read)
SENTENCES = "sentences"
SENTENCES_SCHEMA = (f"CREATE TABLE {SENTENCES} (rowid INTEGER PRIMARY KEY, padded TEXT NOT NULL, "
                    "lead INTEGER)")


class CharsIndex:
    """The chars channel (see the module docs); what it needs of the store is declared here
    and provided by :class:`LocalStore`."""

    has_chars_channel = True
    _lock: threading.RLock
    _chars: tuple[int, CharIndex] | None = None  # (generation, index)

    @property
    def conn(self) -> sqlite3.Connection:
        raise NotImplementedError

    def _transaction(self) -> contextlib.AbstractContextManager[None]:
        raise NotImplementedError

    def generation(self) -> int:
        raise NotImplementedError

    def _snapshot(self) -> contextlib.AbstractContextManager[None]:
        raise NotImplementedError

    def chars_search(
        self, queries: Sequence[str], k: int, flt: Filter | None = None
    ) -> list[list[Hit]]:
        """Top ``k`` documents per query by BM25 over shared character 3- and 4-grams
        (``score``: higher is better); documents sharing no gram are not returned."""
        index = self._char_index()
        allowed = None
        if flt:
            where, params = filter_to_sql(flt)
            with self._lock:
                allowed = np.array([r for (r,) in self.conn.execute(
                    f"SELECT d.rowid FROM documents d WHERE {where}", params)], dtype=np.int64)
        out: list[list[Hit]] = []
        for q in queries:
            found = index.search(q, k, allowed) if k >= 1 else []
            ids = self._ids_of_rows([r for r, _ in found])
            out.append([Hit(ids[r][0], s, 0, ids[r][1]) for r, s in found if r in ids])
        return out

    def chars_norms(self, queries: Sequence[str]) -> list[float]:
        """Per query, the chars score of a document of average length sharing each of its
        grams once (to put scores on one scale: about 1 = every gram shared)."""
        index = self._char_index()
        return [index.norm(q) for q in queries]

    def _ids_of_rows(self, rows: list[int]) -> dict[int, tuple[str, int]]:
        out: dict[int, tuple[str, int]] = {}
        with self._lock:
            for part in batches(rows, 900):
                marks = ",".join("?" * len(part))
                out.update((r, (d, n)) for r, d, n in self.conn.execute(
                    f"SELECT rowid, id, length(text) FROM documents WHERE rowid IN ({marks})",
                    part))
        return out

    def _char_index(self) -> CharIndex:
        """The in-memory index at the database's generation (built, or rebuilt, from the
        table; the table itself made first if it does not exist yet)."""
        if not self.has_chars_index():
            # made (or found made by another process) and read on the writer's connection: the
            # reader's, shared by threads, may be held in a snapshot older than the table by
            # another thread's open statement
            with self._transaction():
                if not self.has_chars_index():
                    self._fill_chars()
                self._chars = (self.generation(), self._read_chars())
        with self._lock:
            gen = self.generation()
            if self._chars is None or self._chars[0] != gen:
                with self._snapshot():
                    self._chars = (self.generation(), self._read_chars())
            return self._chars[1]

    def _read_chars(self) -> CharIndex:
        rows, blobs = [], []
        for r, g, c in self.conn.execute("SELECT rowid, grams, counts FROM chargrams"):
            rows.append(r)
            blobs.append((g, c))
        return CharIndex.build(rows, blobs)

    def _fill_chars(self) -> None:
        """Make the n-gram table and the sentences' (inside the caller's transaction)."""
        if not self.has_chars_index():
            fill_from_documents(self.conn, CHARS_SCHEMA,
                                "INSERT INTO chargrams VALUES (?, ?, ?)",
                                lambda r, t: (r, *gram_counts(t)))
        if not self.has_sentences():
            fill_from_documents(self.conn, SENTENCES_SCHEMA,
                                f"INSERT INTO {SENTENCES} VALUES (?, ?, ?)",
                                lambda r, t: (r, *sentences.stored(sentences.parse(t))))

    def ensure_chars(self) -> bool:
        """Make the n-gram table and the sentences' if this collection lacks either (one
        transaction). Returns True when one was made now."""
        if self.has_chars_index() and self.has_sentences():
            return False
        with self._transaction():
            if self.has_chars_index() and self.has_sentences():  # made by another process
                return False
            self._fill_chars()
        return True

    def has_chars_index(self) -> bool:
        """Whether the n-gram table exists (made by the first chars search)."""
        return has_table(self.conn, "chargrams")

    def has_sentences(self) -> bool:
        """Whether the table of the documents' sentences exists (made with the n-grams')."""
        return has_table(self.conn, SENTENCES)

    def _chars_delete(self, doc_ids: list[str]) -> None:
        kept = self.has_sentences()
        for part in batches(doc_ids, 900):
            marks = ",".join("?" * len(part))
            for table in ("chargrams", SENTENCES) if kept else ("chargrams",):
                self.conn.execute(f"DELETE FROM {table} WHERE rowid IN "
                                  f"(SELECT rowid FROM documents WHERE id IN ({marks}))", part)

    def _chars_add(self, docs: list[tuple[str, str]]) -> None:
        self.conn.executemany(
            "INSERT OR REPLACE INTO chargrams SELECT rowid, ?, ? FROM documents WHERE id = ?",
            [(*gram_counts(text), doc) for doc, text in docs])
        if self.has_sentences():
            self.conn.executemany(
                f"INSERT OR REPLACE INTO {SENTENCES} SELECT rowid, ?, ? FROM documents "
                "WHERE id = ?",
                [(*sentences.stored(sentences.parse(text)), doc) for doc, text in docs])
