"""Corpus-level operations on a collection: mine pairs, paraphrases of a text, duplicate groups.

Each works on the stored vectors: the corpus is never re-encoded. The :class:`~neartext.Collection`
methods ``mine``, ``paraphrases`` and ``dedup`` call these.

Example:
    >>> from neartext import Collection
    >>> col = Collection.open("feedback/")                              # doctest: +SKIP
    >>> res = col.mine(threshold=0.8)                                   # doctest: +SKIP
    >>> res.pairs[0]["id1"], res.pairs[0]["score"]                      # doctest: +SKIP
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from neartext.algo.groups import duplicate_groups, size_summary
from neartext.algo.mining import Pairs, check_mining_args, mine_pairs, sample_recall, unique_pairs
from neartext.data.results import SearchResult, reported_cosine
from neartext.engine.parts import Parts
from neartext.errors import InputError
from neartext.util.tables import check_output_path, write_table

DEFAULT_THRESHOLDS = {"mine": 0.75, "paraphrases": 0.75, "dedup": 0.9}


@dataclass
class MiningResult:
    """Pairs found by :func:`mine`, best first, with how they were found."""

    pairs: list[dict[str, Any]]
    texts: int
    threshold: float
    top_k: int
    method: str
    seconds: float
    recall: dict | None = None
    details: dict = field(default_factory=dict)

    def summary(self) -> str:
        line = (f"{self.texts} texts, {len(self.pairs)} pairs >= {self.threshold:g} "
                f"({self.method}, top-k {self.top_k}) in {self.seconds:.1f}s")
        if self.recall is not None:
            line += (f"; recall vs exact on {self.recall['sample']} sampled texts: "
                     f"{self.recall['recall']:.4f} ({self.recall['gold_pairs']} pairs)")
        return line

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class GroupMember:
    """A document of a duplicate group: its id, text and similarity to the representative."""

    id: str
    text: str
    score: float


@dataclass
class DuplicateGroup:
    """Group ``group`` (numbered from 1, largest first): the ``representative`` id and the
    ``members`` (the representative included)."""

    group: int
    representative: str
    members: list[GroupMember]


@dataclass
class DedupResult:
    """Duplicate groups: each a representative id and its members (representative included)."""

    groups: list[DuplicateGroup]
    texts: int
    threshold: float
    method: str
    sizes: dict[int, int]
    seconds: float

    @property
    def duplicates(self) -> int:
        """Documents that would be dropped keeping one per group."""
        return sum(len(g.members) - 1 for g in self.groups)

    def mapping(self, all_ids: list[str]) -> dict[str, str]:
        """``id -> kept id`` for every document (itself when not in a group)."""
        out = {i: i for i in all_ids}
        for g in self.groups:
            for m in g.members:
                out[m.id] = g.representative
        return out

    def member_rows(self) -> list[dict[str, Any]]:
        """One row per group member: group, id, representative (bool), score, text."""
        return [{"group": g.group, "id": m.id, "representative": m.id == g.representative,
                 "score": m.score, "text": m.text} for g in self.groups for m in g.members]

    def summary(self) -> str:
        sizes = ", ".join(f"{n}x{size}" for size, n in self.sizes.items()) or "none"
        return (f"{self.texts} texts, {len(self.groups)} duplicate groups >= {self.threshold:g} "
                f"({self.method}); {self.duplicates} duplicates would be dropped; "
                f"group sizes: {sizes}; {self.seconds:.1f}s")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "duplicates": self.duplicates,
                "sizes": {str(k): v for k, v in self.sizes.items()}}


def resolve_threshold(col: Parts, threshold: float | None, op: str) -> float:
    """The given threshold, else the collection's calibrated one, else the operation's default."""
    if threshold is not None:
        return float(threshold)
    stored = col.manifest.threshold
    return float(stored) if stored is not None else DEFAULT_THRESHOLDS[op]


def document_vectors(col: Parts) -> tuple[list[str], np.ndarray, np.ndarray]:
    """``(doc_ids, vectors, doc_of_row)``: every passage's vector and the document it belongs to."""
    ids: list[str] = []
    parts: list[np.ndarray] = []
    for doc_ids, vecs in col.store.iter_vectors():
        ids.extend(doc_ids)
        parts.append(vecs)
    dim = col.manifest.dim
    vectors = np.concatenate(parts) if parts else np.zeros((0, dim), dtype=np.float32)
    docs: dict[str, int] = {}
    doc_of_row = np.array([docs.setdefault(d, len(docs)) for d in ids], dtype=np.int64)
    return list(docs), vectors, doc_of_row


def _document_pairs(pairs: Pairs, doc_of_row: np.ndarray) -> Pairs:
    """Passage pairs -> document pairs (best score each), dropping pairs within one document."""
    a, b = doc_of_row[pairs.i], doc_of_row[pairs.j]
    keep = a != b
    i, j, s = unique_pairs(a[keep], b[keep], pairs.score[keep])
    return Pairs(i, j, s, pairs.method, pairs.seconds, pairs.details)


def _need_two(n: int, what: str) -> None:
    if n < 2:
        raise InputError(f"{what} needs a collection of at least 2 documents (this one has {n})")


def mine(
    col: Parts,
    threshold: float | None = None,
    top_k: int = 100,
    *,
    max_pairs: int | None = None,
    method: str = "auto",
    verify: int | None = None,
    nprobe: int | None = None,
    progress: bool = False,
) -> MiningResult:
    """Every pair of documents scoring ``>= threshold``, best first (see :mod:`neartext.algo.mining`)."""
    t = resolve_threshold(col, threshold, "mine")
    check_mining_args(t, top_k, max_pairs, method, nprobe)
    if verify is not None and verify < 1:
        raise InputError(f"verify must be >= 1 (got {verify})")
    t0 = time.perf_counter()
    doc_ids, vectors, doc_of_row = document_vectors(col)
    _need_two(len(doc_ids), "mining")
    pairs = mine_pairs(vectors, t, top_k, method=method, nprobe=nprobe, progress=progress,
                       compute=col.compute)
    recall = sample_recall(vectors, pairs, t, top_k, verify) if verify else None
    chunked = len(doc_of_row) != len(doc_ids)
    if chunked:
        pairs = _document_pairs(pairs, doc_of_row)
    if max_pairs is not None:
        pairs = Pairs(pairs.i[:max_pairs], pairs.j[:max_pairs], pairs.score[:max_pairs],
                      pairs.method, pairs.seconds, pairs.details)
    involved = sorted({doc_ids[x] for x in np.concatenate([pairs.i, pairs.j]).tolist()})
    texts = {d.id: d.text for d in col.store.get(involved)}
    rows = [{"id1": doc_ids[a], "id2": doc_ids[b], "score": reported_cosine(s),
             "text1": texts[doc_ids[a]], "text2": texts[doc_ids[b]]}
            for a, b, s in zip(pairs.i.tolist(), pairs.j.tolist(), pairs.score.tolist())]
    return MiningResult(rows, len(doc_ids), t, top_k, pairs.method, time.perf_counter() - t0,
                        recall, pairs.details)


def paraphrases(
    col: Parts, text: str, threshold: float | None = None, top_k: int = 100
) -> tuple[list[SearchResult], str | None]:
    """Paraphrases of ``text`` in the collection, and a notice when there are none.

    The text itself and exact copies of it (ignoring case and runs of white space) are left out;
    each distinct paraphrase appears once, with its highest score; best first.
    """
    t = resolve_threshold(col, threshold, "paraphrases")
    check_mining_args(t, top_k, None, "exact")
    if not isinstance(text, str) or not text.strip():
        raise InputError("empty text; give the text to find paraphrases of")
    own = _norm(text)
    vec = col.to_stored_space(col.encoder.encode([text], kind="document"))
    total = col.store.count()
    fetch = min(total, top_k + 10)
    while True:
        hits = col.store.search(vec, fetch)[0]
        docs = {d.id: d for d in col.store.get([h.doc_id for h in hits])}
        seen: set[str] = set()
        out: list[SearchResult] = []
        for h in hits:
            if h.score < t:
                break
            d = docs[h.doc_id]
            key = _norm(d.text)
            if key == own or key in seen:
                continue
            seen.add(key)
            out.append(SearchResult(d.id, d.text, h.score, d.metadata))
            if len(out) == top_k:
                break
        exhausted = fetch >= total or (hits and hits[-1].score < t)
        if len(out) == top_k or exhausted:
            break
        fetch = min(total, fetch * 4)
    notice = None if out else f"no paraphrases scoring >= {t:g} (besides the text itself)"
    return out, notice


def _norm(text: str) -> str:
    return " ".join(text.split()).casefold()


def dedup(
    col: Parts,
    threshold: float | None = None,
    *,
    method: str = "components",
    representative: str = "central",
    top_k: int = 100,
    mining_method: str = "auto",
    progress: bool = False,
) -> DedupResult:
    """Groups of near-duplicate documents at ``threshold`` (see :mod:`neartext.algo.groups`)."""
    t = resolve_threshold(col, threshold, "dedup")
    check_mining_args(t, top_k, None, mining_method)
    t0 = time.perf_counter()
    doc_ids, vectors, doc_of_row = document_vectors(col)
    _need_two(len(doc_ids), "dedup")
    pairs = mine_pairs(vectors, t, top_k, method=mining_method, progress=progress,
                       compute=col.compute)
    if len(doc_of_row) != len(doc_ids):
        pairs = _document_pairs(pairs, doc_of_row)
        vectors = _mean_vectors(vectors, doc_of_row, len(doc_ids))
    groups = duplicate_groups(len(doc_ids), pairs.i, pairs.j, pairs.score, method=method,
                              representative=representative, vectors=vectors)
    involved = [doc_ids[m] for g in groups for m in g.members.tolist()]
    texts = {d.id: d.text for d in col.store.get(involved)}
    rows = []
    for n, g in enumerate(groups, 1):
        rep = g.representative
        sims = vectors[g.members] @ vectors[rep]
        rows.append(DuplicateGroup(n, doc_ids[rep], [
            GroupMember(doc_ids[m], texts[doc_ids[m]], reported_cosine(s))
            for m, s in zip(g.members.tolist(), sims.tolist())]))
    return DedupResult(rows, len(doc_ids), t, method, size_summary(groups),
                       time.perf_counter() - t0)


def write_clean(col: Parts, result: DedupResult, path: str | Path) -> tuple[int, Path]:
    """Write the corpus with one document per duplicate group, and ``<stem>.mapping.csv`` mapping
    every id to the id kept for it. Returns the rows written and the mapping file's path."""
    p = check_output_path(path)
    all_ids = list(col.store.document_hashes())
    mapping = result.mapping(all_ids)
    docs = col.store.get([i for i in all_ids if mapping[i] == i])
    fields = sorted({k for d in docs for k in d.metadata})
    # the corpus's own column names where known; never one that a metadata field already has
    source = col.manifest.source
    texts = source.get("text") or []
    id_col = _free_name(source.get("id") or "id", fields)
    text_col = _free_name(texts[0] if len(texts) == 1 else "text", [*fields, id_col])
    mapping_path = p.with_name(p.stem + ".mapping.csv")
    write_table(mapping_path, [{id_col: i, "kept_id": k} for i, k in mapping.items()],
                [id_col, "kept_id"])
    write_table(p, [{**d.metadata, id_col: d.id, text_col: d.text} for d in docs],
                [id_col, text_col, *fields])
    return len(docs), mapping_path


def _free_name(name: str, taken: list[str]) -> str:
    """``name``, or ``neartext_NAME`` when a column of that name exists already."""
    return name if name not in taken else f"neartext_{name}"


def _mean_vectors(vectors: np.ndarray, doc_of_row: np.ndarray, n_docs: int) -> np.ndarray:
    out = np.zeros((n_docs, vectors.shape[1]), dtype=np.float32)
    np.add.at(out, doc_of_row, vectors)
    out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    return out


def near_duplicates(
    col: Parts, ids: list[str], vectors: np.ndarray, threshold: float
) -> dict[str, tuple[str, float]]:
    """Incoming documents (``ids`` with ``vectors``) that nearly duplicate a stored document or an
    earlier incoming one: ``{id: (duplicate_of, score)}``. A document is not its own duplicate."""
    found: dict[str, tuple[str, float]] = {}
    if col.store.count():
        hits = col.store.search(vectors, 2)
        for doc_id, row in zip(ids, hits):
            for h in row:
                if h.doc_id != doc_id and h.score >= threshold:
                    found[doc_id] = (h.doc_id, h.score)
                    break
    within = mine_pairs(vectors, threshold, top_k=10, method="exact") if len(ids) > 1 else None
    if within is not None:
        for a, b, s in sorted(zip(within.i.tolist(), within.j.tolist(), within.score.tolist()),
                              key=lambda x: (x[1], -x[2])):
            if ids[b] not in found and ids[a] not in found:
                found[ids[b]] = (ids[a], float(s))
    return found
