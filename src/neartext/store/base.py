"""The store contract: where documents, their passages' vectors and the manifest live.

A collection talks to its store only through :class:`Store`; two implement it: the embedded
:class:`neartext.store.local.LocalStore` (a directory) and :class:`neartext.store.milvus.MilvusStore`
(a Milvus server, cluster or Milvus Lite file).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

import numpy as np

from neartext.data.filters import Filter
from neartext.data.lexical import CACHED_WORD_CHARS, index_text, script_shares, terms
from neartext.data.manifest import check_manifest
from neartext.data.sentences import Sentences
from neartext.errors import Unsupported


def check_store_manifest(where: object, manifest: Any) -> dict[str, Any]:
    """What a store needs of a manifest (an object with an integer ``dim``); the rest is the
    collection's to check (:class:`neartext.data.manifest.Manifest`)."""
    if not isinstance(manifest, dict) or not isinstance(manifest.get("dim"), int) \
            or isinstance(manifest.get("dim"), bool):
        check_manifest(where, manifest)  # raises, naming the field at fault
    return dict(manifest)


#: the most words whose document frequencies a store keeps between two writes (see
#: :meth:`StoreBase.keyword_weights`); words longer than the stemmer keeps are not kept. All
#: were kept until the next write: a read-only service's queries bring new words without end
#: (50,000 random words kept 13.3 MB, counted in 2.3 s by one process); 200,000 take ~53 MB
DF_WORDS = 200_000


@dataclass(frozen=True)
class StoreSettings:
    """What a store reads of a collection's manifest (the rest is the collection's): the
    vectors' dimension, the index and precision asked for, whether documents are chunked,
    whether a build is unfinished, the model's fingerprint, and a Milvus store's own settings.
    Read once from the stored manifest, checked there (:meth:`of`).

    >>> StoreSettings.of("x", {"dim": 2, "chunking": {"size": 50}}).chunked
    True
    """

    dim: int
    index: str = "auto"
    precision: str = "float32"
    chunked: bool = False
    building: bool = False
    fingerprint: str | None = None
    milvus: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, where: object, manifest: Any) -> StoreSettings:
        d = check_store_manifest(where, manifest)
        model: dict[str, Any] = d["model"] if isinstance(d.get("model"), dict) else {}
        return cls(dim=int(d["dim"]), index=str(d.get("index") or "auto"),
                   precision=str(d.get("precision") or "float32"),
                   chunked=bool(d.get("chunking")), building=bool(d.get("building")),
                   fingerprint=model.get("fingerprint"), milvus=dict(d.get("milvus") or {}))


@dataclass
class Document:
    """A stored document. ``hash`` identifies its text for embedding reuse."""

    id: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)
    hash: str = ""


@dataclass
class Passage:
    """A span of a document's text with its own vector (the whole text when not chunking)."""

    doc_id: str
    start: int
    end: int
    hash: str
    vector: np.ndarray


@dataclass
class Hit:
    """A document found by a search: its best passage's span and score."""

    doc_id: str
    score: float
    start: int = 0
    end: int = 0


class CandidateText(NamedTuple):
    """What the learned fusion's text features read of a candidate: its ``text``, the first
    characters of its ``stems`` (:func:`~neartext.data.lexical.index_text`) and its
    ``sentences`` where the store keeps them (:mod:`neartext.data.sentences`; None: they are
    read from the text)."""

    text: str
    stems: str
    sentences: Sentences | None = None


@dataclass
class WriteResult:
    added: int = 0
    updated: int = 0
    removed: int = 0
    # problems after the commit (the change happened): e.g. an index cache not saved
    warnings: list[str] = field(default_factory=list)


class Store(Protocol):
    """Persistence and vector search for one collection. Writes are atomic."""

    def read_manifest(self) -> dict[str, Any]: ...

    def write_manifest(self, manifest: dict[str, Any]) -> None: ...

    def manifest_stamp(self) -> object:
        """A cheap value that changes whenever the stored manifest does (another process's
        write included), so a long-lived reader knows when to read it again."""
        ...

    def manifest_lock(self) -> contextlib.AbstractContextManager[None]:
        """Held around a manifest's read-modify-write, so that writers in other processes do
        not overwrite each other's changes."""
        ...

    def generation(self) -> int:
        """A number that changes with every committed write (for caches of derived data)."""
        ...

    def replaced(self) -> bool:
        """Whether another process replaced the collection with a new version since this store
        opened it (``reindex`` and the other swaps); writes to a replaced store are refused."""
        ...

    def hold_writes(self) -> contextlib.AbstractContextManager[None]:
        """Held around a swap's last catch-up and switch: writers of every process wait
        (readers go on), and those that had the old version open are refused after it."""
        ...

    def finish_build(self) -> None:
        """Mark a collection built beside another (a new version) complete, so it opens."""
        ...

    def index_deferred(self) -> contextlib.AbstractContextManager[None]:
        """Writes inside leave the vector index for its end, where it is built once from
        everything written (a new collection written in parts)."""
        ...

    def creation_options(self) -> dict[str, Any] | None:
        """Backend options that create another collection with this one's index settings."""
        ...

    def count(self) -> int:
        """Number of documents."""
        ...

    def passage_count(self) -> int: ...

    def document_hashes(self, ids: Sequence[str] | None = None) -> dict[str, str]:
        """``id -> hash`` for the given ids (all documents when ``ids`` is None)."""
        ...

    def vectors_by_hash(self, hashes: Sequence[str]) -> dict[str, np.ndarray]:
        """Stored (or staged) vectors of passages with these content hashes, for reuse."""
        ...

    def stage_vectors(self, hashes: Sequence[str], vectors: np.ndarray) -> None:
        """Keep freshly computed vectors so an interrupted write need not recompute them
        (where :attr:`keeps_staged`)."""
        ...

    @property
    def keeps_staged(self) -> bool:
        """Whether :meth:`stage_vectors` keeps what it is given (a failed write then says its
        rerun embeds only the rest)."""
        ...

    def write(
        self, documents: Sequence[Document], passages: Sequence[Passage],
        delete_ids: Sequence[str] | Filter
    ) -> WriteResult:
        """Upsert ``documents`` (replacing their passages) and delete ``delete_ids`` (or the
        documents a filter selects, chosen inside the write), atomically."""
        ...

    def ids_where(self, flt: Filter) -> list[str]:
        """The ids of the documents ``flt`` selects."""
        ...

    def search(
        self, queries: np.ndarray, k: int, flt: Filter | None = None
    ) -> list[list[Hit]]:
        """Top ``k`` documents per query (best passage each), highest score first."""
        ...

    def keyword_search(
        self, queries: Sequence[str], k: int, flt: Filter | None = None
    ) -> list[list[Hit]]:
        """Top ``k`` documents per query text by a lexical score (BM25), highest first."""
        ...

    def keyword_norms(self, queries: Sequence[str]) -> list[float]:
        """Per query, the keyword score of a full match (to put scores on one scale)."""
        ...

    def keyword_weights(self, queries: Sequence[str]) -> list[dict[str, float]]:
        """Per query, the weight (IDF) of each of its distinct stemmed words."""
        ...

    def has_keyword_index(self) -> bool:
        """Whether the lexical index behind :meth:`keyword_search` exists yet."""
        ...

    has_chars_channel: bool

    def chars_search(
        self, queries: Sequence[str], k: int, flt: Filter | None = None
    ) -> list[list[Hit]]:
        """Top ``k`` documents per query text by BM25 over character n-grams, highest first."""
        ...

    def chars_norms(self, queries: Sequence[str]) -> list[float]:
        """Per query, the chars score of a full match (to put scores on one scale)."""
        ...

    def has_chars_index(self) -> bool:
        """Whether the n-gram index behind :meth:`chars_search` exists yet."""
        ...

    def ensure_chars(self) -> bool:
        """Make what the chars channel and the learned ranking's sentences read, where this
        store keeps them and they are missing (a write); True when something was made."""
        ...

    def iter_texts(self, batch_size: int = 4096) -> Iterator[str]:
        """Every document's text."""
        ...

    def doc_vectors(self, doc_ids: Sequence[str]) -> dict[str, np.ndarray]:
        """All passage vectors of each given document, ``doc_id -> (n_passages, dim)``."""
        ...

    def get(self, ids: Sequence[str]) -> list[Document]:
        """Documents by id, in the given order; unknown ids are left out."""
        ...

    def candidate_texts(self, ids: Sequence[str], limit: int) -> dict[str, CandidateText]:
        """What the learned fusion's text features read of each known document: its text,
        the first ``limit`` characters of its stems and its sentences if kept."""
        ...

    def metadata_fields(self) -> set[str]: ...

    def script_shares(self) -> dict[str, float]:
        """The share of texts written mostly in Cyrillic, mostly in Latin letters, or
        neither (:func:`neartext.data.lexical.script_shares`)."""
        ...

    def iter_vectors(self, batch_size: int = 8192) -> Iterator[tuple[list[str], np.ndarray]]:
        """All passages' ``(doc_ids, vectors)`` in batches, for mining and clustering."""
        ...

    def export(self, batch_size: int = 1024) -> Iterator[tuple[list[Document], list[Passage]]]:
        """Every document with its passages (vectors included), in batches: what
        ``neartext migrate`` copies from one store to another without re-embedding."""
        ...

    def index_info(self) -> dict[str, Any]:
        """The vector index in use: ``kind``, ``requested`` kind, number of ``vectors``."""
        ...

    def repair(self) -> dict[str, Any]:
        """Rebuild what is derived from the stored passages (the vector index) and report
        what was found."""
        ...

    def tune_index(self, queries: np.ndarray) -> dict[str, Any]:
        """Choose the vector index's search setting on ``queries`` (vectors as the index is
        searched with) and keep them for later rebuilds; :meth:`index_info` after."""
        ...

    def tunes_index(self) -> bool: ...

    def close(self) -> None: ...


CHARS_UNSUPPORTED = ("the chars mode (character n-grams) needs a local collection; Milvus "
                     "ranks words only: use --mode keyword or hybrid, or copy the collection "
                     "to a local one ('neartext migrate')")


TUNING_UNSUPPORTED = ("a Milvus collection's search is set when it is made (--search-param ef=N "
                      "for HNSW, nprobe=N for IVF), not tuned on queries by neartext")


class StoreBase:
    """What both stores do the same way, over primitives each backend supplies: the cached
    metadata field list, order-preserving ``get``, vector lookup (stored, then staged), write
    counts, the best passage per document, and keyword-score norms.

    A backend implements ``generation``, ``count``, ``_metadata_field_names``,
    ``_documents_by_id``, ``_stored_vectors``, ``_staged_vectors``, ``_document_frequencies``
    and ``_idf``.
    """

    #: whether :meth:`chars_search` works here (the local store's chars channel)
    has_chars_channel = False
    _fields: tuple[int, set[str]] | None = None
    # (generation, documents, their words' frequencies): counted once per generation, at most
    # DF_WORDS words kept (a read-only service's queries bring new words without end)
    _df: tuple[int, int, dict[str, int]] | None = None
    _scripts: tuple[int, dict[str, float]] | None = None  # (generation, script shares)

    @property
    def keeps_staged(self) -> bool:
        """Whether :meth:`stage_vectors` keeps what it is given (here: always)."""
        return True

    def finish_build(self) -> None:
        """Nothing to mark where a collection opens as soon as it is created."""

    def index_deferred(self) -> contextlib.AbstractContextManager[None]:
        """Nothing to defer where the server indexes what it is given."""
        return contextlib.nullcontext()

    def creation_options(self) -> dict[str, Any] | None:
        return None

    # -- primitives ------------------------------------------------------------------------

    def generation(self) -> int:
        raise NotImplementedError

    def count(self) -> int:
        raise NotImplementedError

    def _metadata_field_names(self) -> set[str]:
        raise NotImplementedError

    def _documents_by_id(self, ids: Sequence[str]) -> dict[str, Document]:
        raise NotImplementedError

    def _stored_vectors(self, hashes: list[str]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _staged_vectors(self, hashes: list[str]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _document_frequencies(self, words: list[str]) -> dict[str, int]:
        raise NotImplementedError

    @staticmethod
    def _idf(n: int, df: int) -> float:
        raise NotImplementedError

    # -- shared logic ----------------------------------------------------------------------

    def metadata_fields(self) -> set[str]:
        """Metadata field names in use, computed once per generation."""
        gen = self.generation()
        if self._fields is None or self._fields[0] != gen:
            self._fields = (gen, self._metadata_field_names())
        return set(self._fields[1])

    def script_shares(self) -> dict[str, float]:
        """:func:`neartext.data.lexical.script_shares` of every text, counted once per
        generation (the service asks on every ``GET /collections/{name}``)."""
        gen = self.generation()
        if self._scripts is None or self._scripts[0] != gen:
            self._scripts = (gen, script_shares(self.iter_texts()))
        return dict(self._scripts[1])

    def iter_texts(self, batch_size: int = 4096) -> Iterator[str]:
        raise NotImplementedError

    def get(self, ids: Sequence[str]) -> list[Document]:
        """Documents by id, in the given order; unknown ids are left out."""
        found = self._documents_by_id(ids)
        return [found[i] for i in ids if i in found]

    def candidate_texts(self, ids: Sequence[str], limit: int) -> dict[str, CandidateText]:
        """Each known document's text and the first ``limit`` characters of its stems, made
        here from the text's first ``limit`` characters (a store that keeps the stems of its
        keyword index, and the sentences, reads them instead)."""
        return {d.id: CandidateText(d.text, index_text(d.text[:limit])[:limit])
                for d in self.get(ids)}

    def vectors_by_hash(self, hashes: Sequence[str]) -> dict[str, np.ndarray]:
        """Vectors of passages with these content hashes: stored ones, else staged ones."""
        wanted = list(dict.fromkeys(hashes))
        out = self._stored_vectors(wanted)
        rest = [h for h in wanted if h not in out]
        if rest:
            out.update({h: v for h, v in self._staged_vectors(rest).items() if h not in out})
        return out

    def chars_search(
        self, queries: Sequence[str], k: int, flt: Filter | None = None
    ) -> list[list[Hit]]:
        """A store without a character n-gram index (Milvus: its analyzers make words, and its
        n-gram index serves LIKE filters, not ranking) says so in one line."""
        raise Unsupported(CHARS_UNSUPPORTED)

    def chars_norms(self, queries: Sequence[str]) -> list[float]:
        raise Unsupported(CHARS_UNSUPPORTED)

    def has_chars_index(self) -> bool:
        return False

    def ensure_chars(self) -> bool:
        return False

    def tunes_index(self) -> bool:
        """Whether :meth:`tune_index` chooses the search setting here (a local store's)."""
        return False

    def tune_index(self, queries: np.ndarray) -> dict[str, Any]:
        raise Unsupported(TUNING_UNSUPPORTED)

    def keyword_norms(self, queries: Sequence[str]) -> list[float]:
        """Per query, the BM25 score of a document of average length holding each query word
        once: the sum of the words' IDFs (as the backend's BM25 computes them; words no
        document has included). Dividing a BM25 score by it puts keyword scores of different
        queries on one scale (about 1 = a full match)."""
        return [sum(w.values()) for w in self.keyword_weights(queries)]

    def keyword_weights(self, queries: Sequence[str]) -> list[dict[str, float]]:
        """Per query, the IDF of each of its distinct stemmed words (in order), as the
        backend's BM25 weighs them. The documents and the frequencies are counted once per
        generation (a count of every document is a scan: 6 ms at a million on SQLite, a query
        on Milvus), so searches between two writes count only words not seen yet."""

        gen = self.generation()
        if self._df is None or self._df[0] != gen:
            self._df = (gen, self.count(), {})
        _, n, df = self._df
        out = []
        for q in queries:
            words = list(dict.fromkeys(terms(q)))
            known = {w: df[w] for w in words if w in df}
            missing = [w for w in words if w not in known]
            if missing:  # (a word no document has is counted once too: 0)
                found = self._document_frequencies(missing)
                new = {w: found.get(w, 0) for w in missing}
                known.update(new)
                if len(df) + len(new) > DF_WORDS:  # start again rather than grow without end
                    df.clear()
                df.update((w, c) for w, c in new.items() if len(w) <= CACHED_WORD_CHARS)
            out.append({w: self._idf(n, known[w]) for w in words})
        return out

    @staticmethod
    def best_per_document(rows: Iterable[Iterable[Hit]], k: int) -> list[list[Hit]]:
        """For each query's passage hits (best first), the best passage of each document, the
        ``k`` best documents."""
        out = []
        for row in rows:
            seen: dict[str, Hit] = {}
            for h in row:
                if h.doc_id not in seen:
                    seen[h.doc_id] = h
                    if len(seen) == k:
                        break
            out.append(sorted(seen.values(), key=lambda x: -x.score))
        return out

    @staticmethod
    def write_counts(documents: Sequence[Document], existing: set[str], removed: int
                     ) -> WriteResult:
        """``WriteResult`` of a write of ``documents`` where ``existing`` ids were stored before."""
        added = sum(1 for d in documents if d.id not in existing)
        return WriteResult(added=added, updated=len(documents) - added, removed=removed)


#: documents per read from one store and write to another (:func:`copy_documents`)
COPY_BATCH = 8192


def copy_documents(src: Store, dst: Store, on_batch: Callable[[int], None] | None = None) -> None:
    """Write every document of ``src`` with its passages (their vectors as stored: nothing is
    encoded) to ``dst``, a batch at a time; ``on_batch(documents)`` after each (progress).
    What ``migrate`` and a local copy of a Milvus collection do."""
    for docs, parts in src.export(COPY_BATCH):
        dst.write(docs, parts, [])
        if on_batch is not None:
            on_batch(len(docs))
