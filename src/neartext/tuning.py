"""``neartext tune``: learn a query-side adapter from a collection's own data, measure it on
held-out queries, and promote it only when it beats the current version.

Training data comes from the collection: a (query, passage) file whose passages are stored
documents (matched by text, or by id), and/or the ratings users gave (👍 = relevant, 👎 = a hard
negative). Documents are represented by their stored vectors, so only the queries are encoded.

Example:
    >>> from neartext.tuning import tune                            # doctest: +SKIP
    >>> report = tune(col, pairs="pairs.csv")                       # doctest: +SKIP
    >>> report.promoted, report.after["mrr@10"] - report.before["mrr@10"]  # doctest: +SKIP
    (True, 0.08)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .adapters import MIN_PAIRS, train_adapter
from .errors import InputError
from .versions import keep_candidate, promote

if TYPE_CHECKING:
    from .collection import Collection

# MRR@10 an adapter must gain over the current version on held-out queries to be promoted, on
# average, with the lower end of the gain's 95% bootstrap interval above 0 as well
DEFAULT_MARGIN = 0.005


@dataclass
class TuneReport:
    """What ``tune`` measured and decided."""

    collection: str
    kind: str
    pairs: int
    queries: int
    from_file: int
    from_feedback: int
    hard_negatives: int
    before: dict[str, float]
    after: dict[str, float]
    promoted: bool
    version: int
    reason: str
    seconds: float
    epochs: int
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))

    def summary(self) -> str:
        rows = [f"{self.collection}: {self.pairs} pairs ({self.from_file} from the file, "
                f"{self.from_feedback} from ratings; {self.hard_negatives} hard negatives), "
                f"{self.queries} queries; {self.kind} adapter, {self.epochs} epochs, "
                f"{self.seconds:.1f} s",
                f"  held-out      {'current':>8} {'adapter':>8}"]
        for k in ("mrr@10", "ndcg@10", "recall@1", "recall@10"):
            rows.append(f"  {k:<12}  {self.before[k]:8.4f} {self.after[k]:8.4f}")
        rows.append(f"  {self.reason}")
        return "\n".join(rows + [f"  note: {n}" for n in self.notes])


@dataclass
class _Data:
    queries: list[str]  # one per pair
    doc_ids: list[str]  # the pair's relevant document
    hard: list[tuple[int, str]]  # (pair index, document rated not relevant)
    from_file: int
    from_feedback: int
    notes: list[str]


def _gather(col: Collection, pairs: str | Path | None, feedback: bool,
            query_column: str | None, passage_column: str | None) -> _Data:
    from .evaluate import load_retrieval_pairs
    from .feedback import FeedbackStore

    queries: list[str] = []
    doc_ids: list[str] = []
    notes: list[str] = []
    from_file = 0
    if pairs is not None:
        data = load_retrieval_pairs(pairs, query_column, passage_column)
        by_text: dict[str, str] = {}
        for batch in _documents(col):
            for d in batch:
                by_text.setdefault(" ".join(d.text.split()), d.id)
        ids = set(col.store.document_hashes())
        missing: list[str] = []
        for qid, rel in data.qrels.items():
            for pid in rel:
                passage = data.corpus[pid]
                doc = passage if passage in ids else by_text.get(" ".join(passage.split()))
                if doc is None:
                    missing.append(passage)
                    continue
                queries.append(data.queries[qid])
                doc_ids.append(doc)
                from_file += 1
        if missing:
            notes.append(f"{len(missing)} pairs of {pairs} name a passage that is not in the "
                         f"collection (neither a document's text nor its id), e.g. "
                         f"{missing[0][:80]!r}; left out")
    hard: list[tuple[int, str]] = []
    from_feedback = 0
    if feedback:
        ratings = FeedbackStore(col.path).latest()
        known = set(col.store.document_hashes()) if ratings else set()
        gone = 0
        down: list[tuple[str, str]] = []
        for (q, doc), relevant in ratings.items():
            if doc not in known:
                gone += 1
            elif relevant:
                queries.append(q)
                doc_ids.append(doc)
                from_feedback += 1
            else:
                down.append((q, doc))
        first: dict[str, int] = {}
        for i, q in enumerate(queries):
            first.setdefault(q, i)
        for q, doc in down:
            if q in first:  # a 👎 teaches only next to a 👍 of the same query
                hard.append((first[q], doc))
        if gone:
            notes.append(f"{gone} ratings name documents no longer in the collection; left out")
    return _Data(queries, doc_ids, hard, from_file, from_feedback, notes)


def _documents(col: Collection, batch: int = 5000) -> Any:
    ids = list(col.store.document_hashes())
    for start in range(0, len(ids), batch):
        yield col.store.get(ids[start:start + batch])


def tune(
    col: Collection,
    pairs: str | Path | None = None,
    *,
    feedback: bool = False,
    kind: str = "linear",
    held_out: float = 0.2,
    margin: float = DEFAULT_MARGIN,
    force: bool = False,
    query_column: str | None = None,
    passage_column: str | None = None,
    seed: int = 0,
) -> TuneReport:
    """Train an adapter on ``pairs`` and/or the ratings, evaluate it on held-out queries
    against the current version, promote it when MRR@10 gains at least ``margin`` (or
    ``force``), else keep it as a candidate. Nothing changes unless it is promoted."""
    if pairs is None and not feedback:
        raise InputError("give training pairs (--pairs FILE), --feedback, or both")
    data = _gather(col, pairs, feedback, query_column, passage_column)
    if len(data.queries) < MIN_PAIRS:
        raise InputError(
            f"{col.address}: {len(data.queries)} usable (query, document) pairs "
            f"({data.from_file} from the file, {data.from_feedback} 👍 ratings); at least "
            f"{MIN_PAIRS} are needed to learn from" + "".join(f"; {n}" for n in data.notes))
    doc_ids: list[str] = []
    parts: list[np.ndarray] = []
    for ids, vecs in col.store.iter_vectors():
        doc_ids += ids
        parts.append(vecs)
    docs = np.concatenate(parts).astype(np.float32)
    row_of: dict[str, int] = {}
    for row, d in enumerate(doc_ids):
        row_of.setdefault(d, row)  # a document's first passage stands for it
    unique = list(dict.fromkeys(data.queries))
    vec_of = dict(zip(unique, col.encoder.encode(unique, kind="query")))
    q = np.stack([vec_of[t] for t in data.queries]).astype(np.float32)
    pos = np.array([row_of[d] for d in data.doc_ids], dtype=np.int64)
    hard = [(i, row_of[d]) for i, d in data.hard if d in row_of]
    current = col.adapter
    result = train_adapter(q, pos, docs, groups=data.queries,
                           base_fingerprint=col.encoder.fingerprint,
                           hard_negatives=hard, kind=kind, held_out=held_out, seed=seed,
                           baseline=None if current is None else current.matrix)
    gain, low = result.gain_interval()
    summary = {"metrics": result.after, "previous_metrics": result.before,
               "gain_lower_95": round(low, 4),
               "pairs": len(data.queries), "queries": len(unique), "from_file": data.from_file,
               "from_feedback": data.from_feedback, "hard_negatives": len(hard)}
    measured = (f"MRR@10 {gain:+.4f} on {len(result.rr_after)} held-out queries "
                f"(95% lower bound {low:+.4f})")
    if (gain >= margin and low > 0) or force:
        version = promote(col, result.adapter, summary)
        reason = f"promoted as version {version}: {measured}" + (
            "" if gain >= margin and low > 0 else " (forced)")
        promoted = True
    else:
        path = keep_candidate(col, result.adapter)
        version = col.manifest.version
        why = f"below the margin {margin}" if gain < margin else \
            "not above 0 at its lower bound: it could be the luck of the split"
        reason = (f"not promoted: {measured}, {why}; kept as a candidate in {path} "
                  "(--force promotes anyway)")
        promoted = False
    return TuneReport(str(col.address), kind, len(data.queries), len(unique), data.from_file,
                      data.from_feedback, len(hard), result.before, result.after, promoted,
                      version, reason, result.seconds, result.epochs, data.notes)
