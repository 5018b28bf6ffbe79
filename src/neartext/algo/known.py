"""The queries a version remembers: each (query, relevant document) pair ``tune`` learned from
(the pairs given to it and the 👍 ratings), kept as the query's vector beside the document's id,
and what they say of a new query's candidates (:data:`~neartext.data.ranking.KNOWN_FEATURES`):
how alike the new query is to the most alike query the candidate already answered, and how many
it answered. Documents that answered a query like this one are likely to answer it too; a
person who rated a meme 👍 for a situation teaches the search that meme for the situations like
it, which no weighing of the channels can.

A file of them is named by its content (``rankers/<sha256 prefix>.npz``, beside the rankers):
written once, never rewritten; a version names the one it ranks with, and a damaged file is
caught when it is loaded. A process loads each file once.

Example:
    >>> import numpy as np
    >>> known = KnownQueries(np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]], dtype=np.float32),
    ...                      ["d1", "d2", "d1"], ["refund", "crash", "money back"])
    >>> cols = known.columns(np.array([0.8, 0.6], dtype=np.float32), ["d1", "d2", "d3"])
    >>> cols["known_max"].round(2).tolist(), cols["known_count"].round(2).tolist()
    ([0.96, 0.6, 0.0], [1.1, 0.69, 0.0])
    >>> known.columns(np.array([0.8, 0.6]), ["d1"], leave_out="money back")["known_max"].round(2)
    array([0.8])
    >>> known.recall(np.array([0.0, 1.0], dtype=np.float32), 1)  # the answer of "crash"
    ['d2']
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from neartext.algo.ranker import read_named, save_named
from neartext.errors import CorruptCollection
from neartext.util.linalg import inner_products

#: how many documents a query's most alike remembered queries answered join its candidates
RECALLED = 10


@dataclass
class KnownQueries:
    """Query ``vectors`` (one row per pair, as the version's searches compare them: before a
    query-side adapter), the id of each pair's relevant document and each pair's query text."""

    vectors: np.ndarray
    doc_ids: list[str]
    queries: list[str]
    _code: dict[str, int] = field(init=False, repr=False)  # a number per distinct document
    _docs: list[str] = field(init=False, repr=False)  # the distinct documents, by number
    _codes: np.ndarray = field(init=False, repr=False)  # each pair's document's
    _starts: np.ndarray = field(init=False, repr=False)  # where each document's pairs start
    _counts: np.ndarray = field(init=False, repr=False)  # each document's pairs
    _by_query: dict[str, np.ndarray] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        vectors = np.ascontiguousarray(self.vectors, dtype=np.float32)
        if not len(vectors) == len(self.doc_ids) == len(self.queries):
            raise ValueError("one vector, document id and query per pair")
        self._code = {}
        for d in self.doc_ids:
            self._code.setdefault(d, len(self._code))
        self._docs = list(self._code)
        codes = np.array([self._code[d] for d in self.doc_ids], dtype=np.int64)
        # the pairs kept by document (in their order within one): each document's pairs are
        # one run of rows, whose products with a query are compared in place
        order = np.argsort(codes, kind="stable")
        self.vectors = np.ascontiguousarray(vectors[order])
        self.doc_ids = [self.doc_ids[i] for i in order]
        self.queries = [self.queries[i] for i in order]
        self._codes = codes[order]
        self._counts = np.bincount(self._codes, minlength=len(self._code))
        self._starts = np.concatenate(([0], np.cumsum(self._counts)[:-1])).astype(np.int64)
        by_query: dict[str, list[int]] = {}
        for i, q in enumerate(self.queries):
            by_query.setdefault(q, []).append(i)
        self._by_query = {q: np.array(v, dtype=np.int64) for q, v in by_query.items()}

    def __len__(self) -> int:
        return len(self.doc_ids)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1]) if self.vectors.ndim == 2 else 0

    def answers(self, query: np.ndarray, leave_out: str | None = None) -> Answers:
        """What the remembered queries say of the query vector ``query``: for each document
        they answered, its highest cosine with them and their number. ``leave_out``: a query
        text whose own pairs do not count (a training query's features must not see its own
        answer)."""
        if query.shape[-1] != self.dim and len(self.doc_ids):
            raise CorruptCollection(f"the version's remembered queries have {self.dim} "
                                    f"dimensions, its queries {query.shape[-1]}: tune again")
        if not len(self.doc_ids):
            return Answers(self, np.zeros(0), np.zeros(0, dtype=np.int64))
        alike = inner_products(self.vectors, query)
        counts = self._counts
        mine = self._by_query.get(leave_out) if leave_out is not None else None
        if mine is not None:
            alike[mine] = -np.inf
            counts = counts - np.bincount(self._codes[mine], minlength=len(counts))
        best = np.maximum.reduceat(alike, self._starts)
        return Answers(self, best, counts)

    def recall(self, query: np.ndarray, n: int = RECALLED, leave_out: str | None = None
               ) -> list[str]:
        """:meth:`Answers.recall` of :meth:`answers`."""
        return self.answers(query, leave_out).recall(n)

    def columns(self, query: np.ndarray, docs: Sequence[str], leave_out: str | None = None
                ) -> dict[str, np.ndarray]:
        """:meth:`Answers.columns` of :meth:`answers`."""
        return self.answers(query, leave_out).columns(docs)


@dataclass(frozen=True)
class Answers:
    """What a version's remembered queries (``known``) say of one query: each document they
    answered (by its number) with its ``best`` cosine with them (-inf: none counts) and their
    ``count``."""

    known: KnownQueries
    best: np.ndarray
    count: np.ndarray

    def recall(self, n: int = RECALLED) -> list[str]:
        """The documents the remembered queries most alike the query answered, up to ``n``
        of them, the most alike first: they join the query's candidates, so a document the
        channels do not find for it can be ranked by what it answered before."""
        if n < 1 or not len(self.best):
            return []
        if n < len(self.best):  # (the n best of all, then in order)
            some = np.argpartition(-self.best, n - 1)[:n]
            # ties at the n-th: the lower numbers, as a stable sort of all would keep them
            some = np.flatnonzero(self.best >= self.best[some].min())
            top = some[np.argsort(-self.best[some], kind="stable")][:n]
        else:
            top = np.argsort(-self.best, kind="stable")[:n]
        return [self.known._docs[i] for i in top if self.count[i] > 0]

    def columns(self, docs: Sequence[str]) -> dict[str, np.ndarray]:
        """``known_max`` and ``known_count`` of each of ``docs``: its highest cosine with the
        remembered queries it answered (0: none) and ``log(1 + their number)``."""
        code = self.known._code
        at = np.fromiter((code.get(d, -1) for d in docs), dtype=np.int64, count=len(docs))
        has = at >= 0
        has[has] = self.count[at[has]] > 0
        best, count = np.zeros(len(docs)), np.zeros(len(docs))
        best[has] = self.best[at[has]]
        count[has] = np.log1p(self.count[at[has]])
        return {"known_max": best, "known_count": count}


#: how a file of remembered queries is named in an error
WHAT = "the version's file of remembered queries"


def save_known(state: Path, known: KnownQueries) -> str:
    """Write ``known`` into ``state``'s rankers directory, beside the rankers (atomically,
    named by its content: :func:`~neartext.algo.ranker.save_named`); its name relative to
    ``state``."""
    buf = io.BytesIO()
    np.savez(buf, vectors=known.vectors, doc_ids=np.array(known.doc_ids, dtype=str),
             queries=np.array(known.queries, dtype=str))
    return save_named(state, buf.getvalue(), ".npz", "the remembered queries")


@lru_cache(maxsize=16)
def load_known(path: str) -> KnownQueries:
    """The remembered queries of the file ``path`` (loaded once per process); a file that is
    missing, unreadable or whose content is not the one its name was made from is a
    :class:`CorruptCollection` naming it."""
    with np.load(io.BytesIO(read_named(path, WHAT)), allow_pickle=False) as z:
        return KnownQueries(z["vectors"], z["doc_ids"].tolist(), z["queries"].tolist())
