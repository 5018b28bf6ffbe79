"""Keyword search of the local store: an FTS5 table (``lexical``) of each document's stemmed
words (:mod:`neartext.data.lexical`), ranked by FTS5's BM25, built by the first keyword or
hybrid search in one transaction and kept in step with every write after it.

Part of :class:`neartext.store.local.LocalStore` (a mixin over its connections and locks).
"""

from __future__ import annotations

import contextlib
import math
import sqlite3
import threading
from collections.abc import Sequence

from neartext.data.filters import Filter
from neartext.data.lexical import index_text, match_expression
from neartext.data.sentences import from_stored
from neartext.store.base import CandidateText, Hit
from neartext.store.local.chars import SENTENCES
from neartext.store.local.sql import filter_to_sql
from neartext.store.local.sqlite import LEXICAL_SCHEMA, batches, fill_from_documents, has_table


class KeywordIndex:
    """Keyword search (see the module docs); what it needs of the store is declared here and
    provided by :class:`LocalStore`."""

    _lock: threading.RLock

    @property
    def conn(self) -> sqlite3.Connection:
        raise NotImplementedError

    def _transaction(self) -> contextlib.AbstractContextManager[None]:
        raise NotImplementedError

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

    def candidate_texts(self, ids: Sequence[str], limit: int) -> dict[str, CandidateText]:
        """Each known document's text, the first ``limit`` characters of the stems its keyword
        index holds and its sentences where they are kept (one read: the candidates of a
        learned fusion are not stemmed and split again at each query); the index is built
        first if need be, as for a search."""
        self.ensure_lexical()
        kept = has_table(self.conn, SENTENCES)
        # (a document without a row of sentences has them read from its text)
        cols = "s.rowid IS NOT NULL, s.padded, s.lead" if kept else "0, NULL, NULL"
        join = f"LEFT JOIN {SENTENCES} s ON s.rowid = d.rowid " if kept else ""
        out: dict[str, CandidateText] = {}
        with self._lock:
            for part in batches(list(ids), 900):
                for i, t, st, has, padded, lead in self.conn.execute(
                        f"SELECT d.id, d.text, substr(l.terms, 1, ?), {cols} FROM documents d "
                        f"LEFT JOIN lexical l ON l.rowid = d.rowid {join}"
                        f"WHERE d.id IN ({','.join('?' * len(part))})", [limit, *part]):
                    out[i] = CandidateText(
                        t, st if st is not None else index_text(t[:limit])[:limit],
                        from_stored(padded, lead) if has else None)
        return out

    def _document_frequencies(self, words: list[str]) -> dict[str, int]:
        """Documents holding each stemmed word, from FTS5's vocabulary."""
        self.ensure_lexical()
        df: dict[str, int] = {}
        with self._lock:
            self.conn.execute("CREATE VIRTUAL TABLE IF NOT EXISTS temp.lexical_vocab "
                              "USING fts5vocab(main, lexical, row)")
            for part in batches(words, 900):
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
            fill_from_documents(self.conn, LEXICAL_SCHEMA,
                                "INSERT INTO lexical(rowid, terms) VALUES (?, ?)",
                                lambda r, t: (r, index_text(t)))
        return True

    def has_keyword_index(self) -> bool:
        """Whether the full-text index exists (it is built by the first keyword search)."""
        return has_table(self.conn, "lexical")

    def _lexical_delete(self, doc_ids: list[str]) -> None:
        for part in batches(doc_ids, 900):
            marks = ",".join("?" * len(part))
            self.conn.execute(f"DELETE FROM lexical WHERE rowid IN "
                              f"(SELECT rowid FROM documents WHERE id IN ({marks}))", part)

    def _lexical_add(self, docs: list[tuple[str, str]]) -> None:
        self.conn.executemany(
            "INSERT INTO lexical(rowid, terms) SELECT rowid, ? FROM documents WHERE id = ?",
            [(index_text(text), doc) for doc, text in docs])
