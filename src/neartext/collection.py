"""The :class:`Collection` façade: build, update and search a corpus of texts.

Example:
    >>> from neartext import Collection
    >>> col = Collection.create("feedback/")                       # doctest: +SKIP
    >>> report = col.index_file("demo/feedback.csv", text=["text"], id_column="id")  # doctest: +SKIP
    >>> [r.id for r in col.search("the app crashes when I open it", k=3)]  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .address import Address, parse_address
from .cleaning import CleaningOptions, chunk_spans, clean
from .corpus import Record, read_corpus
from .encoders import Encoder, EncoderSettings, canonical_name, load_encoder
from .errors import InputError, ModelMismatch
from .filters import Filter, parse_filter
from .hybrid import DEFAULT_ALPHA, DEFAULT_FUSION, blend, candidates, check_mode, rrf
from .lexical import script_shares
from .manifest import Manifest
from .results import IndexReport, SearchResult
from .store import Document, Hit, Passage, Store
from .store.factory import building, create_store, kind_of, open_store
from .validate import check_text, check_value

if TYPE_CHECKING:
    from .analysis import DedupResult, MiningResult
    from .clustering import ClusterResult
    from .evaluate import PairData

EMBED_CHUNK = 1024  # texts encoded (and checkpointed) at a time


def text_hash(text: str) -> str:
    """Content hash of a text; with the model fingerprint it decides whether to re-embed."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


class Collection:
    """A searchable collection of texts, in a directory or on Milvus (see
    :mod:`neartext.address`).

    Use :meth:`create` for a new collection and :meth:`open` for an existing one. The encoder is
    loaded on first use, so opening and :meth:`info` are fast.
    """

    def __init__(self, path: str | Path | Address, store: Store,
                 encoder: Encoder | None = None) -> None:
        self.address = parse_address(path)
        # where local state lives: the directory itself, or one kept for a Milvus collection
        self.path = self.address.state_dir()
        self.store = store
        self.manifest = Manifest.from_dict(self.address, store.read_manifest())
        self._encoder = encoder
        self._scripts: tuple[int, dict[str, float]] | None = None  # (generation, shares)

    # -- life cycle ------------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        path: str | Path | Address,
        *,
        model: str | EncoderSettings | Encoder = "default",
        chunk: int | None = None,
        overlap: int = 0,
        index: str = "auto",
        cleaning: CleaningOptions | None = None,
        source: dict[str, Any] | None = None,
        milvus: dict[str, Any] | None = None,
    ) -> Collection:
        """Create an empty collection at ``path`` (a directory or a Milvus address);
        :class:`CollectionExists` if one is there. ``milvus`` may give ``index_params`` and
        ``search_params`` for a Milvus collection.

        >>> col = Collection.create("/tmp/nt-doc-col", model="default")  # doctest: +SKIP
        >>> col = Collection.create("milvus-lite:/tmp/nt.db", index="flat")  # doctest: +SKIP
        """
        with building(parse_address(path)) as tmp:
            col = cls._create_at(tmp, model, chunk, overlap, index, cleaning, source, milvus)
            col.close()
        return cls.open(path, model=col.encoder)

    @classmethod
    def from_file(
        cls,
        path: str | Path | Address,
        corpus: str | Path,
        text: Sequence[str] | None = None,
        id_column: str | None = None,
        *,
        encoding: str = "utf-8",
        progress: bool = False,
        model: str | EncoderSettings | Encoder = "default",
        chunk: int | None = None,
        overlap: int = 0,
        index: str = "auto",
        cleaning: CleaningOptions | None = None,
        skip_near_duplicates: float | None = None,
        milvus: dict[str, Any] | None = None,
    ) -> tuple[Collection, IndexReport]:
        """Build a new collection at ``path`` from a corpus file, all or nothing.

        The store builds it all or nothing (a directory in ``<path>.partial``, renamed into
        place when complete; a Milvus collection marked unfinished until then), so an error or
        a crash never leaves a half-built collection at ``path``.

        >>> col, report = Collection.from_file("feedback/", "demo/feedback.csv",
        ...                                    text=["text"], id_column="id")  # doctest: +SKIP
        """
        check_threshold(skip_near_duplicates)
        if chunk is not None:
            chunk_spans("x", chunk, overlap)  # validates size/overlap
        # Read and clean the corpus before loading the model, so bad input fails fast.
        records = read_corpus(corpus, text, id_column, encoding=encoding)
        kept, cleaned = _clean(records, corpus, cleaning or CleaningOptions())
        with building(parse_address(path)) as tmp:
            col = cls._create_at(tmp, model, chunk, overlap, index, cleaning,
                                 {"text": list(text) if text else None, "id": id_column}, milvus)
            try:
                # sync: a build resumed in a directory an earlier run left holds nothing else
                report = col.upsert(kept, sync=True, progress=progress,
                                    skip_near_duplicates=skip_near_duplicates)
                report.add_cleaning(cleaned)
            finally:
                col.close()
        return cls.open(path, model=col.encoder), report

    @classmethod
    def _create_at(
        cls,
        p: Address,
        model: str | EncoderSettings | Encoder,
        chunk: int | None,
        overlap: int,
        index: str,
        cleaning: CleaningOptions | None,
        source: dict[str, Any] | None,
        milvus: dict[str, Any] | None = None,
    ) -> Collection:
        if chunk is not None:
            chunk_spans("x", chunk, overlap)  # validates size/overlap
        encoder = model if isinstance(model, Encoder) else load_encoder(
            model if isinstance(model, EncoderSettings) else EncoderSettings(model=model))
        manifest = Manifest.new(encoder, canonical_name(encoder.settings.model), index=index,
                                chunk=chunk, overlap=overlap, cleaning=cleaning, source=source)
        return cls(p, create_store(p, manifest.to_dict(), milvus), encoder)

    @classmethod
    def open(cls, path: str | Path | Address, *, model: str | Encoder | None = None) -> Collection:
        """Open an existing collection; with ``model``, check it is the one the collection uses.

        Raises:
            CollectionNotFound: nothing at ``path``.
            ModelMismatch: ``model`` gives other vectors than the collection's model.
        """
        a = parse_address(path)
        store = open_store(a)
        col = cls(a, store)
        if model is not None:
            col._encoder = col._load_encoder(model)
        return col

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Collection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the encoder -----------------------------------------------------------------------------

    @property
    def encoder(self) -> Encoder:
        """The collection's encoder, loaded on first use and checked against the manifest."""
        if self._encoder is None:
            self._encoder = self._load_encoder(None)
        return self._encoder

    def use_encoder(self, encoder: Encoder) -> None:
        """Use an already loaded ``encoder`` (shared with other collections); ``ModelMismatch``
        if it gives other vectors than the collection's model."""
        self._encoder = self._load_encoder(encoder)

    def _load_encoder(self, model: str | Encoder | None) -> Encoder:
        m = self.manifest.model
        enc = model if isinstance(model, Encoder) else load_encoder(
            self.manifest.encoder_settings(model))
        if enc.fingerprint != m.fingerprint:
            given = enc.settings.model
            raise ModelMismatch(
                f"{self.address}: built with model '{m.name}' (fingerprint {m.fingerprint}), "
                f"but '{given}' gives other vectors (fingerprint {enc.fingerprint}); "
                f"use the collection's model, or re-embed with 'neartext reindex'"
            )
        return enc

    # -- writing ---------------------------------------------------------------------------------

    def index_file(
        self,
        path: str | Path,
        text: Sequence[str] | None = None,
        id_column: str | None = None,
        *,
        encoding: str = "utf-8",
        sync: bool = False,
        progress: bool = False,
        skip_near_duplicates: float | None = None,
    ) -> IndexReport:
        """Read, clean and upsert a corpus file. ``sync=True`` also removes documents not in it.

        Column choices default to those recorded when the collection was first indexed.
        """
        check_threshold(skip_near_duplicates)
        src = self.manifest.source
        text = text or src.get("text")
        id_column = id_column or src.get("id")
        records = read_corpus(path, text, id_column, encoding=encoding)
        report = self._index_records(records, path, sync=sync, progress=progress,
                                     skip_near_duplicates=skip_near_duplicates)
        if not src.get("text") and text:
            self.manifest.source = {"text": list(text), "id": id_column}
            self.save_manifest()
        return report

    def _index_records(
        self,
        records: list[Record],
        path: str | Path,
        *,
        sync: bool,
        progress: bool,
        skip_near_duplicates: float | None = None,
    ) -> IndexReport:
        """Clean ``records`` read from ``path`` with the collection's options, then upsert them."""
        kept, cleaning = _clean(records, path, self.manifest.cleaning_options())
        report = self.upsert(kept, sync=sync, progress=progress,
                             skip_near_duplicates=skip_near_duplicates)
        report.add_cleaning(cleaning)
        return report

    def upsert(
        self,
        records: Sequence[Record],
        *,
        sync: bool = False,
        progress: bool = False,
        skip_near_duplicates: float | None = None,
    ) -> IndexReport:
        """Add or replace ``records``; only new or changed texts are embedded.

        With ``sync=True`` documents absent from ``records`` are removed (a full re-index).
        With ``skip_near_duplicates=T``, new documents (ids not yet stored) scoring ``>= T``
        against a stored document or an earlier incoming one are not written; the report lists
        them. Updates of stored ids are always applied.
        """
        if skip_near_duplicates is not None:
            check_threshold(skip_near_duplicates)
            if self.manifest.chunking:
                raise InputError("--skip-near-duplicates works on collections without chunking")
        t0 = time.perf_counter()
        for r in records:
            check_text(r.id, "a document id")
            check_text(r.text, f"document {r.id!r}: text")
            check_value(r.metadata, f"document {r.id!r}: metadata")
        ids = [r.id for r in records]
        if len(set(ids)) != len(ids):
            seen: set[str] = set()
            dup = [i for i in ids if i in seen or seen.add(i)]  # type: ignore[func-returns-value]
            raise InputError(f"duplicate ids in one upsert: {', '.join(map(repr, dup[:3]))}")
        report = IndexReport(rows_read=len(records))
        old = {d.id: d for d in self.store.get(ids)}
        docs: list[Document] = []
        changed: list[Document] = []
        for r in records:
            h = text_hash(r.text)
            prev = old.get(r.id)
            if prev is not None and prev.hash == h and prev.metadata == r.metadata:
                report.unchanged += 1
                continue
            doc = Document(r.id, r.text, dict(r.metadata), h)
            docs.append(doc)
            if prev is None or prev.hash != h:
                changed.append(doc)
        passages = self._passages(changed, report, progress)
        if skip_near_duplicates is not None and passages:
            docs, passages = self._drop_near_duplicates(
                docs, passages, set(old), skip_near_duplicates, report)
        delete_ids: list[str] = []
        if sync:
            keep = set(ids)
            delete_ids = [i for i in self.store.document_hashes() if i not in keep]
        if docs or delete_ids:
            res = self.store.write(docs, passages, delete_ids)
            report.added, report.updated, report.removed = res.added, res.updated, res.removed
            report.warnings += res.warnings
        report.seconds = time.perf_counter() - t0
        return report

    def _drop_near_duplicates(
        self,
        docs: list[Document],
        passages: list[Passage],
        stored: set[str],
        threshold: float,
        report: IndexReport,
    ) -> tuple[list[Document], list[Passage]]:
        from .analysis import near_duplicates

        new = [p for p in passages if p.doc_id not in stored]
        if not new:
            return docs, passages
        found = near_duplicates(self, [p.doc_id for p in new],
                                np.stack([p.vector for p in new]), threshold)
        report.near_duplicates = [{"id": i, "duplicate_of": d, "score": s}
                                  for i, (d, s) in found.items()]
        report.skipped_near_duplicates = len(found)
        return ([d for d in docs if d.id not in found],
                [p for p in passages if p.doc_id not in found])

    def _passages(self, docs: list[Document], report: IndexReport, progress: bool) -> list[Passage]:
        size, overlap = self.manifest.chunk_size, self.manifest.chunk_overlap
        spans: list[tuple[Document, int, int, str]] = []
        for d in docs:
            if size:
                for s, e in chunk_spans(d.text, size, overlap):
                    spans.append((d, s, e, text_hash(d.text[s:e])))
            else:
                spans.append((d, 0, len(d.text), d.hash))
        vectors = self.store.vectors_by_hash([h for *_, h in spans])
        todo: dict[str, str] = {}
        for d, s, e, h in spans:
            if h not in vectors:
                todo.setdefault(h, d.text[s:e])
        report.vectors_reused = len(spans) - sum(1 for *_, h in spans if h not in vectors)
        if todo:
            vectors.update(self._embed(todo, report, progress))
        return [Passage(d.id, s, e, h, vectors[h]) for d, s, e, h in spans]

    def _embed(self, todo: dict[str, str], report: IndexReport, progress: bool) -> dict[str, np.ndarray]:
        from tqdm.auto import tqdm

        enc = self.encoder
        # Longest first, as sentence-transformers does inside one call: batches pad little.
        order = sorted(todo, key=lambda h: -len(todo[h]))
        out: dict[str, np.ndarray] = {}
        report.truncated += enc.count_truncated([todo[h] for h in order])
        with tqdm(total=len(order), desc="embedding", unit="text", disable=not progress) as bar:
            for i in range(0, len(order), EMBED_CHUNK):
                part = order[i : i + EMBED_CHUNK]
                vecs = enc.encode([todo[h] for h in part], kind="document")
                self.store.stage_vectors(part, vecs)  # survives a crash before the final write
                out.update(zip(part, vecs))
                bar.update(len(part))
        report.texts_embedded = len(order)
        return out

    def delete(self, ids: Sequence[str]) -> int:
        """Delete documents by id; returns how many existed. A problem after the commit (the
        index cache not saved) is logged as a warning: the documents are deleted."""
        return self.store.write([], [], list(ids)).removed

    # -- reading ---------------------------------------------------------------------------------

    def search(
        self,
        query: str,
        k: int = 10,
        *,
        threshold: float | None = None,
        where: Sequence[str] | str | Filter | None = None,
        contains: Sequence[str] | None = None,
        mode: str = "semantic",
        fusion: str = DEFAULT_FUSION,
        alpha: float = DEFAULT_ALPHA,
    ) -> list[SearchResult]:
        """The ``k`` documents closest in meaning to ``query``, best first.

        Args:
            query: the text to search for.
            k: how many results at most.
            threshold: drop results scoring below this (cosine, in [-1, 1]; semantic mode only).
            where: metadata conditions such as ``"year>=2022"`` (all must hold).
            contains: words every result's text must contain (case-insensitive).
            mode: ``semantic`` (vectors), ``keyword`` (BM25 over stemmed words) or ``hybrid``
                (both, fused; see :mod:`neartext.hybrid`). A result's ``score`` is the cosine,
                the BM25 score or the fused score accordingly.
            fusion: ``blend`` (``alpha`` * cosine + (1 - ``alpha``) * BM25 as a share of a
                full match; the default) or ``rrf`` (reciprocal rank fusion), for hybrid mode.
        """
        return self.search_many([query], k, threshold=threshold, where=where, contains=contains,
                                mode=mode, fusion=fusion, alpha=alpha)[0]

    def search_many(
        self,
        queries: Sequence[str],
        k: int = 10,
        *,
        threshold: float | None = None,
        where: Sequence[str] | str | Filter | None = None,
        contains: Sequence[str] | None = None,
        mode: str = "semantic",
        fusion: str = DEFAULT_FUSION,
        alpha: float = DEFAULT_ALPHA,
    ) -> list[list[SearchResult]]:
        """:meth:`search` for several queries at once (encoded in one batch)."""
        check_k(k)
        check_threshold(threshold)
        check_mode(mode, fusion, alpha)
        for q in queries:
            if not isinstance(q, str) or not q.strip():
                raise InputError("empty query; give some text to search for")
            check_text(q, "query")
        flt = self.make_filter(where, contains)
        vecs = None if mode == "keyword" else self.encoder.encode(list(queries), kind="query")
        return self.search_vectors(vecs, k, threshold=threshold, where=flt, texts=list(queries),
                                   mode=mode, fusion=fusion, alpha=alpha)

    def make_filter(
        self, where: Sequence[str] | str | Filter | None = None, contains: Sequence[str] | None = None
    ) -> Filter:
        """Parse ``where``/``contains`` into a :class:`Filter` checked against the stored fields."""
        flt = where if isinstance(where, Filter) else parse_filter(where, contains)
        if isinstance(where, Filter) and contains:
            flt = Filter(where.conditions, [*where.contains, *contains])
        self._check_fields(flt)
        return flt

    def search_vectors(
        self, vectors: np.ndarray | None, k: int = 10, *, threshold: float | None = None,
        where: Filter | None = None, texts: Sequence[str] | None = None, mode: str = "semantic",
        fusion: str = DEFAULT_FUSION, alpha: float = DEFAULT_ALPHA,
    ) -> list[list[SearchResult]]:
        """:meth:`search_many` for query vectors already encoded with the collection's model
        (the service encodes the queries of concurrent requests together, then calls this).
        Keyword and hybrid modes also need the query ``texts``; keyword mode needs no vectors."""
        check_k(k)
        check_threshold(threshold)
        check_mode(mode, fusion, alpha)
        if mode != "semantic":
            if threshold is not None:
                raise InputError(f"a threshold applies to cosine scores: use it with the semantic "
                                 f"mode, not {mode}")
            if texts is None:
                raise InputError(f"{mode} search needs the query texts")
        if mode != "keyword" and vectors is None:
            raise InputError(f"{mode} search needs query vectors")
        flt = where or None
        chunked = bool(self.manifest.chunking)
        ranked: list[list[tuple[str, float, Hit | None]]]
        if mode == "semantic":
            assert vectors is not None
            ranked = [[(h.doc_id, h.score, h) for h in row
                       if threshold is None or h.score >= threshold]
                      for row in self.store.search(vectors, k, flt)]
        elif mode == "keyword":
            assert texts is not None
            ranked = [[(h.doc_id, h.score, None) for h in row]
                      for row in self.store.keyword_search(texts, k, flt)]
        else:
            assert texts is not None and vectors is not None
            ranked = self._hybrid(vectors, texts, k, flt, fusion, alpha)
        docs = {d.id: d for d in self.store.get(sorted({d for row in ranked for d, _, _ in row}))}
        out = []
        for row in ranked:
            results = []
            for doc_id, score, hit in row:
                d = docs.get(doc_id)
                if d is None:  # deleted by another process since the index was read
                    continue
                passage = d.text[hit.start:hit.end] if chunked and hit is not None else None
                results.append(SearchResult(d.id, d.text, score, d.metadata, passage))
            out.append(results)
        return out

    def _hybrid(self, vectors: np.ndarray, texts: Sequence[str], k: int, flt: Filter | None,
                fusion: str, alpha: float) -> list[list[tuple[str, float, Hit | None]]]:
        n = candidates(k)
        sem_rows = self.store.search(vectors, n, flt)
        kw_rows = self.store.keyword_search(texts, n, flt)
        norms = self.store.keyword_norms(texts) if fusion == "blend" else [0.0] * len(texts)
        out = []
        for q, sem, kw, norm in zip(vectors, sem_rows, kw_rows, norms):
            best = {h.doc_id: h for h in sem}
            if fusion == "rrf":
                fused = rrf([h.doc_id for h in sem], [h.doc_id for h in kw], k)
            else:
                cosine = {h.doc_id: h.score for h in sem}
                missing = [h.doc_id for h in kw if h.doc_id not in cosine]
                for doc, vecs in self.store.doc_vectors(missing).items():
                    cosine[doc] = float(np.max(vecs @ q))
                fused = blend(cosine, {h.doc_id: h.score for h in kw}, norm, alpha, k)
            out.append([(doc, score, best.get(doc)) for doc, score in fused])
        return out

    def _check_fields(self, flt: Filter) -> None:
        known = self.store.metadata_fields()
        for f in sorted(flt.fields):
            if f not in known:
                listed = ", ".join(sorted(known)) or "none"
                raise InputError(f"unknown metadata field '{f}' in filter; fields: {listed}")

    # -- corpus-level operations (neartext.analysis) ---------------------------------------------

    def mine(self, threshold: float | None = None, top_k: int = 100, **kw: Any) -> MiningResult:
        """All pairs of documents scoring ``>= threshold``; see :func:`neartext.analysis.mine`."""
        from .analysis import mine

        return mine(self, threshold, top_k, **kw)

    def paraphrases(
        self, text: str, threshold: float | None = None, top_k: int = 100
    ) -> tuple[list[SearchResult], str | None]:
        """Paraphrases of ``text``, and a notice when none pass the threshold."""
        from .analysis import paraphrases

        return paraphrases(self, text, threshold, top_k)

    def dedup(self, threshold: float | None = None, **kw: Any) -> DedupResult:
        """Groups of near-duplicate documents; see :func:`neartext.analysis.dedup`."""
        from .analysis import dedup

        return dedup(self, threshold, **kw)

    def cluster(self, method: str = "community", **kw: Any) -> ClusterResult:
        """Clusters of the documents with labels; see :func:`neartext.clustering.cluster`."""
        from .clustering import cluster

        return cluster(self, method, **kw)

    def calibrate(self, pairs: PairData, *, min_precision: float | None = None) -> dict[str, Any]:
        """Choose a similarity threshold from labeled pairs with the collection's model and store
        it in the manifest (``mine``, ``paraphrases`` and ``dedup`` then use it by default).

        The threshold is the best-F1 one, or with ``min_precision`` the one with most recall at
        that precision.
        """
        from .evaluate import evaluate_pairs

        m = evaluate_pairs(self.encoder, pairs, min_precision)
        if min_precision is not None:
            if "min_precision_threshold" not in m:
                raise InputError(f"{pairs.source}: no threshold reaches precision "
                                 f"{min_precision:g} (best F1 {m['best_f1']:.3f})")
            t, prec, rec = (m["min_precision_threshold"], m["precision_at_min_precision"],
                            m["recall_at_min_precision"])
            rule = f"precision >= {min_precision:g}"
        else:
            t, prec, rec = m["best_f1_threshold"], m["precision_at_best_f1"], m["recall_at_best_f1"]
            rule = "best F1"
        cal = {"threshold": float(t), "rule": rule, "precision": prec, "recall": rec,
               "pairs": len(pairs.value), "source": pairs.source,
               "average_precision": m["average_precision"],
               "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        self.manifest.threshold = float(t)
        self.manifest.calibration = cal
        self.save_manifest()
        return cal

    def save_manifest(self) -> None:
        """Store :attr:`manifest` (after changing it) with the store's atomic write."""
        self.store.write_manifest(self.manifest.to_dict())

    def repair(self) -> dict[str, Any]:
        """Rebuild the vector index from the stored passages (the source of truth) and report
        what was found (see ``Store.repair``); ``neartext repair`` calls this."""
        return {"collection": str(self.address), **self.store.repair()}

    def get(self, ids: Sequence[str]) -> list[Document]:
        """Stored documents by id."""
        return self.store.get(ids)

    def __len__(self) -> int:
        return self.store.count()

    def info(self) -> dict[str, Any]:
        """Size, model and settings of the collection; ``scripts`` gives the share of texts
        written mostly in Cyrillic, mostly in Latin letters, or neither."""
        size = kind_of(self.address).bytes_on_disk(self.address)
        m = self.manifest
        return {
            "path": str(self.address),
            "store": self.address.kind,
            "documents": self.store.count(),
            "passages": self.store.passage_count(),
            "model": m.model.name,
            "fingerprint": m.model.fingerprint,
            "dim": m.dim,
            "metric": m.metric,
            "index": self.store.index_info(),
            "chunking": m.chunking,
            "prefixes": {"query": m.model.settings.get("query_prefix"),
                         "document": m.model.settings.get("document_prefix")},
            "pooling": m.model.settings.get("pooling"),
            "max_seq_length": m.model.settings.get("max_seq_length"),
            "metadata_fields": sorted(self.store.metadata_fields()),
            "scripts": self._script_shares(),
            "keyword_index": self.store.has_keyword_index(),
            "source": m.source,
            "threshold": m.threshold,
            "created": m.created,
            "neartext_version": m.neartext_version,
            "bytes_on_disk": size,
        }


    def _script_shares(self) -> dict[str, float]:
        """``lexical.script_shares`` of every text, recomputed only after a write (the service
        asks on every ``GET /collections/{name}``)."""
        gen = self.store.generation()
        if self._scripts is None or self._scripts[0] != gen:
            self._scripts = (gen, script_shares(self.store.iter_texts()))
        return dict(self._scripts[1])


def _clean(records: list[Record], path: str | Path, options: CleaningOptions
           ) -> tuple[list[Record], Any]:
    """``cleaning.clean`` with the refusal of a corpus that keeps nothing."""
    kept, cleaning = clean(records, options)
    if not kept:
        why = ", ".join(f"{n} {r}" for r, n in cleaning.dropped.items()) or "no rows"
        raise InputError(f"{path}: nothing to index ({cleaning.read} rows read; dropped: {why})")
    return kept, cleaning


def check_k(k: int) -> None:
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise InputError(f"k must be a whole number >= 1 (got {k})")


def check_threshold(threshold: float | None) -> None:
    if threshold is not None and not -1.0 <= threshold <= 1.0:
        raise InputError(f"threshold must be between -1 and 1 (got {threshold})")
