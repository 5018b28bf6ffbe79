"""The :class:`Collection` façade: build, update and search a corpus of texts.

Example:
    >>> from neartext import Collection
    >>> col = Collection.create("feedback/")                       # doctest: +SKIP
    >>> report = col.index_file("demo/feedback.csv", text=["text"], id_column="id")  # doctest: +SKIP
    >>> [r.id for r in col.search("the app crashes when I open it", k=3)]  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from neartext.data.address import Address, parse_address
from neartext.data.cleaning import CleaningOptions
from neartext.data.corpus import Record
from neartext.data.evaldata import PairData
from neartext.data.filters import Filter
from neartext.data.manifest import Manifest
from neartext.data.ranking import TEXT_MODES, Fusion, Mode, SearchOptions
from neartext.data.results import Calibration, CollectionInfo, IndexReport, SearchResult
from neartext.encoders import Encoder, EncoderSettings
from neartext.engine import ingest
from neartext.engine.analysis import DedupResult, MiningResult, dedup, mine, paraphrases
from neartext.engine.building import corpus_first, new_store, sync_options
from neartext.engine.clustering import DEFAULT_METHOD as CLUSTER_DEFAULT
from neartext.engine.clustering import ClusterResult, cluster
from neartext.engine.compute import RayCompute
from neartext.engine.index_tuning import Queries, check_tuning, tune_index
from neartext.engine.info import collection_info
from neartext.engine.modeleval import choose_threshold
from neartext.engine.parts import Version
from neartext.engine.searching import check_queries, make_filter, search_as, selection
from neartext.engine.state import EncoderState, VersionState
from neartext.store import Document, Store
from neartext.store.factory import building, connected, open_store, store_exists


class Collection(VersionState, EncoderState):
    """A searchable collection of texts, in a directory or on Milvus (see
    :mod:`neartext.data.address`).

    Use :meth:`create` for a new collection and :meth:`open` for an existing one. The encoder is
    loaded on first use, so opening and :meth:`info` are fast.
    """

    def __init__(self, path: str | Path | Address, store: Store,
                 encoder: Encoder | None = None) -> None:
        self.address = parse_address(path)
        # where local state lives: the directory itself, or one kept for a Milvus collection
        self.path = self.address.state_dir()
        self.store = store
        self._read_state()
        self._encoder = encoder
        self._query_encoder: Encoder | None = None  # the ONNX export of the model, when cached
        # where new texts are embedded: None in this process, else a neartext.engine.compute.RayCompute
        self.compute: RayCompute | None = None
        # set by a process that serves it to several threads: a new version this process swaps
        # in (a both-side adapter's) is then opened anew by that process, not in place
        self.shared = False

    # -- life cycle ------------------------------------------------------------------------------

    @classmethod
    def create(cls, path: str | Path | Address, *,
               model: str | EncoderSettings | Encoder = "default", chunk: int | None = None,
               overlap: int = 0, index: str = "auto", cleaning: CleaningOptions | None = None,
               source: dict[str, Any] | None = None, milvus: dict[str, Any] | None = None,
               precision: str = "float32") -> Collection:
        """Create an empty collection at ``path`` (a directory or a Milvus address, ``milvus``:
        its ``index_params`` and ``search_params``); :class:`CollectionExists` if one is there.

        >>> col = Collection.create("/tmp/nt-doc-col", model="default")  # doctest: +SKIP
        >>> col = Collection.create("milvus-lite:/tmp/nt.db", index="flat")  # doctest: +SKIP
        """
        with building(parse_address(path)) as tmp:
            col = cls(tmp, *new_store(tmp, model, chunk, overlap, index, cleaning, source,
                                      milvus, precision))
            col.close()
        return cls.open(path, model=col.encoder)

    @classmethod
    def from_file(cls, path: str | Path | Address, corpus: str | Path,
                  text: Sequence[str] | None = None, id_column: str | None = None, *,
                  encoding: str = "utf-8", progress: bool = False,
                  model: str | EncoderSettings | Encoder = "default", chunk: int | None = None,
                  overlap: int = 0, index: str = "auto", cleaning: CleaningOptions | None = None,
                  skip_near_duplicates: float | None = None,
                  milvus: dict[str, Any] | None = None, vectors: str | None = None,
                  vectors_from: str | None = None, precision: str = "float32",
                  compute: RayCompute | None = None, tune_queries: Queries | None = None
                  ) -> tuple[Collection, IndexReport]:
        """Build a new collection at ``path`` from a corpus file (``compute``: embed on Ray's
        encoder actors, inside a :func:`neartext.engine.compute.ray_session`), all or nothing: a
        directory in ``<path>.partial`` renamed into place when complete, a Milvus collection
        marked unfinished until then; an error or a crash never leaves half a collection.
        ``tune_queries``: the search setting is chosen on them (:meth:`tune_index`).

        >>> col, report = Collection.from_file("feedback/", "demo/feedback.csv",
        ...                                    text=["text"], id_column="id")  # doctest: +SKIP
        """
        check_tuning(parse_address(path), tune_queries)
        # read and cleaned before the model loads, so bad input fails fast
        parts, vectors_from, hint = corpus_first(
            corpus, text, id_column, encoding=encoding, vectors=vectors,
            vectors_from=vectors_from, cleaning=cleaning, compute=compute, chunk=chunk,
            overlap=overlap, skip_near_duplicates=skip_near_duplicates)
        with building(parse_address(path)) as tmp:
            source = {"text": list(text) if text else None, "id": id_column}
            col = cls(tmp, *new_store(tmp, model, chunk, overlap, index, cleaning, source,
                                      milvus, precision))
            try:
                # a build resumed in a directory an earlier run left ends holding nothing else
                report = ingest.upsert_parts(col, parts, progress=progress,
                                             skip_near_duplicates=skip_near_duplicates,
                                             vectors_from=vectors_from, source=str(corpus),
                                             tune_queries=tune_queries)
                report.warn(hint)
            finally:
                col.close()
        return cls.open(path, model=col.encoder), report

    @classmethod
    def index_corpus(cls, path: str | Path | Address, corpus: str | Path,
                     text: Sequence[str] | None = None, id_column: str | None = None, *,
                     model: str | None = None, batch_size: int | None = None, prune: bool = False,
                     encoder_options: dict[str, Any] | None = None, **options: Any
                     ) -> tuple[IndexReport, bool]:
        """Build the collection at ``path`` from ``corpus``, or bring the one there in line with
        it (new and changed texts embedded; documents it lacks kept and counted, or removed with
        ``prune``). Returns the report and whether the collection was created. ``options``:
        :meth:`from_file`'s; those that shape a collection (and ``encoder_options``) given for
        an existing one are an :class:`InputError`: re-indexing keeps its settings. ``model``:
        the model to build with, or the one an existing collection must have been built with.

        >>> report, created = Collection.index_corpus("feedback/", "demo/feedback.csv",
        ...                                           id_column="id")  # doctest: +SKIP
        """
        a = parse_address(path)
        with connected(a):  # asked whether it exists, then opened or built
            if store_exists(a):
                options = sync_options(path, encoder_options, options)
                with cls.open(a, model=model) as col:
                    col.compute = options.pop("compute", None)
                    report = col.index_file(corpus, text, id_column, sync=prune, **options)
                    report.count_kept_absent(0 if prune else col.store.count())
                return report, False
            kw: dict[str, Any] = dict(encoder_options or {})
            if batch_size is not None:
                kw["batch_size"] = batch_size
            col, report = cls.from_file(a, corpus, text, id_column,
                                        model=EncoderSettings(model=model or "default", **kw),
                                        **{k: v for k, v in options.items() if v is not None})
            col.close()
            return report, True

    @classmethod
    def open(cls, path: str | Path | Address, *, model: str | Encoder | None = None) -> Collection:
        """Open an existing collection; with ``model``, check it is the one the collection uses.
        :class:`CollectionNotFound` if nothing is at ``path``, :class:`ModelMismatch` if
        ``model`` gives other vectors than the collection's model."""
        a = parse_address(path)
        col = cls(a, open_store(a))
        if model is not None:
            col.use_encoder(model)
        return col

    def close(self) -> None:
        self.store.close()

    def reopen(self) -> None:
        """Open the collection at this address again (after this process swapped in a new
        version of it: a both-side adapter's promotion, a rollback); the encoder stays if the
        new version has the same model, else the new one loads on first use."""
        self.store.close()
        self.store = open_store(self.address)
        self._read_state()
        if self._encoder is not None and \
                self._encoder.fingerprint != self.manifest.model.fingerprint:
            self._encoder = None
        self._query_encoder = None

    def __enter__(self) -> Collection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing ---------------------------------------------------------------------------------

    def index_file(self, path: str | Path, text: Sequence[str] | None = None,
                   id_column: str | None = None, *, encoding: str = "utf-8", sync: bool = False,
                   progress: bool = False, skip_near_duplicates: float | None = None,
                   vectors: str | None = None, vectors_from: str | None = None,
                   tune_queries: Queries | None = None) -> IndexReport:
        """Read, clean and upsert a corpus file. ``sync=True`` also removes documents not in it.
        ``vectors`` names a column of the rows' own vectors, made by ``vectors_from`` (the
        collection's model: its name, fingerprint or ``same``; see :mod:`neartext.data.vectors`).
        Column choices default to those recorded when the collection was first indexed.
        ``tune_queries``: checked first; the search setting is then chosen on them."""
        src = self.manifest.source
        report = ingest.upsert_file(self, path, text or src.get("text"),
                                    id_column or src.get("id"), encoding=encoding, sync=sync,
                                    progress=progress, skip_near_duplicates=skip_near_duplicates,
                                    vectors=vectors, vectors_from=vectors_from,
                                    tune_queries=tune_queries)
        if not src.get("text") and text:  # the columns of a collection created empty
            self.update_manifest(lambda m: m.source.update(text=list(text), id=id_column))
        return report

    def upsert(self, records: Sequence[Record], *, sync: bool = False, progress: bool = False,
               skip_near_duplicates: float | None = None, vectors_from: str | None = None
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
                             skip_near_duplicates=skip_near_duplicates, vectors_from=vectors_from,
                             compute=self.compute)

    def delete(self, ids: Sequence[str]) -> int:
        """Delete documents by id; returns how many existed (an index cache not saved after the
        commit is a warning: the documents are deleted)."""
        return self.store.write([], [], list(ids)).removed

    def matching(self, where: Sequence[str] | str | Filter | None = None,
                 contains: Sequence[str] | None = None) -> list[str]:
        """The ids of the documents a filter selects (what :meth:`delete_where` would delete).

        >>> col.matching("topic=billing|topic=refund")                         # doctest: +SKIP
        ['fb-0066', 'fb-0067', ...]
        """
        return self.store.ids_where(selection(self.store, where, contains))

    def delete_where(self, where: Sequence[str] | str | Filter | None = None,
                     contains: Sequence[str] | None = None) -> int:
        """Delete the documents a filter selects, chosen and deleted in one write (on Milvus,
        which has no transactions: chosen just before); returns how many.

        >>> col.delete_where("!platform=ios", contains=["crash"])             # doctest: +SKIP
        12
        """
        return self.store.write([], [], selection(self.store, where, contains)).removed

    # -- reading ---------------------------------------------------------------------------------

    def search(self, query: str, k: int = 10, *, threshold: float | None = None,
               where: Sequence[str] | str | Filter | None = None,
               contains: Sequence[str] | None = None, mode: Mode | None = None,
               fusion: Fusion | None = None, alpha: float | None = None,
               options: SearchOptions | None = None) -> list[SearchResult]:
        """The ``k`` documents closest in meaning to ``query``, best first.

        ``threshold`` drops results scoring below it (cosine; semantic mode); ``where`` holds
        metadata conditions such as ``"year>=2022"``; ``contains`` words every result contains.
        ``mode``: ``semantic`` (vectors), ``keyword`` (BM25 over stemmed words) or ``hybrid``
        (both, fused by ``fusion``, ``blend`` with weight ``alpha`` or ``rrf``; see
        :mod:`neartext.engine.hybrid`); a result's ``score`` is the cosine, BM25 or fused score.
        ``options``: ``k`` to ``alpha`` as one :class:`SearchOptions`. Unnamed settings come
        from the version's tuned ranking.

        >>> [r.id for r in col.search("refund please", 3, mode="hybrid")]  # doctest: +SKIP
        """
        return self.search_many([query], k, threshold=threshold, where=where, contains=contains,
                                mode=mode, fusion=fusion, alpha=alpha, options=options)[0]

    def search_many(self, queries: Sequence[str], k: int = 10, *,
                    threshold: float | None = None,
                    where: Sequence[str] | str | Filter | None = None,
                    contains: Sequence[str] | None = None, mode: Mode | None = None,
                    fusion: Fusion | None = None, alpha: float | None = None,
                    options: SearchOptions | None = None, version: Version | None = None
                    ) -> list[list[SearchResult]]:
        """:meth:`search` for several queries at once (encoded in one batch). ``version``:
        rank as that version (a manifest and adapter, e.g. from
        :func:`neartext.ops.versions.version_view`) instead of the current one."""
        if version is None:
            self.refresh()  # the version current now, even if another process promoted it
            version = self.current()
        opts = options or self.search_options(k, threshold, mode, fusion, alpha,
                                              manifest=version[0])
        check_queries(queries)
        flt = self.make_filter(where, contains)
        vecs = None if opts.mode in TEXT_MODES else self.query_encoder.encode(list(queries),
                                                                             kind="query")
        return self.search_vectors(vecs, where=flt, texts=list(queries), options=opts,
                                   version=version)

    def search_options(self, k: int = 10, threshold: float | None = None,
                       mode: Mode | None = None, fusion: Fusion | None = None,
                       alpha: float | None = None, *, manifest: Manifest | None = None
                       ) -> SearchOptions:
        """:class:`SearchOptions` from what the caller named; the rest from the current
        version's tuned ranking (``neartext tune``; ``manifest``: another version's), else
        semantic (:meth:`neartext.data.ranking.Ranking.options`).

        >>> col.search_options(5).mode                          # doctest: +SKIP
        'hybrid'
        """
        return (manifest or self.manifest).ranking().options(k, threshold, mode, fusion, alpha, self.path)

    def make_filter(self, where: Sequence[str] | str | Filter | None = None,
                    contains: Sequence[str] | None = None) -> Filter:
        """Parse ``where``/``contains`` into a :class:`Filter` checked against the stored fields."""
        return make_filter(self.store, where, contains)

    def search_vectors(
        self, vectors: np.ndarray | None, k: int = 10, *, threshold: float | None = None,
        where: Sequence[str] | str | Filter | None = None, contains: Sequence[str] | None = None,
        texts: Sequence[str] | None = None, mode: Mode | None = None,
        fusion: Fusion | None = None, alpha: float | None = None,
        options: SearchOptions | None = None, version: Version | None = None,
    ) -> list[list[SearchResult]]:
        """:meth:`search_many` for query vectors already encoded with the collection's model
        (the service encodes the queries of concurrent requests together, then calls this; a
        user brings vectors of their own). ``where`` and ``contains`` as in :meth:`search`.
        Keyword and hybrid modes also need the query ``texts``; keyword mode needs no vectors.

        >>> col.search_vectors(np.random.rand(1, 384), k=3, where="topic=billing")  # doctest: +SKIP
        """
        version = version or self.current()  # one taken by :meth:`current`
        opts = options or self.search_options(k, threshold, mode, fusion, alpha,
                                              manifest=version[0])
        flt = where if isinstance(where, Filter) and not contains else \
            self.make_filter(where, contains)
        return search_as(self.store, version, vectors, texts, flt or None, opts)

    # -- corpus-level operations (neartext.engine.analysis) ------------------------------------

    def mine(self, threshold: float | None = None, top_k: int = 100, **kw: Any) -> MiningResult:
        """All pairs of documents scoring ``>= threshold``; see :func:`neartext.engine.analysis.mine`."""
        return mine(self, threshold, top_k, **kw)

    def paraphrases(self, text: str, threshold: float | None = None, top_k: int = 100
                    ) -> tuple[list[SearchResult], str | None]:
        """Paraphrases of ``text``, and a notice when none pass the threshold."""
        return paraphrases(self, text, threshold, top_k)

    def dedup(self, threshold: float | None = None, **kw: Any) -> DedupResult:
        """Groups of near-duplicate documents; see :func:`neartext.engine.analysis.dedup`."""
        return dedup(self, threshold, **kw)

    def cluster(self, method: str = CLUSTER_DEFAULT, **kw: Any) -> ClusterResult:
        """Clusters of the documents with labels; see :func:`neartext.engine.clustering.cluster`."""
        return cluster(self, method, **kw)

    def calibrate(self, pairs: PairData, *, min_precision: float | None = None) -> Calibration:
        """Choose a similarity threshold from labeled pairs (the best-F1 one, or with
        ``min_precision`` the one with most recall at that precision) and store it in the
        manifest: ``mine``, ``paraphrases`` and ``dedup`` then use it by default."""
        cal = choose_threshold(self.encoder, pairs, min_precision)
        self.update_manifest(lambda m: m.calibrate(cal))
        return cal

    def repair(self) -> dict[str, Any]:
        """Rebuild the vector index from the stored passages and report what was wrong."""
        return {"collection": str(self.address), **self.store.repair()}

    def tune_index(self, queries: Queries) -> dict[str, Any]:
        """Choose the vector index's search setting on queries like the users' (texts or query
        vectors), not on rows held out of it; kept for rebuilds (:mod:`neartext.engine.index_tuning`).

        >>> col.tune_index(user_queries)["tuned_on"]  # doctest: +SKIP
        """
        return tune_index(self, queries)

    def get(self, ids: Sequence[str]) -> list[Document]:
        """Stored documents by id."""
        return self.store.get(ids)

    def __len__(self) -> int:
        return self.store.count()

    def info(self) -> CollectionInfo:
        """Size, model and settings of the collection (``scripts``: shares of Cyrillic, Latin)."""
        return collection_info(self)
