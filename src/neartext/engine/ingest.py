"""The upsert pipeline: what changed, which texts need vectors, embedding with checkpoints,
near-duplicate skipping, and one atomic store write.

``Collection.upsert`` delegates here. Vectors are keyed by the content hash of each passage's text
(with the collection's model fixed by the manifest), so unchanged texts, texts that moved to
another id and vectors staged by an interrupted run are never encoded again.

Example:
    >>> text_hash("hello") == text_hash("hello") != text_hash("hello!")
    True
"""

from __future__ import annotations

import time
from collections.abc import Generator, Iterable, Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from neartext.data.cleaning import CleaningOptions, CleaningReport, chunk_spans, clean
from neartext.data.corpus import (
    BATCH_ROWS,
    METADATA_NUMBERS,
    Record,
    UniqueIds,
    corpus_files,
    id_column_hint,
    iter_corpus,
    read_corpus,
    vector_like,
)
from neartext.data.hashing import text_hash
from neartext.data.ranking import check_threshold
from neartext.data.results import IndexReport
from neartext.data.vectors import check_vectors_model, checked_vectors, file_model_of
from neartext.encoders import vectors_model
from neartext.engine.analysis import near_duplicates
from neartext.engine.index_tuning import Queries, as_searched, tune_index
from neartext.engine.parts import Parts
from neartext.errors import InputError, StorageError
from neartext.store import Document, Passage
from neartext.util.memory import release_freed_memory
from neartext.util.progress import progress_bar
from neartext.util.validate import check_field_names, check_id, check_text, check_value

if TYPE_CHECKING:
    from neartext.engine.compute import RayCompute

EMBED_CHUNK = 256  # texts encoded (and checkpointed) at a time: the bar moves every few seconds




PART_BYTES = 256 << 20  # corpus bytes a build on Ray reads, cleans and writes at a time


@dataclass
class Part:
    """A part of a corpus, read and cleaned (:func:`read_parts`)."""

    records: list[Record]  # as read
    kept: list[Record]  # as cleaned
    compute: RayCompute | None  # with the part's rows on the cluster, on Ray
    cleaning: CleaningReport  # of the corpus so far
    only: bool  # the whole corpus is this one part


def corpus_parts(directory: Path, part_bytes: int) -> list[list[tuple[int, Path]]]:
    """A directory's corpus files, with their positions, in runs of about ``part_bytes``
    bytes (a file is never split).

    >>> corpus_parts(Path("demo"), 1 << 30)[0][0][0]  # doctest: +SKIP
    0
    """
    parts: list[list[tuple[int, Path]]] = [[]]
    size = 0
    for n, f in enumerate(corpus_files(directory)):
        bytes_ = f.stat().st_size
        if parts[-1] and size + bytes_ > part_bytes:
            parts.append([])
            size = 0
        parts[-1].append((n, f))
        size += bytes_
    return parts


def read_parts(corpus: str | Path, text: Sequence[str] | None, id_column: str | None, *,
               encoding: str, vectors: str | None, cleaning: CleaningOptions,
               compute: RayCompute | None = None, in_parts: bool = False
               ) -> Generator[Part, None, None]:
    """A corpus read and cleaned. With ``compute`` (and no vectors in the rows) Ray's tasks
    read it and normalize its texts, and each part's compute keeps its rows on the cluster for
    the actors; else it is read here. With ``in_parts`` too, it is read in parts, each read and
    cleaned when the caller asks for it (about two parts are held at a time), duplicates and
    ids checked across the parts: on Ray a directory in parts of about :data:`PART_BYTES` of
    files, here parts of :data:`~neartext.data.corpus.BATCH_ROWS` rows (a Parquet file read
    that many rows at a time). A corpus that keeps nothing is refused, after its last part."""
    report, seen, ids = CleaningReport(), set[bytes](), UniqueIds(Path(corpus))
    kept_so_far = 0
    for n, (records, part_compute, options, last) in enumerate(
            _raw_parts(corpus, text, id_column, encoding=encoding, vectors=vectors,
                       cleaning=cleaning, compute=compute, in_parts=in_parts)):
        many = n > 0 or not last
        if many and id_column and part_compute is not None:  # (Ray's parts; else the reader)
            ids.add((r.id, r.where) for r in records)
        kept, report = clean(records, options, report=report, seen=seen)
        if many and not id_column:  # ids made from the texts: as one upsert would
            ids.add((r.id, r.where) for r in kept)
        kept_so_far += len(kept)
        if last and not kept_so_far:
            why = ", ".join(f"{k} {r}" for r, k in report.dropped.items()) or "no rows"
            raise InputError(f"{corpus}: nothing to index ({report.read} rows read; "
                             f"dropped: {why})")
        yield Part(records, kept, part_compute, report, only=not many)


def _raw_parts(corpus: str | Path, text: Sequence[str] | None, id_column: str | None, *,
               encoding: str, vectors: str | None, cleaning: CleaningOptions,
               compute: RayCompute | None, in_parts: bool
               ) -> Iterator[tuple[list[Record], RayCompute | None, CleaningOptions, bool]]:
    """The corpus's parts as read (:func:`read_parts`): ``(records, compute, the cleaning
    still to do, whether it is the last part)``."""
    path = Path(corpus)
    if compute is not None and vectors is None:  # read by Ray's tasks
        groups: list[list[tuple[int, Path]] | None] = [None]
        if in_parts and path.is_dir():
            groups = list(corpus_parts(path, PART_BYTES))
        for n, group in enumerate(groups):
            records, part_compute = compute.read(corpus, text, id_column, encoding=encoding,
                                                 cleaning=cleaning, part=group)
            # (the reading tasks normalized the texts)
            yield records, part_compute, cleaning.after_normalizing(), n == len(groups) - 1
        return
    if not in_parts:
        yield read_corpus(corpus, text, id_column, encoding=encoding, vectors=vectors), \
            compute, cleaning, True
        return
    batches = iter_corpus(corpus, text, id_column, encoding=encoding, vectors=vectors,
                          batch_rows=BATCH_ROWS)  # (ids checked across its batches)
    batch = next(batches, None)
    while batch is not None:
        following = next(batches, None)  # one ahead: is this the last part?
        yield batch, compute, cleaning, following is None
        batch = following


def read_cleaned(corpus: str | Path, text: Sequence[str] | None, id_column: str | None, *,
                 encoding: str, vectors: str | None, cleaning: CleaningOptions,
                 compute: RayCompute | None = None) -> Part:
    """The whole corpus as one :class:`Part` (:func:`read_parts`)."""
    return next(read_parts(corpus, text, id_column, encoding=encoding, vectors=vectors,
                           cleaning=cleaning, compute=compute))


def upsert_parts(col: Parts, parts: Iterable[Part], *, progress: bool = False,
                 skip_near_duplicates: float | None = None, vectors_from: str | None = None,
                 source: str = "records", tune_queries: Queries | None = None) -> IndexReport:
    """A new collection built from the parts of its corpus (a build: nothing is visible
    before it is published), each part upserted in turn, then what an interrupted earlier
    build left that the corpus does not hold removed. One part: one upsert that does both.
    ``tune_queries``: the vector index's search setting is then chosen on them
    (:mod:`neartext.engine.index_tuning`)."""
    t0 = time.perf_counter()
    total: IndexReport | None = None
    last: Part | None = None
    written: set[str] = set()
    with col.store.index_deferred():  # one vector index of all the parts, at the end
        for part in parts:
            report = upsert(col, part.kept, sync=part.only, progress=progress,
                            skip_near_duplicates=skip_near_duplicates, vectors_from=vectors_from,
                            source=source, compute=part.compute)
            if not part.only:
                written.update(r.id for r in part.kept)
            total = report if total is None else total.merge(report)
            last = part
            # this part is written: let it go (its rows on the cluster too)
            part.records, part.kept, part.compute = [], [], None
        # what reading and writing the parts freed goes back before the index is built (100,000
        # given 384-number vectors: the process peaked at 776 MB, against 995 MB while pyarrow's
        # pool and the heap still held about 250 MB of it)
        release_freed_memory()
        assert total is not None and last is not None
        if not last.only and col.store.count() > total.added + total.updated + total.unchanged:
            left = [i for i in col.store.document_hashes() if i not in written]
            total.removed += col.store.write([], [], left).removed
    if tune_queries is not None:
        total.index = tune_index(col, tune_queries)
    total.add_cleaning(last.cleaning)
    total.seconds = time.perf_counter() - t0  # the whole build, its vector index included
    return total


def upsert_file(col: Parts, path: str | Path, text: Sequence[str] | None,
                id_column: str | None, *, encoding: str = "utf-8", sync: bool = False,
                progress: bool = False, skip_near_duplicates: float | None = None,
                vectors: str | None = None, vectors_from: str | None = None,
                tune_queries: Queries | None = None) -> IndexReport:
    """A corpus file read, cleaned and upserted as one atomic write (see
    :meth:`neartext.collection.Collection.index_file`); on Ray (``col.compute``) its rows are
    read by Ray's tasks. ``tune_queries`` (checked and encoded before anything is written):
    the vector index's search setting is then chosen on them."""
    check_threshold(skip_near_duplicates)
    tuning = None if tune_queries is None else as_searched(col, tune_queries)
    part = read_cleaned(path, text, id_column, encoding=encoding, vectors=vectors,
                        cleaning=col.manifest.cleaning_options(), compute=col.compute)
    hint = id_column_hint(path, part.records, id_column)
    report = upsert(col, part.kept, sync=sync, progress=progress,
                    skip_near_duplicates=skip_near_duplicates,
                    vectors_from=file_model_of(path, vectors, vectors_model(vectors_from)),
                    source=str(path), compute=part.compute)  # (its rows on Ray)
    report.add_cleaning(part.cleaning)
    report.warn(hint)
    if tuning is not None:
        report.index = col.store.tune_index(tuning)
    return report


def check_records(records: Sequence[Record]) -> None:
    """Ids unique within one upsert, and every id, text and metadata value valid text."""
    for r in records:
        check_id(r.id)
        if not isinstance(r.text, str):
            raise InputError(f"document {r.id!r}: text must be a string, got "
                             f"{type(r.text).__name__}")
        check_text(r.text, f"document {r.id!r}: text")
        check_field_names(r.metadata, f"document {r.id!r}")
        for k, v in r.metadata.items():
            if n := vector_like(v):
                raise InputError(f"document {r.id!r}: metadata field '{k}' holds a list of {n} "
                                 "numbers, which looks like a vector: give it as the record's "
                                 f"vector (a metadata field holds at most {METADATA_NUMBERS} "
                                 "numbers)")
        check_value(r.metadata, f"document {r.id!r}: metadata")
    ids = [r.id for r in records]
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        dup = [i for i in ids if i in seen or seen.add(i)]  # type: ignore[func-returns-value]
        raise InputError(f"duplicate ids in one upsert: {', '.join(map(repr, dup[:3]))}")


def upsert(col: Parts, records: Sequence[Record], *, sync: bool = False,
           progress: bool = False, skip_near_duplicates: float | None = None,
           vectors_from: str | None = None, source: str = "records",
           compute: RayCompute | None = None) -> IndexReport:
    """See :meth:`neartext.collection.Collection.upsert`; ``compute``: where the new texts are
    embedded (Ray's encoder actors), else here."""
    if skip_near_duplicates is not None:
        check_threshold(skip_near_duplicates, "--skip-near-duplicates")
        if col.manifest.chunking:
            raise InputError("--skip-near-duplicates works on collections without chunking")
    t0 = time.perf_counter()
    check_records(records)
    given = _given_vectors(col, records, vectors_from, source)
    ids = [r.id for r in records]
    report = IndexReport(rows_read=len(records))
    old = {d.id: d for d in col.store.get(ids)}
    stored = col.store.doc_vectors([i for i in given if i in old]) if given else {}
    docs: list[Document] = []
    changed: list[Document] = []
    for r in records:
        h = text_hash(r.text)
        prev = old.get(r.id)
        same_vector = r.id not in given or (
            r.id in stored and np.allclose(stored[r.id], given[r.id], atol=1e-6))
        if prev is not None and prev.hash == h and prev.metadata == r.metadata and same_vector:
            report.unchanged += 1
            continue
        doc = Document(r.id, r.text, dict(r.metadata), h)
        docs.append(doc)
        if prev is None or prev.hash != h or not same_vector:
            changed.append(doc)
    with _saying_what_is_kept(report, col.store.keeps_staged):
        passages = _passages(col, changed, report, progress, given, compute)
        if skip_near_duplicates is not None and passages:
            docs, passages = _drop_near_duplicates(col, docs, passages, set(old),
                                                   skip_near_duplicates, report)
        delete_ids: list[str] = []
        if sync:
            keep = set(ids)
            delete_ids = [i for i in col.store.document_hashes() if i not in keep]
        if docs or delete_ids:
            res = col.store.write(docs, passages, delete_ids)
            report.added, report.updated, report.removed = res.added, res.updated, res.removed
            report.warnings += res.warnings
    report.seconds = time.perf_counter() - t0
    return report


@contextmanager
def _saying_what_is_kept(report: IndexReport, staged: bool) -> Iterator[None]:
    """A full disk stops a write with "nothing was changed": the collection's documents are as
    they were, but where the store keeps ``staged`` vectors, those of the texts embedded before
    it (``report.texts_embedded`` so far) stay in it, and take their space, so that the same
    write made again (a command, a request) embeds only the rest. The error says so."""
    try:
        yield
    except StorageError as e:
        if e.kind != "full" or not staged or not report.texts_embedded:
            raise
        raise StorageError(
            f"{e} (the vectors of {report.texts_embedded:,} texts embedded before it are kept: "
            "run it again once space is freed, and only the rest are embedded)",
            kind="full") from None


def _drop_near_duplicates(col: Parts, docs: list[Document], passages: list[Passage],
                          stored: set[str], threshold: float, report: IndexReport
                          ) -> tuple[list[Document], list[Passage]]:

    new = [p for p in passages if p.doc_id not in stored]
    if not new:
        return docs, passages
    found = near_duplicates(col, [p.doc_id for p in new], np.stack([p.vector for p in new]),
                            threshold)
    report.near_duplicates = [{"id": i, "duplicate_of": d, "score": s}
                              for i, (d, s) in found.items()]
    report.skipped_near_duplicates = len(found)
    return ([d for d in docs if d.id not in found],
            [p for p in passages if p.doc_id not in found])


def _given_vectors(col: Parts, records: Sequence[Record], vectors_from: str | None,
                   source: str) -> dict[str, np.ndarray]:
    """The records' own vectors by id, checked (:mod:`neartext.data.vectors`); empty without."""

    matrix = checked_vectors(records, col.manifest.dim, source)
    if matrix is None:
        return {}
    if col.manifest.chunking:
        raise InputError(f"{source}: this collection is chunked: each chunk has its own vector, "
                         "so rows cannot bring one; index without vectors")
    model = col.manifest.model
    check_vectors_model(vectors_model(vectors_from), model.name, model.fingerprint)
    ids = [r.id for r in records]  # the encoder's vectors, mapped as the stored ones are
    return dict(zip(ids, col.to_stored_space(matrix)))


def _passages(col: Parts, docs: list[Document], report: IndexReport, progress: bool,
              given: dict[str, np.ndarray] | None = None,
              compute: RayCompute | None = None) -> list[Passage]:
    """Each document's passages (one, or its chunks) with vectors: the ones the rows brought,
    else reused by content hash from the store (stored or staged), the rest encoded."""
    size, overlap = col.manifest.chunk_size, col.manifest.chunk_overlap
    if given:
        report.vectors_given = sum(1 for d in docs if d.id in given)
        own = [Passage(d.id, 0, len(d.text), d.hash, given[d.id]) for d in docs if d.id in given]
        docs = [d for d in docs if d.id not in given]
    else:
        own = []
    spans: list[tuple[Document, int, int, str]] = []
    for d in docs:
        if size:
            for s, e in chunk_spans(d.text, size, overlap):
                spans.append((d, s, e, text_hash(d.text[s:e])))
        else:
            spans.append((d, 0, len(d.text), d.hash))
    vectors = col.store.vectors_by_hash([h for *_, h in spans])
    todo: dict[str, str] = {}
    for d, s, e, h in spans:
        if h not in vectors:
            todo.setdefault(h, d.text[s:e])
    report.vectors_reused = len(spans) - sum(1 for *_, h in spans if h not in vectors)
    if todo:
        vectors.update(_embed(col, todo, report, progress, compute))
    return own + [Passage(d.id, s, e, h, vectors[h]) for d, s, e, h in spans]


def _embed(col: Parts, todo: dict[str, str], report: IndexReport, progress: bool,
           compute: RayCompute | None) -> dict[str, np.ndarray]:
    enc = col.encoder
    # Longest first, as sentence-transformers does inside one call: batches pad little.
    order = sorted(todo, key=lambda h: -len(todo[h]))
    out: dict[str, np.ndarray] = {}
    report.truncated += enc.count_truncated([todo[h] for h in order])
    with progress_bar(len(order), "embedding", "text", enabled=progress) as bar, \
            closing(_embedded(col, order, todo, compute)) as batches:  # closed while Ray is still up
        for part, vecs in batches:
            col.store.stage_vectors(part, vecs)  # survives a crash: a rerun embeds the rest
            out.update(zip(part, vecs))
            report.texts_embedded += len(part)  # (staged: what a failed write keeps)
            bar.update(len(part))
    return out


def _embedded(col: Parts, order: list[str], todo: dict[str, str], compute: RayCompute | None
              ) -> Generator[tuple[list[str], np.ndarray], None, None]:
    """``(hashes, vectors)`` batches of ``todo``'s texts in ``order``: encoded here a chunk at a
    time, or by encoder actors on Ray (``compute``) as they finish."""
    enc = col.encoder
    version = col.current()  # mapped as the stored vectors are (a both-side adapter)
    if compute is None:
        for i in range(0, len(order), EMBED_CHUNK):
            part = order[i : i + EMBED_CHUNK]
            yield part, col.to_stored_space(enc.encode([todo[h] for h in part],
                                                       kind="document"), version)
        return
    # a whole document's text is a row of the corpus Ray's tasks read (kept on the cluster)
    with closing(compute.embed(todo, order, enc.settings, enc.fingerprint,
                                   rows=not col.manifest.chunking)) as batches:
        for part, vecs in batches:
            yield part, col.to_stored_space(vecs, version)


