"""Relevance feedback: 👍/👎 ratings of search results, kept inside the collection, and their
export as training data for ``neartext train``.

Ratings live in ``feedback.sqlite`` in the collection directory (its own database, so a rating
never waits for an index write). The latest rating of a (query, document) pair wins.

Example:
    >>> import tempfile
    >>> fb = FeedbackStore(tempfile.mkdtemp())
    >>> fb.add("app crashes", "fb-1", True)["relevant"]
    True
    >>> [r["doc_id"] for r in fb.list()]
    ['fb-1']
"""

from __future__ import annotations

import csv
import os
import random
import sqlite3
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from neartext.errors import InputError
from neartext.util.atomic import staged_file

FEEDBACK_DB = "feedback.sqlite"
MAX_QUERY_CHARS = 2000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY, query TEXT NOT NULL, doc_id TEXT NOT NULL,
    relevant INTEGER NOT NULL CHECK (relevant IN (0, 1)), created TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS feedback_query ON feedback(query, doc_id);
"""


class FeedbackStore:
    """The ratings of one collection (``<collection>/feedback.sqlite``, made on first write)."""

    def __init__(self, collection_path: str | Path) -> None:
        self.path = Path(collection_path) / FEEDBACK_DB
        # A reading connection and a writing one, so that a rating waiting for the file's
        # write lock (a swap holds it while the ratings are copied to the new version) never
        # holds up a read (the service counts ratings in its event loop).
        self._lock = threading.Lock()  # the reader's connection
        self._write_lock = threading.Lock()  # ratings, one at a time
        self._conns: dict[str, sqlite3.Connection | None] = {"read": None, "write": None}
        self._inodes = {"read": -1, "write": -1}  # the file each connection is to

    def _moved(self, role: str) -> bool:
        """Whether the path now holds another file than the connection's (a ``reindex`` by
        another process swapped in the new version's copy of the ratings)."""
        try:
            return os.stat(self.path).st_ino != self._inodes[role]
        except OSError:
            return True

    def _db(self, create: bool, role: str = "read") -> sqlite3.Connection | None:
        conn = self._conns[role]
        if conn is not None and self._moved(role):
            conn.close()  # follow the ratings to the collection's current version
            conn = self._conns[role] = None
        if conn is None:
            if not create and not self.path.is_file():
                return None
            self.path.parent.mkdir(parents=True, exist_ok=True)  # a Milvus collection's state dir
            conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None,
                                   timeout=30)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(_SCHEMA)
            self._conns[role] = conn
            self._inodes[role] = os.stat(self.path).st_ino
        return conn

    def add(self, query: str, doc_id: str, relevant: bool) -> dict[str, Any]:
        """Store one rating with the current UTC time; returns the stored row."""
        query = " ".join(str(query).split())
        if not query:
            raise InputError("feedback needs the query that was searched")
        if len(query) > MAX_QUERY_CHARS:
            raise InputError(f"query longer than {MAX_QUERY_CHARS} characters")
        if not str(doc_id):
            raise InputError("feedback needs the id of the rated document")
        created = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        with self._write_lock:
            while True:
                db = self._db(create=True, role="write")
                assert db is not None
                db.execute("BEGIN IMMEDIATE")
                if not self._moved("write"):
                    break
                db.execute("ROLLBACK")  # swapped while waiting for the lock: to the new file
            try:
                cur = db.execute("INSERT INTO feedback (query, doc_id, relevant, created) "
                                 "VALUES (?,?,?,?)",
                                 (query, str(doc_id), int(bool(relevant)), created))
                row_id = cur.lastrowid
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        return {"id": row_id, "query": query, "doc_id": str(doc_id), "relevant": bool(relevant),
                "created": created}

    def list(self, limit: int | None = None, offset: int = 0) -> list[dict[str, Any]]:
        """Ratings, newest first."""
        with self._lock:
            db = self._db(create=False)
            if db is None:
                return []
            rows = db.execute("SELECT id, query, doc_id, relevant, created FROM feedback "
                              "ORDER BY id DESC LIMIT ? OFFSET ?",
                              (-1 if limit is None else int(limit), int(offset))).fetchall()
        return [{"id": i, "query": q, "doc_id": d, "relevant": bool(r), "created": c}
                for i, q, d, r, c in rows]

    def newest_id(self) -> int:
        """The id of the newest rating (ids only grow), 0 without ratings."""
        with self._lock:
            db = self._db(create=False)
            if db is None:
                return 0
            return int(db.execute("SELECT COALESCE(MAX(id), 0) FROM feedback").fetchone()[0])

    def count_after(self, rating_id: int) -> int:
        """How many ratings came after the one with ``rating_id``."""
        with self._lock:
            db = self._db(create=False)
            if db is None:
                return 0
            return int(db.execute("SELECT COUNT(*) FROM feedback WHERE id > ?",
                                  (int(rating_id),)).fetchone()[0])

    def count(self) -> int:
        with self._lock:
            db = self._db(create=False)
            return 0 if db is None else int(db.execute("SELECT COUNT(*) FROM feedback").fetchone()[0])

    def latest(self) -> dict[tuple[str, str], bool]:
        """The latest rating of every (query, document) pair."""
        out: dict[tuple[str, str], bool] = {}
        for r in reversed(self.list()):
            out[(r["query"], r["doc_id"])] = r["relevant"]
        return out

    def close(self) -> None:
        with self._write_lock, self._lock:
            for role, conn in self._conns.items():
                if conn is not None:
                    conn.close()
                    self._conns[role] = None


@dataclass
class FeedbackExport:
    """What :func:`export_feedback` wrote."""

    path: str
    format: str
    rows: int
    queries: int
    positives: int
    negatives: int
    missing_documents: list[str] = field(default_factory=list)
    queries_without_positive: int = 0

    def summary(self) -> str:
        s = (f"{self.path}: {self.rows} training rows ({self.format}) from {self.queries} queries: "
             f"{self.positives} relevant, {self.negatives} not relevant")
        if self.queries_without_positive:
            s += (f"; {self.queries_without_positive} queries had only 👎 ratings and give no row "
                  "(a row needs a relevant passage)")
        if self.missing_documents:
            s += f"; {len(self.missing_documents)} rated documents are no longer in the collection"
        return s


def export_feedback(collection: Any, output: str | Path, *, seed: int = 42) -> FeedbackExport:
    """Write the collection's ratings as training data for ``neartext train``.

    Every 👍 becomes a (query, passage) row. When some queries also have 👎 ratings the file has
    a third column, ``negative``: each 👎 passage of a query is paired with each of that query's
    👍 passages, and rows of queries without a 👎 get the passage of another query (a random
    negative, as in-batch negatives are). ``neartext train`` reads the file as it is.

    Example::

        export_feedback(Collection.open("memes/"), "train_pairs.csv")
    """
    out = Path(output)
    if out.suffix.lower() not in (".csv", ".tsv"):
        raise InputError(f"{out}: write the training data as .csv or .tsv")
    if not out.parent.is_dir():
        raise InputError(f"{out.parent}: the directory does not exist")
    ratings = FeedbackStore(collection.path).latest()
    if not ratings:
        raise InputError(f"{collection.path}: no feedback stored yet (rate search results first)")
    ids = sorted({d for _, d in ratings})
    docs = {d.id: d.text for d in collection.get(ids)}
    missing = [i for i in ids if i not in docs]
    pos: dict[str, list[str]] = {}
    neg: dict[str, list[str]] = {}
    for (query, doc_id), relevant in ratings.items():
        if doc_id in docs:
            (pos if relevant else neg).setdefault(query, []).append(docs[doc_id])
    queries = sorted(set(pos) | set(neg))
    rows: list[list[str]] = []
    with_negatives = any(q in pos for q in neg)
    rng = random.Random(seed)
    all_pos = [(q, t) for q in sorted(pos) for t in pos[q]]
    for q in sorted(pos):
        for p in pos[q]:
            if not with_negatives:
                rows.append([q, p])
            elif neg.get(q):
                rows.extend([q, p, n] for n in neg[q])
            else:
                others = [t for oq, t in all_pos if oq != q and t != p and t not in pos[q]]
                if others:
                    rows.append([q, p, rng.choice(others)])
    if not rows:
        raise InputError(f"{collection.path}: no query has a 👍 rating of a stored document; "
                         "nothing to train on")
    header = ["query", "passage", "negative"] if with_negatives else ["query", "passage"]
    with staged_file(out) as tmp, tmp.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, delimiter="\t" if out.suffix.lower() == ".tsv" else ",")
        w.writerow(header)
        w.writerows(rows)
    return FeedbackExport(str(out), "triplets" if with_negatives else "pairs", len(rows),
                          len(queries), sum(map(len, pos.values())), sum(map(len, neg.values())),
                          missing, sum(1 for q in neg if q not in pos))
