"""Re-embed a collection with another model, or map its stored vectors to another space (a
both-side adapter, :func:`remap`): a new version, swapped in only when complete.

The new version is built beside the collection in ``<path>.reindex/`` from the stored texts
and metadata (already cleaned; the source file is not needed). Readers keep using the old
version until the swap; a killed reindex resumes from the vectors it had computed (same model,
same settings). A calibrated threshold belongs to the old model's similarity scale, so it is
dropped; the result says so.

Example:
    >>> from neartext.ops.reindex import reindex                       # doctest: +SKIP
    >>> report = reindex("feedback/", "models/v2")                # doctest: +SKIP
    >>> report.version                                             # doctest: +SKIP
    2
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from neartext.collection import Collection
from neartext.data.address import Address, parse_address
from neartext.data.corpus import Record
from neartext.data.manifest import Manifest, next_version
from neartext.encoders import EncoderSettings, canonical_name
from neartext.engine.building import new_store
from neartext.engine.feedback import FEEDBACK_DB
from neartext.engine.query_encoder import cache_dir as query_encoders
from neartext.engine.records import VERSION_FILES, replaced_record
from neartext.errors import CollectionBusy, InputError, StorageError, Unsupported
from neartext.store.base import Passage, Store
from neartext.store.factory import create_store, kind_of
from neartext.util.locking import exclusive
from neartext.util.progress import progress_bar

log = logging.getLogger(__name__)
READ_BATCH = 5000
MODELS = "models"  # fine-tuned models of the collection's versions (``improve --full``)
T = TypeVar("T")


@dataclass
class ReindexReport:
    """What a reindex did: documents re-embedded, old and new model, the new version number."""

    path: str
    documents: int
    embedded: int
    old_model: str
    new_model: str
    version: int
    seconds: float
    resumed: bool = False
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        how = " (resumed)" if self.resumed else ""
        return (f"{self.path}: version {self.version}: {self.documents} documents re-embedded with "
                f"{self.new_model} (was {self.old_model}){how} in {self.seconds:.1f} s")

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))


def reindex(
    path: str | Path | Address,
    model: str | EncoderSettings,
    *,
    progress: bool = False,
    keep_previous: bool = False,
    gate: Callable[[Collection], dict[str, Any]] | None = None,
) -> ReindexReport:
    """Re-embed every document of the collection at ``path`` with ``model``; swap when done.

    ``model`` is a name/path (prefixes, pooling and sequence length then come from the new
    model; normalization and batch size are kept) or full :class:`EncoderSettings`. With
    ``keep_previous`` the old version stays at ``<path>.previous`` (collections in a
    directory). On Milvus the new version is built beside the collection in the same Milvus
    and swapped in by its manifest (:meth:`neartext.store.milvus.MilvusKind.swap`).

    ``gate`` is called with the new version once its documents are embedded, before the last
    catch-up and the swap: it returns manifest fields to give the new version (its ranking,
    what it was measured with), or raises to leave the collection as it was (the new version's
    files are removed); the swap is then refused (:class:`CollectionBusy`) if another version
    became current meanwhile. The collection's fine-tuned models (``models/``) go along.
    """
    t0 = time.perf_counter()
    target = parse_address(path)
    kind = kind_of(target)
    if keep_previous and not kind.state_with_store:
        raise Unsupported(f"{target}: --keep-previous keeps the old directory of a collection "
                          "in a directory; on Milvus, 'neartext rollback' goes back")
    with kind.connected(target), Collection.open(target) as old:
        manifest = old.manifest
        old_settings = manifest.model.settings
        settings = model if isinstance(model, EncoderSettings) else EncoderSettings(
            model=model, normalize=old_settings.get("normalize", True),
            batch_size=old_settings.get("batch_size", 32))
        scratch = kind.beside(target, "reindex")
        new, resumed = _open_scratch(scratch, old, settings)
        try:
            if new.encoder.fingerprint == manifest.model.fingerprint:
                new.close()
                kind.remove(scratch)
                raise InputError(f"{target}: already embedded with this model and these settings; "
                                 "nothing to re-embed")
            generation = old.store.generation()
            with _naming(target, "what was embedded is kept: the next run resumes it"):
                ids, embedded = _copy(old, new, progress)
            fields: dict[str, Any] = {}
            if gate is not None:
                with _discarding(scratch):
                    try:
                        fields = gate(new)
                    except BaseException:
                        new.close()
                        raise
            store = old.store
            # Writes of other processes that landed while copying are caught up with every
            # writer held off, and the swap happens before they go on: they then find the
            # collection replaced and are refused (nothing is written to the old copy).
            with store.manifest_lock(), store.hold_writes():
                now = Manifest.from_dict(old.address, store.read_manifest())
                if gate is not None and now.version != manifest.version:
                    raise CollectionBusy(
                        f"{target}: version {now.version} became current while this run "
                        f"measured against version {manifest.version}; nothing changed: run "
                        "it again")
                manifest = now
                if store.generation() != generation:
                    ids, more = _copy(old, new, False)
                    embedded += more
                kept = set(ids)
                new.store.write([], [], [i for i in new.store.document_hashes()
                                         if i not in kept])
                version = next_version(manifest)
                new.manifest.version = version
                new.manifest.history = [*manifest.history, replaced_record(manifest)]
                for key, value in fields.items():
                    setattr(new.manifest, key, value)
                if "version" in fields:  # a version that comes back leaves the history
                    new.manifest.history = [h for h in new.manifest.history
                                            if h.version != fields["version"]]
                new.save_manifest()
                new_name = new.manifest.model.name
                new.close()
                _swap_in(target, store, scratch, keep_previous)
        finally:
            new.close()
    notes = []
    if manifest.threshold is not None:
        notes.append(f"the calibrated threshold {manifest.threshold:.4f} belonged to the old "
                     "model and was dropped; run 'neartext calibrate' again")
    if manifest.adapter:
        notes.append(f"the adapter of version {manifest.version} was trained on the old model's "
                     "vectors and is not used by the new version; run 'neartext tune' again")
    return ReindexReport(str(target), len(ids), embedded, manifest.model.name, new_name,
                         version, time.perf_counter() - t0, resumed, notes)


def remap(path: str | Path | Address, vectors: Callable[[np.ndarray], np.ndarray],
          change: Callable[[Manifest], T], *, progress: bool = False) -> T:
    """A new version of the collection at ``path`` whose stored vectors are ``vectors(old)``
    (rows of passage vectors; the encoder does not run) and whose manifest is the current one
    as ``change`` leaves it (it may raise: nothing changes). Built beside the collection and
    swapped in like a reindex: readers use the old version until then, writes that land
    meanwhile are caught up with writers held off (their new texts encoded and mapped by the
    new version's adapter), and a process that still has the old version open cannot write
    its manifest afterwards. Returns what ``change`` returns.

    One at a time per collection (threads and processes of this machine): another run meanwhile
    is refused (:class:`CollectionBusy`) before it touches anything; it used to take the first
    one's copy for a killed run's and remove it while it was being built.

    What a both-side adapter's promotion and rollback do (:mod:`neartext.ops.versions`)."""
    target = parse_address(path)
    kind = kind_of(target)
    with kind.connected(target), exclusive(target.state_dir(),
                                           f"mapping {target}'s vectors to a new version"):
        scratch = kind.beside(target, "remap")
        kind.remove(scratch)  # a killed run's: nothing to resume, the mapping is cheap
        with Collection.open(target) as old, _quiet_about(scratch):
            store = old.store
            generation = store.generation()
            with _discarding(scratch), _naming(target, "nothing changed"):
                new_store = create_store(scratch, old.manifest.portable().to_dict(),
                                         store.creation_options())
                try:
                    with progress_bar(store.count(), "mapping", "doc", enabled=progress) as bar:
                        for docs, parts in store.export(READ_BATCH):
                            if parts:
                                mapped = vectors(np.stack([p.vector for p in parts]))
                                parts = [Passage(p.doc_id, p.start, p.end, p.hash, v)
                                         for p, v in zip(parts, mapped)]
                            new_store.write(docs, parts, [])
                            bar.update(len(docs))
                    new_store.finish_build()
                finally:
                    new_store.close()
            with _discarding(scratch), store.manifest_lock(), store.hold_writes():
                draft = Manifest.from_dict(old.address, store.read_manifest())
                out = change(draft)  # it may write the new version's adapter: carried next
                _carry(target, scratch)
                new = Collection.open(scratch)
                try:
                    new.manifest = Manifest.from_dict(new.address, draft.to_dict())
                    new.save_manifest()
                    if store.generation() != generation:  # writes that landed meanwhile
                        new.use_encoder(old.encoder)
                        ids, _ = _copy(old, new, False)
                        kept = set(ids)
                        new.store.write([], [], [i for i in new.store.document_hashes()
                                                 if i not in kept])
                finally:
                    new.close()
                _swap_in(target, store, scratch, keep_previous=False)
    return out


@contextlib.contextmanager
def _naming(target: Address, outcome: str) -> Iterator[None]:
    """A storage error while the new version is built (a full disk) said of the collection,
    not of the copy beside it, with what became of the work."""
    try:
        yield
    except StorageError as e:
        reason = str(e).split(": ", 1)[-1].split(";")[0]
        raise StorageError(f"{target}: its new version could not be built beside it "
                           f"({reason}); {outcome}", e.kind) from None


@contextlib.contextmanager
def _discarding(scratch: Address) -> Iterator[None]:
    """Remove the new version built at ``scratch`` if the block fails (it will not be swapped
    in). If that fails too (a full disk: Milvus Lite needs space to drop a collection), the
    block's error is raised all the same, saying so when it is a storage error (else a
    warning does); the next run removes what is left."""
    try:
        yield
    except BaseException as e:
        try:
            kind_of(scratch).remove(scratch)
        except Exception as r:
            why = ("no space left to drop it" if "no space left" in str(r).lower() else
                   str(r).strip().splitlines()[0] if str(r) else type(r).__name__)
            note = f"the unfinished copy {scratch} could not be removed now ({why}): the " \
                "next run removes it"
            if isinstance(e, StorageError):
                raise StorageError(f"{e}; {note}", e.kind) from None
            log.warning("%s", note)
        raise


def _swap_in(target: Address, store: Store, scratch: Address, keep_previous: bool) -> None:
    """Make the version built at ``scratch`` current in the place of ``store``'s (its writes
    held). Where the collection's state (ratings, adapters, fine-tuned models) lives in its
    directory, that goes along: the folders versions name, and the ratings, with a rating
    given meanwhile held until the swap is done."""
    kind = kind_of(target)
    if not kind.state_with_store:  # the state stays where it is; the new version's copy goes
        kind.swap(store, scratch, keep_previous)
        shutil.rmtree(scratch.state_dir(), ignore_errors=True)
        return
    _carry(target, scratch)
    with _holding_feedback(target.state_dir(), scratch.state_dir()):
        kind.swap(store, scratch, keep_previous)


@contextlib.contextmanager
def _quiet_about(scratch: object) -> Iterator[None]:
    """Leave out the store's warnings about the copy being built (an index cache it could not
    save): the copy is either swapped in, its index rebuilt when opened, or removed."""

    class Quiet(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return not record.getMessage().startswith(str(scratch))

    quiet = Quiet()
    log = logging.getLogger("neartext")
    log.addFilter(quiet)
    try:
        yield
    finally:
        log.removeFilter(quiet)


def _open_scratch(scratch: Address, old: Collection, settings: EncoderSettings
                  ) -> tuple[Collection, bool]:
    """The half-built new version if one with the same model survives a killed run, else a new
    one (with the collection's backend settings: a Milvus index type and parameters)."""
    manifest = old.manifest
    kind = kind_of(scratch)
    if kind.exists(scratch):
        col = Collection.open(scratch)
        want = canonical_name(settings.model)
        try:
            same = col.manifest.model.name == want and col.encoder.fingerprint == \
                col.manifest.model.fingerprint
        except Exception:
            same = False
        if same and _same_settings(col.manifest.model.settings, settings):
            return col, True
        col.close()
    kind.remove(scratch)
    col = Collection(scratch, *new_store(
        scratch, settings, manifest.chunk_size, manifest.chunk_overlap,
        manifest.index, manifest.cleaning_options(), manifest.source,
        old.store.creation_options()))
    col.store.finish_build()
    return col, False


def _same_settings(stored: dict[str, Any], wanted: EncoderSettings) -> bool:
    given = {k: v for k, v in wanted.to_dict().items() if v is not None and k not in ("model", "extra")}
    return all(stored.get(k) == v for k, v in given.items())


def _copy(old: Collection, new: Collection, progress: bool) -> tuple[list[str], int]:
    """Every document of ``old`` upserted into ``new`` (texts already there cost nothing);
    returns the ids and the number of texts embedded."""
    ids = list(old.store.document_hashes())
    embedded = 0
    for start in range(0, len(ids), READ_BATCH):
        docs = old.store.get(ids[start:start + READ_BATCH])
        rep = new.upsert([Record(d.id, d.text, d.metadata) for d in docs], progress=progress)
        embedded += rep.texts_embedded
    return ids, embedded


@contextlib.contextmanager
def _holding_feedback(target: Path, scratch: Path) -> Iterator[None]:
    """Ratings belong to the documents, not the model: copy them into the new version and
    hold the old file's write lock until the block (the swap) is done, so that a rating given
    meanwhile waits and then goes to the new file (``FeedbackStore`` follows the path)."""


    src = target / FEEDBACK_DB
    if not src.is_file():
        yield
        return
    (scratch / FEEDBACK_DB).unlink(missing_ok=True)
    a = sqlite3.connect(src, isolation_level=None, timeout=30)
    try:
        b = sqlite3.connect(scratch / FEEDBACK_DB)
        try:
            a.backup(b)  # a consistent copy, while ratings still come in
            a.execute("BEGIN IMMEDIATE")  # from here a rating waits until the swap is done
            last = b.execute("SELECT COALESCE(MAX(id), 0) FROM feedback").fetchone()[0]
            b.executemany("INSERT INTO feedback (id, query, doc_id, relevant, created) "
                          "VALUES (?,?,?,?,?)", a.execute(
                              "SELECT id, query, doc_id, relevant, created FROM feedback "
                              "WHERE id > ?", (last,)).fetchall())
            b.commit()
        finally:
            b.close()
        yield
    finally:
        if a.in_transaction:
            a.execute("ROLLBACK")
        a.close()


def _carry(target: Address, scratch: Address) -> None:
    """The collection's files that versions name into the new version's state directory: its
    fine-tuned models (a version's model path, inside the collection, stays valid) and its
    adapters (a version that comes back finds its own; the new version's own catch-up maps
    by its adapter), and its query encoder (the same model's is used, another's is not). Hard
    links: the files are never rewritten in place, and weights are not copied; files already
    there are kept."""
    def link(src: str, dst: str) -> None:
        if not os.path.exists(dst):
            os.link(src, dst)

    for src, dst, skip in [(target.state_dir() / name, scratch.state_dir() / name, None)
                           for name in (*VERSION_FILES, MODELS)] + [
            (query_encoders(target.state_dir()), query_encoders(scratch.state_dir()),
             shutil.ignore_patterns(".*"))]:  # not an export being made
        if src.is_dir():
            shutil.copytree(src, dst, copy_function=link, dirs_exist_ok=True, ignore=skip)
