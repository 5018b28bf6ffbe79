"""``neartext improve --full``: fine-tune the collection's own model on its pairs and ratings,
re-embed the collection with it as a new version, and swap that in only if it ranks the
held-out queries better than the current version.

The data is what ``tune`` learns from (:func:`neartext.ops.tune.gather`): a (query, passage) file
and the ratings; queries are split into training and held-out groups the same way. The model is
trained with ``neartext.training`` (MNRL on (query, document text) pairs) into
``models/vN`` inside the collection, the documents are re-embedded beside the collection
(``reindex``), and the held-out queries are searched there through the real search path, with
each ranking setting, against the current version. Only then, and only on a gain (the margin and
the lower end of its 95% bootstrap interval, as ``tune``), is the new version swapped in; else
the model is kept as ``models/candidate`` with the reason, and nothing else changes.

Example:
    >>> from neartext.ops.finetune import improve_full                       # doctest: +SKIP
    >>> report = improve_full("memes/", pairs="pairs.csv")                  # doctest: +SKIP
    >>> report.promoted, report.after["mrr@10"] - report.before["mrr@10"]  # doctest: +SKIP
    (True, 0.04)
"""

from __future__ import annotations

import csv
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neartext import training  # its trainer (torch, transformers) loads when first used
from neartext.algo.adapters import paired_gain, split_groups
from neartext.collection import Collection
from neartext.data.address import Address, parse_address
from neartext.data.manifest import next_version
from neartext.data.ranking import DEFAULT_MODE
from neartext.encoders import EncoderSettings, backend_of
from neartext.errors import InputError
from neartext.ops.learning import fit_fusion
from neartext.ops.reindex import MODELS, reindex
from neartext.ops.reports import GatedReport, metric_rows
from neartext.ops.tune import (
    DEFAULT_MARGIN,
    evaluate_setting,
    gather,
    settings_for,
    without_gone,
)

# fewer (query, document) pairs than this do not move a whole model measurably (MNRL at the
# default batch of 32 takes a handful of steps); adapters (``tune``) learn from fewer
MIN_FULL_PAIRS = 200


class NotPromoted(Exception):
    """The re-embedded version did not beat the current one (the reason says by how much)."""


@dataclass
class FullReport(GatedReport):
    """What ``improve --full`` measured and decided."""

    model: str = ""
    train_seconds: float = 0.0
    reindex_seconds: float = 0.0
    ranking: str = DEFAULT_MODE
    gain: float = 0.0
    gain_lower_95: float = 0.0
    notes: list[str] = field(default_factory=list)
    kind: str = "full"

    def summary(self) -> str:
        rows = [f"{self.collection}: {self.pairs} pairs ({self.from_file} from the file, "
                f"{self.from_feedback} from ratings), {self.queries} queries; {self.model} "
                f"fine-tuned in {self.train_seconds:.1f} s, documents re-embedded in "
                f"{self.reindex_seconds:.1f} s",
                *metric_rows(self.before, self.after, "new"), f"  {self.reason}"]
        return "\n".join(rows + [f"  note: {n}" for n in self.notes])


def improve_full(path: str | Path | Address, pairs: str | Path | None = None, *, feedback: bool = True,
                 held_out: float = 0.2, margin: float = DEFAULT_MARGIN, force: bool = False,
                 epochs: float = 1.0, seed: int = 0, query_column: str | None = None,
                 passage_column: str | None = None, gold_id_column: str | None = None,
                 progress: bool = False) -> FullReport:
    """Fine-tune, re-embed, measure, and promote only a gain (see the module docs). Refused
    with one line, nothing changed: a model that cannot be fine-tuned, fewer than
    :data:`MIN_FULL_PAIRS` pairs."""
    target = parse_address(path)
    with Collection.open(target) as col:
        name = col.manifest.model.name
        if backend_of(name) != "sbert":
            raise InputError(f"{target}: its model {name} cannot be fine-tuned (not a "
                             "sentence-transformers model); 'neartext improve' without --full "
                             "learns an adapter for it")
        data = gather(col, pairs, feedback, query_column, passage_column, gold_id_column)
        if len(data.queries) < MIN_FULL_PAIRS:
            raise InputError(
                f"{target}: {len(data.queries)} usable (query, document) pairs "
                f"({data.from_file} from the file, {data.from_feedback} 👍 ratings); at least "
                f"{MIN_FULL_PAIRS} are needed to fine-tune the model (an adapter needs fewer: "
                "'neartext improve' without --full)" + "".join(f"; {n}" for n in data.notes))
        texts = {d.id: d.text for d in col.store.get(list(dict.fromkeys(data.doc_ids)))}
        data = without_gone(data, texts)
        held = split_groups(data.queries, held_out, seed)
        held_queries, golds = data.gold(held)
        col.refresh()
        now, current = col.current()
        number = next_version(now)
        vecs = col.encoder.encode(held_queries, kind="query")
        before, before_rr = evaluate_setting(col, held_queries, vecs, golds, current,
                                             now.ranking().setting())
        settings = now.model.settings
    models = target.state_dir() / MODELS
    out = models / f"v{number}"
    t0 = time.perf_counter()
    _train(out, name, [(q, texts[d]) for q, d, h in zip(data.queries, data.doc_ids, held)
                       if not h], epochs, seed, progress)
    train_seconds = time.perf_counter() - t0
    chosen: dict[str, Any] = {}

    train, train_golds = data.gold(held, False)

    def gate(new: Collection) -> dict[str, Any]:
        q = new.encoder.encode(held_queries, kind="query")
        rows = [(s, *evaluate_setting(new, held_queries, q, golds, None, s)) for s in settings_for(new.store)]
        # the learned fusion, fitted as tune fits it (after the keyword ranking above, which
        # builds the copy's keyword index)
        learned = fit_fusion(new, train, new.encoder.encode(train, kind="query"),
                             train_golds, None, seed) if train else []
        rows.extend((s, *evaluate_setting(new, held_queries, q, golds, None, s)) for s in learned)
        setting, after, rr = max(rows, key=lambda r: round(float(r[2].mean()), 6))
        gain, low = paired_gain(before_rr, rr)
        chosen.update(setting=setting, after=after, gain=gain, low=low)
        what = (f"the fine-tuned model with {setting.describe()} ranking: MRR@10 {gain:+.4f} on "
                f"{len(held_queries)} held-out queries (95% lower bound {low:+.4f})")
        if not force and not (gain >= margin and low > 0):
            why = f"below the margin {margin}" if gain < margin else \
                "not above 0 at its lower bound: it could be the luck of the split"
            raise NotPromoted(f"not promoted: {what}; {why}")
        chosen["what"] = what
        details = {"metrics": after, "previous_metrics": before, "gain_lower_95": round(low, 4),
                   "ratings_through": data.ratings_through, "ranking": setting.describe(),
                   "pairs": len(data.queries), "queries": len(set(data.queries)),
                   "from_file": data.from_file, "from_feedback": data.from_feedback,
                   "fine_tuned": {"base": name, "epochs": epochs,
                                  "train_pairs": int((~held).sum())}}
        return {"search": setting.with_details(details)}


    t1 = time.perf_counter()

    def report(promoted: bool, version: int, reason: str, after: dict[str, float],
               notes: list[str]) -> FullReport:
        return FullReport(str(target), len(data.queries), len(set(data.queries)),
                          data.from_file, data.from_feedback, before, after, promoted, version,
                          reason, model=name, train_seconds=train_seconds,
                          reindex_seconds=time.perf_counter() - t1,
                          ranking=chosen["setting"].describe(), gain=round(chosen["gain"], 4),
                          gain_lower_95=round(chosen["low"], 4), notes=notes)

    try:
        rep = reindex(target, EncoderSettings(
            model=str(out.resolve()), normalize=settings.get("normalize", True),
            batch_size=settings.get("batch_size", 32)), progress=progress, gate=gate)
    except NotPromoted as e:
        kept = models / "candidate"
        if kept.exists():
            shutil.rmtree(kept)
        out.rename(kept)
        reason = f"{e}; the model is kept in {kept}"
        return report(False, now.version, reason, before, data.notes)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)  # nothing refers to it
        raise
    reason = f"promoted as version {rep.version}: {chosen['what']}" + (
        "" if chosen["gain"] >= margin and chosen["low"] > 0 else " (forced)")
    return report(True, rep.version, reason, chosen["after"], data.notes + rep.notes)


def _train(out: Path, base: str, pairs: list[tuple[str, str]], epochs: float, seed: int,
           progress: bool) -> None:
    """Fine-tune ``base`` on (query, document text) pairs into ``out``."""

    if out.exists():  # a killed run's: nothing refers to it
        shutil.rmtree(out)
    with tempfile.TemporaryDirectory(prefix="neartext-full-") as tmp:
        file = Path(tmp) / "pairs.csv"
        with file.open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["anchor", "positive"])
            w.writerows(pairs)
        out.parent.mkdir(parents=True, exist_ok=True)
        training.train(file, training.TrainConfig(output=str(out), base=base, epochs=epochs, eval_split=0,
                                seed=seed), progress=progress)
