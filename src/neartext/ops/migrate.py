"""Copy a collection from one store to another without re-embedding (``neartext migrate``).

Documents, metadata, passages and their vectors are read from the source in batches and
written to the destination, which is published only when every document is there (a directory
is built in ``DST.partial`` and renamed; a Milvus collection is marked unfinished until then).
The manifest travels along, so the destination opens with the same model and threshold;
feedback ratings are copied too.

Example:
    >>> from neartext.ops.migrate import migrate
    >>> r = migrate("feedback/", "milvus://db-host:19530/feedback")  # doctest: +SKIP
    >>> r.documents, r.texts_embedded                                 # doctest: +SKIP
    (247, 0)
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from neartext.algo.ranker import load_ranker
from neartext.collection import Collection
from neartext.data.address import Address, parse_address
from neartext.data.manifest import Manifest
from neartext.data.ranking import CHARS_CHANNEL_FEATURES
from neartext.data.results import AsDict, Warns
from neartext.engine.feedback import FEEDBACK_DB
from neartext.engine.records import VERSION_FILES
from neartext.errors import CorruptCollection, InputError
from neartext.store.base import copy_documents
from neartext.store.codec import codec
from neartext.store.factory import building, create_store
from neartext.store.local import copy_sqlite
from neartext.util.progress import progress_bar


@dataclass
class MigrateReport(Warns, AsDict):
    source: str
    destination: str
    documents: int
    passages: int
    feedback_copied: bool
    seconds: float
    texts_embedded: int = 0  # always: vectors are copied, not recomputed
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        fb = "; feedback ratings copied" if self.feedback_copied else ""
        return (f"{self.documents} documents ({self.passages} passages) copied from "
                f"{self.source} to {self.destination} in {self.seconds:.1f} s, "
                f"nothing re-embedded{fb}")


def migrate(
    source: str | Path | Address,
    destination: str | Path | Address,
    *,
    index: str | None = None,
    milvus: dict[str, Any] | None = None,
    progress: bool = False,
    precision: str | None = None,
) -> MigrateReport:
    """Copy the collection at ``source`` to ``destination`` (which must not exist).

    ``index`` replaces the vector index kind (``auto``, ``flat``, ``hnsw``, ``ivf``); ``milvus``
    may give ``index_params``/``search_params`` for a Milvus destination; ``precision``
    (``float32``, ``float16``, ``int8``) how a local destination stores the vectors (default:
    as the source; a Milvus destination stores float32).
    """

    t0 = time.perf_counter()
    src, dst = parse_address(source), parse_address(destination)
    if src.same_as(dst):
        raise InputError(f"{dst}: the destination is the source")
    with Collection.open(src) as col:
        manifest = col.manifest.portable()
        if index is not None:
            manifest.index = index
        if precision is not None:
            codec(precision, 1)
            if dst.kind != "local" and precision != "float32":
                raise InputError(f"{dst}: --precision {precision} applies to local "
                                 "collections; Milvus stores float32 vectors")
            manifest.precision = precision
        elif dst.kind != "local":
            manifest.precision = "float32"
        manifest.migrated = {"from": str(src),
                             "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        total, passages = col.store.count(), col.store.passage_count()
        with building(dst) as tmp:
            store = create_store(tmp, manifest.to_dict(), milvus)
            try:
                # (said once the copy is there: a warning is about what happened)
                chars_note = None if store.has_chars_channel else _chars_unavailable(
                    col.path, manifest)
                with progress_bar(total, "copying", "doc", enabled=progress) as bar:
                    copy_documents(col.store, store, bar.update)
                got = (store.count(), store.passage_count())
                if got != (total, passages):
                    raise CorruptCollection(
                        f"{dst}: copied {got[0]} documents / {got[1]} passages, expected "
                        f"{total} / {passages} (was the source written to meanwhile?)")
            finally:
                store.close()
            for name in VERSION_FILES:
                _copy_version_files(col.path / name, tmp.state_dir() / name)
        copied = _copy_feedback(col.path / FEEDBACK_DB, dst.state_dir() / FEEDBACK_DB)
    report = MigrateReport(str(src), str(dst), total, passages, copied,
                           time.perf_counter() - t0)
    report.warn(chars_note)
    return report


def _chars_unavailable(state: Path, manifest: Manifest) -> str | None:
    """A line naming the versions whose ranker weighs the chars channel, which the
    destination lacks (Milvus: they rank there with those features at 0), or None. A ranker
    that never splits on those features is not named."""
    versions = [(manifest.version, manifest.search)]
    versions += [(h.version, h.search) for h in manifest.history]
    weighing = []
    for version, ranking in versions:
        if ranking is None or ranking.ranker is None or not ranking.features:
            continue
        try:
            splits = load_ranker(str(state / ranking.ranker)).split_counts()
        except CorruptCollection:  # (copied as it is; searching with it says what is wrong)
            continue
        if any(splits[i] for i, name in enumerate(ranking.features)
               if name in CHARS_CHANNEL_FEATURES and i < len(splits)):
            weighing.append(version)
    if not weighing:
        return None
    named = [f"{v}{' (current)' if v == manifest.version else ''}" for v in sorted(weighing)]
    which, ranks = ((f"the ranker of version {named[0]} weighs", "it ranks") if len(named) == 1
                    else (f"the rankers of versions {', '.join(named[:-1])} and {named[-1]} "
                          "weigh", "they rank"))
    return (f"{which} the chars channel (character n-grams), which the destination lacks: "
            f"there {ranks} with those features at 0, a little worse than tune measured; "
            "'neartext tune' the copy to learn one without them")


def _copy_version_files(src: Path, dst: Path) -> None:
    """The versions' adapter or ranker files (the manifest names them), before the copy is
    published."""
    if src.is_dir():
        shutil.copytree(src, dst, dirs_exist_ok=True)


def _copy_feedback(src: Path, dst: Path) -> bool:
    """Copy the ratings database if there is one and the destination has none."""
    if not src.is_file() or dst.exists():
        return False
    dst.parent.mkdir(parents=True, exist_ok=True)
    copy_sqlite(src, dst)
    return True
