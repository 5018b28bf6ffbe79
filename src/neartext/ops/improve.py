"""The learning loop in one step: ``neartext improve`` and the service's ``POST .../improve``.
When new ratings came in since the current version learned, tune an adapter and ranking on all
of them (:func:`neartext.ops.tune.tune`), or with ``full`` fine-tune the model and re-embed
(:func:`neartext.ops.finetune.improve_full`); promoted only on a held-out gain.

Example::

    report, line = improve(Collection.open("memes/"), min_new=20)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from neartext.collection import Collection
from neartext.engine.feedback import FeedbackStore
from neartext.errors import InputError
from neartext.ops.finetune import improve_full
from neartext.ops.tune import tune


def last_ratings_used(col: Collection) -> int:
    """The newest rating id the current version learned from (0: none)."""
    return int(col.manifest.details().get("ratings_through") or 0)


def improve(col: Collection, pairs: str | Path | None = None, *, min_new: int = 1,
            full: bool = False, epochs: float = 1.0, **options: Any) -> tuple[Any, str]:
    """The loop in one step: when at least ``min_new`` ratings came in since the current
    version learned, :func:`tune` on all ratings (and ``pairs``); ``options`` are tune's.
    With ``full``, fine-tune the model and re-embed instead
    (:func:`neartext.ops.finetune.improve_full`, ``epochs`` of training; ``col`` is then the
    old version). Returns the report (None when there was nothing new) and a one-line
    summary."""
    store = FeedbackStore(col.path)
    try:
        new = store.count_after(last_ratings_used(col))
        total = store.count()
    finally:
        store.close()
    if new < min_new:
        return None, (f"{col.address}: {new} new ratings since version {col.manifest.version} "
                      f"({total} in all); {min_new} needed to try again — nothing changed")
    if full:
        unknown = set(options) - {"held_out", "margin", "force", "seed", "query_column",
                                  "passage_column", "gold_id_column", "progress"}
        if unknown:
            raise InputError(f"improve --full fine-tunes the model: {', '.join(sorted(unknown))} "
                             "are adapter options")
        full_report = improve_full(col.address, pairs, epochs=epochs, **options)
        return full_report, full_report.reason
    report = tune(col, pairs, feedback=True, **options)
    return report, report.reason
