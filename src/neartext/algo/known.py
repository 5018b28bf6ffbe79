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

import hashlib
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from neartext.errors import CorruptCollection
from neartext.util.atomic import staged_file

#: how many documents a query's most alike remembered queries answered join its candidates
RECALLED = 10
#: where the files are kept, relative to the collection's state directory (with the rankers:
#: they travel with the versions wherever the collection goes)
KNOWN_DIR = "rankers"


@dataclass
class KnownQueries:
    """Query ``vectors`` (one row per pair, as the version's searches compare them: before a
    query-side adapter), the id of each pair's relevant document and each pair's query text."""

    vectors: np.ndarray
    doc_ids: list[str]
    queries: list[str]
    _by_doc: dict[str, np.ndarray] = field(init=False, repr=False)
    _by_query: dict[str, np.ndarray] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.vectors = np.ascontiguousarray(self.vectors, dtype=np.float32)
        if not len(self.vectors) == len(self.doc_ids) == len(self.queries):
            raise ValueError("one vector, document id and query per pair")
        self._by_doc = _positions(self.doc_ids)
        self._by_query = _positions(self.queries)

    def __len__(self) -> int:
        return len(self.doc_ids)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1]) if self.vectors.ndim == 2 else 0

    def recall(self, query: np.ndarray, n: int = RECALLED, leave_out: str | None = None
               ) -> list[str]:
        """The documents the remembered queries most alike ``query`` answered, up to ``n``
        of them, the most alike query's first (``leave_out`` as for :meth:`columns`): they
        join the query's candidates, so a document the channels do not find for it can be
        ranked by what it answered before."""
        if not len(self.doc_ids) or n < 1:
            return []
        alike = self._alike(query, leave_out)
        out: dict[str, None] = {}
        for i in np.argsort(-np.nan_to_num(alike, nan=-np.inf), kind="stable"):
            if np.isnan(alike[i]):
                break
            out[self.doc_ids[i]] = None
            if len(out) == n:
                break
        return list(out)

    def _alike(self, query: np.ndarray, leave_out: str | None) -> np.ndarray:
        """The cosine of ``query`` with each remembered query (NaN for ``leave_out``'s)."""
        if query.shape[-1] != self.dim:
            raise CorruptCollection(f"the version's remembered queries have {self.dim} "
                                    f"dimensions, its queries {query.shape[-1]}: tune again")
        alike = self.vectors @ np.asarray(query, dtype=np.float32)
        if leave_out is not None and leave_out in self._by_query:
            alike[self._by_query[leave_out]] = np.nan
        return alike

    def columns(self, query: np.ndarray, docs: Sequence[str], leave_out: str | None = None
                ) -> dict[str, np.ndarray]:
        """``known_max`` and ``known_count`` of each of ``docs`` for the query vector
        ``query``: its highest cosine with the remembered queries that document answered (0:
        none) and ``log(1 + their number)``. ``leave_out``: a query text whose own pairs do
        not count (a training query's features must not see its own answer)."""
        best, count = np.zeros(len(docs)), np.zeros(len(docs))
        if not len(self.doc_ids) or not len(docs):
            return {"known_max": best, "known_count": count}
        alike = self._alike(query, leave_out)
        for i, doc in enumerate(docs):
            at = self._by_doc.get(doc)
            if at is None:
                continue
            mine = alike[at]
            mine = mine[~np.isnan(mine)]
            if len(mine):
                best[i], count[i] = float(mine.max()), np.log1p(len(mine))
        return {"known_max": best, "known_count": count}


def _positions(keys: Sequence[str]) -> dict[str, np.ndarray]:
    out: dict[str, list[int]] = {}
    for i, k in enumerate(keys):
        out.setdefault(k, []).append(i)
    return {k: np.array(v, dtype=np.int64) for k, v in out.items()}


def save_known(state: Path, known: KnownQueries) -> str:
    """Write ``known`` into ``state``'s rankers directory (atomically; a file of the same
    content is already there); its name relative to ``state``."""
    buf = io.BytesIO()
    np.savez(buf, vectors=known.vectors, doc_ids=np.array(known.doc_ids, dtype=str),
             queries=np.array(known.queries, dtype=str))
    data = buf.getvalue()
    name = f"{KNOWN_DIR}/{hashlib.sha256(data).hexdigest()[:20]}.npz"
    path = state / name
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        with staged_file(path, what="the remembered queries",
                         outcome="nothing was promoted") as tmp:
            tmp.write_bytes(data)
    return name


@lru_cache(maxsize=16)
def load_known(path: str) -> KnownQueries:
    """The remembered queries of the file ``path`` (loaded once per process); a file that is
    missing, unreadable or whose content is not the one its name was made from is a
    :class:`CorruptCollection` naming it."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise CorruptCollection(f"{p}: the version's remembered queries cannot be read ({e}); "
                                "roll back to another version or tune again") from None
    if hashlib.sha256(data).hexdigest()[:20] != p.stem:
        raise CorruptCollection(f"{p}: the version's remembered queries were changed or "
                                "damaged (the content is not the one the name was made "
                                "from); roll back to another version or tune again")
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        return KnownQueries(z["vectors"], z["doc_ids"].tolist(), z["queries"].tolist())
