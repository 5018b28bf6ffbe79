"""The :class:`Collection` façade: build, update and search a corpus of texts.

Example:
    >>> from neartext import Collection
    >>> col = Collection.create("feedback/")                       # doctest: +SKIP
    >>> report = col.index_file("demo/feedback.csv", text=["text"], id_column="id")  # doctest: +SKIP
    >>> [r.id for r in col.search("the app crashes when I open it", k=3)]  # doctest: +SKIP
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from . import ingest
from .address import Address, parse_address
from .cleaning import CleaningOptions, chunk_spans
from .corpus import Record, id_column_hint
from .encoders import Encoder, EncoderSettings, canonical_name, load_encoder
from .errors import InputError, ModelMismatch
from .filters import Filter
from .hybrid import DEFAULT_ALPHA, DEFAULT_FUSION, Fusion, Mode
from .lexical import script_shares
from .manifest import Manifest
from .results import Calibration, CollectionInfo, IndexReport, SearchResult
from .searching import SearchOptions, check_threshold, make_filter, search_vectors
from .store import Document, Store
from .store.codec import codec
from .store.factory import building, create_store, kind_of, open_store
from .validate import check_text
from .vectors import query_vectors

if TYPE_CHECKING:
    from .adapters import Adapter
    from .analysis import DedupResult, MiningResult
    from .clustering import ClusterResult
    from .compute import RayCompute
    from .evaluate import PairData

T = TypeVar("T")



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
        self._manifest_stamp = store.manifest_stamp()
        self.manifest = Manifest.from_dict(self.address, store.read_manifest())
        self._encoder = encoder
        self._adapter: tuple[tuple[int, str], Adapter | None] | None = None
        self._scripts: tuple[int, dict[str, float]] | None = None  # (generation, shares)
        # where new texts are embedded: None in this process, else a neartext.compute.RayCompute
        self.compute: RayCompute | None = None
        # set by a process that serves it to several threads: a new version this process swaps
        # in (a both-side adapter's) is then opened anew by that process, not in place
        self.shared = False

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
        precision: str = "float32",
    ) -> Collection:
        """Create an empty collection at ``path`` (a directory or a Milvus address);
        :class:`CollectionExists` if one is there. ``milvus`` may give ``index_params`` and
        ``search_params`` for a Milvus collection.

        >>> col = Collection.create("/tmp/nt-doc-col", model="default")  # doctest: +SKIP
        >>> col = Collection.create("milvus-lite:/tmp/nt.db", index="flat")  # doctest: +SKIP
        """
        with building(parse_address(path)) as tmp:
            col = cls._create_at(tmp, model, chunk, overlap, index, cleaning, source, milvus,
                                 precision)
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
        vectors: str | None = None,
        vectors_from: str | None = None,
        precision: str = "float32",
        compute: RayCompute | None = None,
    ) -> tuple[Collection, IndexReport]:
        """Build a new collection at ``path`` from a corpus file, all or nothing (``compute``:
        embed on Ray's encoder actors, inside a :func:`neartext.compute.ray_session`).

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
        # (on Ray, a directory in parts: the first part)
        parts = ingest.read_parts(corpus, text, id_column, encoding=encoding, vectors=vectors,
                                  cleaning=cleaning or CleaningOptions(), compute=compute,
                                  in_parts=True)
        first = next(parts)
        vectors_from = _file_model(corpus, vectors, vectors_from)
        hint = id_column_hint(corpus, first.records, id_column)
        with building(parse_address(path)) as tmp:
            col = cls._create_at(tmp, model, chunk, overlap, index, cleaning,
                                 {"text": list(text) if text else None, "id": id_column}, milvus,
                                 precision)
            try:
                # a build resumed in a directory an earlier run left ends holding nothing else
                report = ingest.upsert_parts(col, itertools.chain([first], parts),
                                             progress=progress,
                                             skip_near_duplicates=skip_near_duplicates,
                                             vectors_from=vectors_from, source=str(corpus))
                report.warn(hint)
            finally:
                col.close()
        return cls.open(path, model=col.encoder), report

    @classmethod
    def index_corpus(cls, path: str | Path | Address, corpus: str | Path,
                     text: Sequence[str] | None = None, id_column: str | None = None, *,
                     model: str | None = None, batch_size: int | None = None,
                     encoder_options: dict[str, Any] | None = None, **options: Any
                     ) -> tuple[IndexReport, bool]:
        """Build the collection at ``path`` from ``corpus``, or, when one is there, bring it in
        line with the corpus (new and changed texts embedded, absent ids removed). Returns the
        report and whether the collection was created.

        ``options`` are :meth:`from_file`'s (``encoding``, ``progress``,
        ``skip_near_duplicates``, ``chunk``, ``overlap``, ``index``, ``cleaning``, ``milvus``).
        Those that shape a collection (and ``encoder_options`` such as prefixes or pooling)
        apply when creating; given for an existing collection they are an :class:`InputError`
        naming them, since re-indexing keeps the collection's settings. ``model`` names the
        model to build with, or for an existing collection the model it must have been built
        with.

        >>> report, created = Collection.index_corpus("feedback/", "demo/feedback.csv",
        ...                                           id_column="id")  # doctest: +SKIP
        """
        return ingest.index_corpus(cls, path, corpus, text, id_column, model=model,
                                   batch_size=batch_size, encoder_options=encoder_options,
                                   **options)

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
        precision: str = "float32",
    ) -> Collection:
        if chunk is not None:
            chunk_spans("x", chunk, overlap)  # validates size/overlap
        codec(precision, 1)  # a known precision, before the model loads
        if precision != "float32" and p.kind != "local":
            raise InputError(f"{p}: --precision {precision} applies to local collections; "
                             "Milvus stores float32 vectors (its index types quantize)")
        encoder = model if isinstance(model, Encoder) else load_encoder(
            model if isinstance(model, EncoderSettings) else EncoderSettings(model=model))
        manifest = Manifest.new(encoder, canonical_name(encoder.settings.model), index=index,
                                precision=precision, chunk=chunk, overlap=overlap,
                                cleaning=cleaning, source=source)
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

    def reopen(self) -> None:
        """Open the collection at this address again (after this process swapped in a new
        version of it: a both-side adapter's promotion, a rollback); the encoder stays if the
        new version has the same model, else the new one loads on first use."""
        from .store.factory import open_store

        self.store.close()
        self.store = open_store(self.address)
        self._manifest_stamp = self.store.manifest_stamp()
        self.manifest = Manifest.from_dict(self.address, self.store.read_manifest())
        if self._encoder is not None and \
                self._encoder.fingerprint != self.manifest.model.fingerprint:
            self._encoder = None
        self._adapter = None
        self._scripts = None

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

    @property
    def adapter(self) -> Adapter | None:
        """The current version's query-side adapter (:mod:`neartext.versions`), if any;
        applied to query vectors by every search."""
        return self.current()[1]

    def current(self) -> tuple[Manifest, Adapter | None]:
        """The current version's manifest and adapter, taken together: a search that ranks
        with one pair never mixes the ranking of one version with the adapter of another,
        whatever another thread or process promotes meanwhile."""
        m = self.manifest
        key = (m.version, repr(m.adapter))
        cached = self._adapter
        if cached is None or cached[0] != key:
            from .versions import load_adapter

            cached = (key, load_adapter(self, m))
            self._adapter = cached
        return m, cached[1]

    def to_stored_space(self, vectors: np.ndarray,
                        version: tuple[Manifest, Adapter | None] | None = None) -> np.ndarray:
        """Document vectors from the encoder (or brought by rows) as the stored ones are:
        mapped by the current version's both-side adapter (:mod:`neartext.adapters`), if any;
        ``version``: one taken by :meth:`current` (a long write maps every batch alike)."""
        _, adapter = version or self.current()
        if adapter is None or not adapter.documents_too:
            return vectors
        return adapter.apply(vectors)

    def forget_adapter(self) -> None:
        """Read the adapter again on next use (the manifest changed)."""
        self._adapter = None

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
        vectors: str | None = None,
        vectors_from: str | None = None,
    ) -> IndexReport:
        """Read, clean and upsert a corpus file. ``sync=True`` also removes documents not in it.
        ``vectors`` names a column of the rows' own vectors, made by ``vectors_from`` (the
        collection's model: its name, fingerprint or ``same``; see :mod:`neartext.vectors`).

        Column choices default to those recorded when the collection was first indexed.
        """
        check_threshold(skip_near_duplicates)
        src = self.manifest.source
        text = text or src.get("text")
        id_column = id_column or src.get("id")
        # one part: the change is one atomic write
        part = ingest.read_cleaned(path, text, id_column, encoding=encoding, vectors=vectors,
                                   cleaning=self.manifest.cleaning_options(),
                                   compute=self.compute)
        hint = id_column_hint(path, part.records, id_column)
        given, self.compute = self.compute, part.compute  # with the rows Ray's tasks read
        try:
            report = ingest.upsert(self, part.kept, sync=sync, progress=progress,
                                   skip_near_duplicates=skip_near_duplicates,
                                   vectors_from=_file_model(path, vectors, vectors_from),
                                   source=str(path))
        finally:
            self.compute = given
        report.add_cleaning(part.cleaning)
        report.warn(hint)
        if not src.get("text") and text:
            source = {"text": list(text), "id": id_column}
            self.update_manifest(lambda m: setattr(m, "source", source))
        return report

    def upsert(
        self,
        records: Sequence[Record],
        *,
        sync: bool = False,
        progress: bool = False,
        skip_near_duplicates: float | None = None,
        vectors_from: str | None = None,
    ) -> IndexReport:
        """Add or replace ``records``; only new or changed texts are embedded.

        With ``sync=True`` documents absent from ``records`` are removed (a full re-index).
        With ``skip_near_duplicates=T``, new documents (ids not yet stored) scoring ``>= T``
        against a stored document or an earlier incoming one are not written; the report lists
        them. Updates of stored ids are always applied. Records with their own ``vector`` are
        stored with it, not encoded; ``vectors_from`` must name the collection's model (its
        name, fingerprint, or ``same``).
        """
        return ingest.upsert(self, records, sync=sync, progress=progress,
                             skip_near_duplicates=skip_near_duplicates, vectors_from=vectors_from)

    def delete(self, ids: Sequence[str]) -> int:
        """Delete documents by id; returns how many existed. A problem after the commit (the
        index cache not saved) is logged as a warning: the documents are deleted."""
        return self.store.write([], [], list(ids)).removed

    def matching(self, where: Sequence[str] | str | Filter | None = None,
                 contains: Sequence[str] | None = None) -> list[str]:
        """The ids of the documents a filter selects (what :meth:`delete_where` would delete).

        >>> col.matching("topic=billing|topic=refund")                         # doctest: +SKIP
        ['fb-0066', 'fb-0067', ...]
        """
        return self.store.ids_where(self._selection(where, contains))

    def delete_where(self, where: Sequence[str] | str | Filter | None = None,
                     contains: Sequence[str] | None = None) -> int:
        """Delete the documents a filter selects, chosen and deleted in one write (on Milvus,
        which has no transactions: chosen just before); returns how many.

        >>> col.delete_where("!platform=ios", contains=["crash"])             # doctest: +SKIP
        12
        """
        return self.store.write([], [], self._selection(where, contains)).removed

    def _selection(self, where: Sequence[str] | str | Filter | None,
                   contains: Sequence[str] | None) -> Filter:
        flt = self.make_filter(where, contains)
        if not flt:
            raise InputError("a filter that selects documents is needed: give --where or "
                             "--contains (to delete everything, delete the collection)")
        return flt

    # -- reading ---------------------------------------------------------------------------------

    def search(
        self,
        query: str,
        k: int = 10,
        *,
        threshold: float | None = None,
        where: Sequence[str] | str | Filter | None = None,
        contains: Sequence[str] | None = None,
        mode: Mode | None = None,
        fusion: Fusion | None = None,
        alpha: float | None = None,
        options: SearchOptions | None = None,
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
            options: all of ``k`` to ``alpha`` as one :class:`SearchOptions` (then those
                arguments are not used).
        """
        return self.search_many([query], k, threshold=threshold, where=where, contains=contains,
                                mode=mode, fusion=fusion, alpha=alpha, options=options)[0]

    def search_many(
        self,
        queries: Sequence[str],
        k: int = 10,
        *,
        threshold: float | None = None,
        where: Sequence[str] | str | Filter | None = None,
        contains: Sequence[str] | None = None,
        mode: Mode | None = None,
        fusion: Fusion | None = None,
        alpha: float | None = None,
        options: SearchOptions | None = None,
        version: tuple[Manifest, Adapter | None] | None = None,
    ) -> list[list[SearchResult]]:
        """:meth:`search` for several queries at once (encoded in one batch). ``version``:
        rank as that version (a manifest and adapter, e.g. from
        :func:`neartext.versions.version_view`) instead of the current one."""
        if version is None:
            self.refresh()  # the version current now, even if another process promoted it
            version = self.current()
        opts = options or self.search_options(k, threshold, mode, fusion, alpha,
                                              manifest=version[0])
        for q in queries:
            if not isinstance(q, str) or not q.strip():
                raise InputError("empty query; give some text to search for")
            check_text(q, "query")
        flt = self.make_filter(where, contains)
        vecs = None if opts.mode == "keyword" else self.encoder.encode(list(queries),
                                                                       kind="query")
        return self.search_vectors(vecs, where=flt, texts=list(queries), options=opts,
                                   version=version)

    def search_options(self, k: int = 10, threshold: float | None = None,
                       mode: Mode | None = None, fusion: Fusion | None = None,
                       alpha: float | None = None, *, manifest: Manifest | None = None
                       ) -> SearchOptions:
        """:class:`SearchOptions` from what the caller named; the rest from the current
        version's tuned ranking (``neartext tune``), else semantic. A threshold without a mode
        means semantic (it is a cosine).

        >>> col.search_options(5).mode                          # doctest: +SKIP
        'hybrid'

        ``manifest``: the version to take the tuned ranking from (default: the current one).
        """
        tuned = (manifest or self.manifest).search or {}
        if mode is None:
            mode = "semantic" if threshold is not None else tuned.get("mode", "semantic")
        from_tuned = mode == tuned.get("mode")
        if fusion is None:
            fusion = tuned.get("fusion", DEFAULT_FUSION) if from_tuned else DEFAULT_FUSION
        if alpha is None:
            tuned_alpha = tuned.get("alpha") if from_tuned else None
            alpha = float(tuned_alpha) if tuned_alpha is not None else DEFAULT_ALPHA
        weights = tuned.get("weights") if fusion == "learned" else None
        names = tuned.get("features") if fusion == "learned" else None
        return SearchOptions(k, threshold, mode, fusion, alpha,
                             None if weights is None else tuple(float(w) for w in weights),
                             None if names is None else tuple(str(n) for n in names))

    def make_filter(
        self, where: Sequence[str] | str | Filter | None = None, contains: Sequence[str] | None = None
    ) -> Filter:
        """Parse ``where``/``contains`` into a :class:`Filter` checked against the stored fields."""
        return make_filter(self.store, where, contains)

    def search_vectors(
        self, vectors: np.ndarray | None, k: int = 10, *, threshold: float | None = None,
        where: Sequence[str] | str | Filter | None = None, contains: Sequence[str] | None = None,
        texts: Sequence[str] | None = None, mode: Mode | None = None,
        fusion: Fusion | None = None, alpha: float | None = None,
        options: SearchOptions | None = None,
        version: tuple[Manifest, Adapter | None] | None = None,
    ) -> list[list[SearchResult]]:
        """:meth:`search_many` for query vectors already encoded with the collection's model
        (the service encodes the queries of concurrent requests together, then calls this; a
        user brings vectors of their own). ``where`` and ``contains`` as in :meth:`search`.
        Keyword and hybrid modes also need the query ``texts``; keyword mode needs no vectors.

        >>> col.search_vectors(np.random.rand(1, 384), k=3, where="topic=billing")  # doctest: +SKIP
        """
        m, adapter = version or self.current()  # ``version``: one taken by :meth:`current`
        opts = options or self.search_options(k, threshold, mode, fusion, alpha, manifest=m)
        before = None
        if vectors is not None:
            vectors = query_vectors(vectors, m.dim)
            if adapter is not None:  # the current version's query-side adapter
                before = None if adapter.documents_too else vectors
                vectors = adapter.apply(vectors)
        flt = where if isinstance(where, Filter) and not contains else \
            self.make_filter(where, contains)
        return search_vectors(self.store, bool(m.chunking), vectors, texts, flt or None, opts,
                              before)

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

    def calibrate(self, pairs: PairData, *, min_precision: float | None = None) -> Calibration:
        """Choose a similarity threshold from labeled pairs with the collection's model and store
        it in the manifest (``mine``, ``paraphrases`` and ``dedup`` then use it by default).

        The threshold is the best-F1 one, or with ``min_precision`` the one with most recall at
        that precision.
        """
        from .evaluate import choose_threshold

        cal = choose_threshold(self.encoder, pairs, min_precision)

        def store(m: Manifest) -> None:
            m.threshold = cal.threshold
            m.calibration = cal.to_dict()

        self.update_manifest(store)
        return cal

    def save_manifest(self) -> None:
        """Store :attr:`manifest` (after changing it) with the store's atomic write. A change
        that must not overwrite another process's goes through :meth:`update_manifest`."""
        self.store.write_manifest(self.manifest.to_dict())
        self._manifest_stamp = self.store.manifest_stamp()

    def refresh(self) -> bool:
        """Adopt the manifest as another process stored it since this one read it (a new
        version, ranking or threshold), so a long-lived process (the service, the bot) serves
        what was promoted elsewhere; True if it changed. Cheap when nothing changed (one
        ``stat`` of the manifest; on Milvus one read a second at most).

        A manifest of other vectors (a ``reindex`` swapped in a re-embedded collection with
        another model) is not adopted: this process still reads the collection it opened,
        and serves it until it opens the collection again.
        """
        stamp = self.store.manifest_stamp()
        if stamp == self._manifest_stamp:
            return False
        new = Manifest.from_dict(self.address, self.store.read_manifest())
        self._manifest_stamp = stamp
        old = self.manifest
        if self.store.replaced() or (new.model.fingerprint, new.dim) != (
                old.model.fingerprint, old.dim):
            return False  # the manifest of another database (a reindex or remap swapped it)
        changed = new.to_dict() != old.to_dict()
        self.manifest = new
        return changed

    def update_manifest(self, change: Callable[[Manifest], T]) -> T:
        """Apply ``change`` to the manifest as stored now and store the result, with other
        processes' manifest writes kept out meanwhile (so neither overwrites the other's);
        returns what ``change`` returns. Nothing is stored if ``change`` raises.

        >>> col.update_manifest(lambda m: setattr(m, "threshold", 0.8))  # doctest: +SKIP
        """
        with self.store.manifest_lock():
            self._manifest_stamp = None
            self.refresh()
            draft = Manifest.from_dict(self.address, self.manifest.to_dict())
            out = change(draft)
            self.store.write_manifest(draft.to_dict())
            self.manifest = draft
            self._manifest_stamp = self.store.manifest_stamp()
        return out

    def repair(self) -> dict[str, Any]:
        """Rebuild the vector index from the stored passages (the source of truth) and report
        what was found (see ``Store.repair``); ``neartext repair`` calls this."""
        return {"collection": str(self.address), **self.store.repair()}

    def get(self, ids: Sequence[str]) -> list[Document]:
        """Stored documents by id."""
        return self.store.get(ids)

    def __len__(self) -> int:
        return self.store.count()

    def info(self) -> CollectionInfo:
        """Size, model and settings of the collection; ``scripts`` gives the share of texts
        written mostly in Cyrillic, mostly in Latin letters, or neither."""
        size = kind_of(self.address).bytes_on_disk(self.address)
        m = self.manifest
        return CollectionInfo(
            path=str(self.address),
            store=self.address.kind,
            documents=self.store.count(),
            passages=self.store.passage_count(),
            model=m.model.name,
            fingerprint=m.model.fingerprint,
            dim=m.dim,
            metric=m.metric,
            index=self.store.index_info(),
            chunking=m.chunking,
            prefixes={"query": m.model.settings.get("query_prefix"),
                      "document": m.model.settings.get("document_prefix")},
            pooling=m.model.settings.get("pooling"),
            max_seq_length=m.model.settings.get("max_seq_length"),
            metadata_fields=sorted(self.store.metadata_fields()),
            scripts=self._script_shares(),
            keyword_index=self.store.has_keyword_index(),
            source=m.source,
            threshold=m.threshold,
            created=m.created,
            neartext_version=m.neartext_version,
            bytes_on_disk=size,
        )

    def _script_shares(self) -> dict[str, float]:
        """``lexical.script_shares`` of every text, recomputed only after a write (the service
        asks on every ``GET /collections/{name}``)."""
        gen = self.store.generation()
        if self._scripts is None or self._scripts[0] != gen:
            self._scripts = (gen, script_shares(self.store.iter_texts()))
        return dict(self._scripts[1])


def _file_model(path: str | Path, vectors: str | None, vectors_from: str | None) -> str | None:
    """Which model made a file's vectors: as the caller says, else as a ``neartext export
    vectors`` file records (a contradiction is refused)."""
    if vectors is None:
        return vectors_from
    from .vectors import file_model

    recorded = file_model(path)
    if recorded is None:
        return vectors_from
    fingerprint, name = recorded
    if vectors_from not in (None, "same", name) and not fingerprint.startswith(vectors_from):
        raise InputError(f"{path}: its vectors were made by {name or 'the model'} (fingerprint "
                         f"{fingerprint[:12]}), not {vectors_from}")
    return fingerprint
