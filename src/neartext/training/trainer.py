"""Fine-tune a sentence-transformers model on a training file, with sentence-transformers' trainer.

The run: read the file and detect its format, pick the loss, hold out evaluation data, measure
the base model, train (evaluating after each epoch and keeping the best checkpoint), measure
again, and write the model directory atomically: it appears complete or not at all.

Work happens in ``<output>.partial/``. A first Ctrl-C finishes the current step, saves a
checkpoint and the model so far (``<output>.partial/interrupted``, usable with ``--model``), and
stops; ``resume=True`` continues from the last checkpoint with the same settings.

Example:
    >>> from neartext.training import TrainConfig, train          # doctest: +SKIP
    >>> result = train("pairs.csv", TrainConfig(output="models/memes-v1"))  # doctest: +SKIP
    >>> result.metrics["eval"]["after"]["mrr@10"]                 # doctest: +SKIP
    0.19...
"""

from __future__ import annotations

import json
import math
import os
import platform
import resource
import shutil
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
from sentence_transformers.base.sampler import BatchSamplers
from sentence_transformers.sentence_transformer import losses
from sentence_transformers.util import mine_hard_negatives
from transformers import TrainerCallback
from transformers.trainer_callback import PrinterCallback, ProgressCallback
from transformers.utils import logging as hf_logging

from neartext.encoders import EncoderSettings, backend_of, load_encoder
from neartext.encoders.sbert import _quiet_transformers
from neartext.errors import InputError, Interrupted, MissingExtra
from neartext.training.batch_size import (
    BatchProbe,
    available_memory,
    cap_for_rows,
    find_batch_size,
    step_memory,
)
from neartext.training.card import write_model_card
from neartext.training.data import TrainingData, load_training_data
from neartext.training.evalset import EvalSet, trainer_evaluator
from neartext.training.losses import DEFAULT_BATCH, IN_BATCH_NEGATIVES, LOSSES, check_loss, default_loss
from neartext.util.memory import malloc_trim
from neartext.util.progress import on_terminal, progress_bar
from neartext.version import __version__

AUTO_SPLIT_MIN_ROWS = 200
AUTO_SPLIT = 0.1
CONFIG_FILE = "training_config.json"
METRICS_FILE = "metrics.json"


class TrainingInterrupted(Interrupted):
    """Training stopped on Ctrl-C; the model so far and a checkpoint were kept."""


@dataclass
class TrainConfig:
    """Everything that shapes a training run (stored as ``training_config.json``).

    ``batch_size`` is a number, ``"auto"``, or ``None`` for the loss's default
    (:data:`~neartext.training.losses.DEFAULT_BATCH`); ``eval_split`` of ``None`` holds out
    10% when the file has at least 200 rows and no ``eval_file`` is given (``0`` disables).
    """

    output: str
    base: str = "default"
    loss: str | None = None
    epochs: float = 1.0
    learning_rate: float = 2e-5
    warmup_ratio: float = 0.1
    batch_size: int | str | None = None
    mini_batch_size: int = 32
    max_seq_length: int | None = None
    seed: int = 42
    eval_file: str | None = None
    eval_split: float | None = None
    balance: bool = False
    mine_hard_negatives: bool = False
    save_steps: int | None = None
    memory_budget_gb: float | None = None
    anchor: str | None = None
    positive: str | None = None
    negative: str | None = None
    score: str | None = None
    encoding: str = "utf-8"

    def __post_init__(self) -> None:
        if self.batch_size is not None and self.batch_size != "auto":
            try:
                self.batch_size = int(self.batch_size)
            except (TypeError, ValueError):
                raise InputError(f"batch size must be a number or 'auto' (got {self.batch_size!r})") from None
            if self.batch_size < 2:
                raise InputError(f"batch size must be at least 2 (got {self.batch_size})")
        for name, low in (("epochs", 0.0), ("learning_rate", 0.0)):
            if not getattr(self, name) > low:
                raise InputError(f"{name.replace('_', ' ')} must be > {low:g} (got {getattr(self, name)})")
        if not 0 <= self.warmup_ratio < 1:
            raise InputError(f"warmup must be a fraction in [0, 1) (got {self.warmup_ratio})")
        if self.eval_split is not None and not 0 <= self.eval_split < 1:
            raise InputError(f"the evaluation split must be in [0, 1) (got {self.eval_split})")
        if self.eval_file and self.eval_split:
            raise InputError("give an evaluation file or a split fraction, not both")


@dataclass
class TrainResult:
    """Where the model went and what was measured (the content of ``metrics.json``)."""

    output: Path
    metrics: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        t = self.metrics["train"]
        parts = [f"{self.output}: trained {t['rows']} rows x {t['epochs']:g} epochs with "
                 f"{t['loss']} in {t['seconds']:.0f} s ({t['pairs_per_second']:.1f} pairs/s, "
                 f"batch {t['batch_size']}, peak memory {t['peak_memory_gb']:.1f} GB)"]
        ev = self.metrics.get("eval")
        if ev:
            k = ev["primary"]
            parts.append(f"{k} on {ev['description']}: {ev['before'][k]:.4f} -> {ev['after'][k]:.4f}")
        return "\n".join(parts)


def train(file: str | Path, config: TrainConfig, *, progress: bool = False,
          resume: bool = False, overwrite: bool = False, callbacks: list[Any] | None = None
          ) -> TrainResult:
    """Train ``config.base`` on ``file`` and write the model to ``config.output``.

    ``callbacks`` are extra ``transformers.TrainerCallback`` objects.
    """
    if backend_of(config.base) != "sbert":
        raise InputError(f"'{config.base}' cannot be fine-tuned: it is not a sentence-transformers "
                         "model (neartext runs it for inference only). Train a sentence-transformers "
                         "model instead, e.g. a multilingual one by local path")
    _require_training_extra()
    out = Path(config.output)
    partial = out.with_name(out.name + ".partial")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise InputError(f"{out}: exists and is not empty; choose another --output or pass --overwrite")
    notes: list[str] = []

    data = load_training_data(file, anchor=config.anchor, positive=config.positive,
                              negative=config.negative, score=config.score, encoding=config.encoding)
    loss_name = config.loss or default_loss(data.format)
    check_loss(loss_name, data.format)
    if data.score_scale != 1:
        notes.append(f"scores in [0, {data.score_scale:g}] scaled to [0, 1]")
    eval_data, data = _held_out(data, config, notes)
    if config.balance:
        data = data.balanced(config.seed)
        notes.extend(data.notes[-1:])
    if loss_name in IN_BATCH_NEGATIVES and data.format == "labeled":
        data = data.positive_pairs()
        notes.append(f"{loss_name} trains on the {len(data)} label-1 rows")
    if config.mine_hard_negatives and (loss_name not in IN_BATCH_NEGATIVES or data.format != "pairs"):
        raise InputError("--mine-hard-negatives adds negatives to (anchor, positive) pairs trained "
                         f"with mnrl or cached-mnrl (here: {data.format} with {loss_name})")
    batch_size = DEFAULT_BATCH[loss_name] if config.batch_size is None else config.batch_size
    if config.batch_size is None and batch_size > len(data) >= 2:  # type: ignore[operator]
        batch_size = 2 ** (len(data).bit_length() - 1)
        notes.append(f"batch size lowered to {batch_size} to fit {len(data)} rows")
    if isinstance(batch_size, int) and batch_size > len(data):
        raise InputError(f"{data.source}: {len(data)} training rows are fewer than one batch of "
                         f"{batch_size}; lower --batch-size or add rows")

    run_config = {**asdict(config), "train_file": str(file), "format": data.format,
                  "loss_resolved": loss_name, "neartext": __version__}
    checkpoints = partial / "checkpoints"
    last = _prepare_workdir(partial, checkpoints, run_config, resume)

    enc = load_encoder(EncoderSettings(model=config.base, max_seq_length=config.max_seq_length))
    model = enc.model  # type: ignore[attr-defined]
    q, d = enc.settings.query_prefix or "", enc.settings.document_prefix or ""

    if config.mine_hard_negatives:
        data = _mine_negatives(data, model, q, d, enc.settings.batch_size, progress, notes)

    prompts = _prompts(data, q, d)
    loss = build_loss(loss_name, model, config.mini_batch_size)
    if loss_name == "mnrl" and config.loss is None and isinstance(batch_size, int):
        cached = _gradient_cache(model, loss, data, batch_size, prompts, config, notes)
        if cached is not None:
            loss_name, loss = "cached-mnrl", cached
            run_config = {**run_config, "loss_resolved": loss_name}
            if progress:
                print(f"note: {notes[-1]}", file=sys.stderr)
    probe: BatchProbe | None = None
    if batch_size == "auto":
        budget = int(config.memory_budget_gb * 2**30) if config.memory_budget_gb else None
        probe_loss = build_loss("mnrl", model) if loss_name == "cached-mnrl" else loss
        probe = find_batch_size(model, probe_loss, data, budget_bytes=budget, prompts=prompts)
        if loss_name == "cached-mnrl":  # memory is set by the mini-batch; the batch can grow
            loss = build_loss(loss_name, model, probe.batch_size)
            batch_size = max(probe.batch_size, cap_for_rows(len(data)))
        else:
            batch_size = probe.batch_size
        if progress:
            print(f"batch size auto: {batch_size} ({probe.reason})", file=sys.stderr)
    assert isinstance(batch_size, int)

    eval_set = EvalSet.of(eval_data) if eval_data is not None else None
    before = eval_set.run(enc, progress=progress, what="baseline") if eval_set else None
    small = eval_set.small_warning(before[eval_set.primary]) if eval_set and before else None
    if small:
        notes.append(small)
        if progress:  # now, not only after the run
            print(f"warning: {small}", file=sys.stderr)


    def live_encoder(m: Any) -> Any:
        return type(enc).wrap(m, enc.settings, enc.model_dir)  # type: ignore[attr-defined]

    evaluator = trainer_evaluator(eval_set, live_encoder, progress) if eval_set else None
    steps_per_epoch = max(1, -(-len(data) // batch_size))
    total_steps = math.ceil(steps_per_epoch * config.epochs)
    by_steps = config.save_steps is not None
    args = SentenceTransformerTrainingArguments(
        output_dir=str(checkpoints), num_train_epochs=config.epochs,
        per_device_train_batch_size=batch_size, learning_rate=config.learning_rate,
        warmup_steps=round(config.warmup_ratio * total_steps), seed=config.seed, data_seed=config.seed,
        batch_sampler=(BatchSamplers.NO_DUPLICATES if loss_name in IN_BATCH_NEGATIVES
                       else BatchSamplers.BATCH_SAMPLER),
        eval_strategy=("no" if not eval_set else "steps" if by_steps else "epoch"),
        save_strategy="steps" if by_steps else "epoch",
        save_steps=config.save_steps or 500, eval_steps=config.save_steps if by_steps else None,
        save_total_limit=2, load_best_model_at_end=eval_set is not None,
        metric_for_best_model=(f"eval_heldout_{eval_set.primary}" if eval_set else None),
        greater_is_better=True, logging_steps=max(1, steps_per_epoch // 20), report_to="none",
        disable_tqdm=True, use_cpu=True, prompts=prompts or None, save_only_model=False,
    )

    class Trainer(SentenceTransformerTrainer):
        def add_model_card_callback(self, default_args_dict: dict[str, Any]) -> None:
            pass  # neartext writes its own model card (card.py)

    stopper = _CtrlC()
    trainer = Trainer(
        model=model, args=args, train_dataset=Dataset.from_dict(data.as_columns()), loss=loss,
        evaluator=evaluator, callbacks=[stopper.callback(), _release_callback(),
                                        *_progress_callbacks(progress), *(callbacks or [])])
    _quiet_trainer(trainer)
    t0 = time.perf_counter()

    with stopper, _quiet_transformers():
        output = trainer.train(resume_from_checkpoint=str(last) if last else None)
    seconds = time.perf_counter() - t0
    if stopper.stopped:
        keep = partial / "interrupted"
        _save_model(model, keep, q, d)
        raise TrainingInterrupted(
            f"stopped at step {trainer.state.global_step} of {trainer.state.max_steps}; the model "
            f"so far is in {keep} (usable with --model or --base) and the checkpoint in {checkpoints}; "
            "run the same command with --resume to continue")

    after = (eval_set.run(live_encoder(model), progress=progress, what="final")
             if eval_set else None)
    rows_seen = len(data) * config.epochs
    metrics: dict[str, Any] = {
        "train": {
            "file": str(file), "format": data.format, "loss": loss_name, "rows": len(data),
            "epochs": config.epochs, "steps": trainer.state.global_step, "batch_size": batch_size,
            "seconds": round(seconds, 1), "pairs_per_second": round(rows_seen / max(seconds, 1e-9), 2),
            "final_loss": round(float(output.training_loss), 5),
            "batch_probe": probe.to_dict() if probe else None,
            "peak_memory_gb": peak_memory_gb(),
        },
        "machine": _machine(),
    }
    if eval_set and before is not None and after is not None:
        metrics["eval"] = {
            "description": eval_set.describe(), "primary": eval_set.primary,
            "before": before, "after": after,
            "per_epoch": evaluator.history if evaluator else [],
            "best_checkpoint": trainer.state.best_model_checkpoint and Path(
                trainer.state.best_model_checkpoint).name,
        }
    else:
        notes.append("no evaluation data: give --eval FILE or --eval-split to measure the gain")
    metrics["notes"] = notes
    staged = partial / "model"
    _save_model(model, staged, q, d)
    (staged / CONFIG_FILE).write_text(json.dumps(run_config, indent=2, ensure_ascii=False) + "\n")
    (staged / METRICS_FILE).write_text(json.dumps(metrics, indent=2, ensure_ascii=False) + "\n")

    write_model_card(staged, run_config, metrics)
    _publish(staged, out)
    shutil.rmtree(partial, ignore_errors=True)
    return TrainResult(out, metrics, notes)


STEP_BUDGET_GB = 2.0  # memory a training step may add before the gradient cache takes over


def _gradient_cache(model: Any, loss: Any, data: TrainingData, batch_size: int,
                    prompts: dict[str, str], config: TrainConfig, notes: list[str]) -> Any:
    """A cached-mnrl loss when a step of ``batch_size`` rows would add more memory than the
    budget (``--memory-budget``, else :data:`STEP_BUDGET_GB`), else None.

    MNRL holds the activations of every text of the batch for the backward pass, so long texts
    make a step of 32 pairs cost gigabytes (5 GB for 256-token descriptions with MiniLM). The
    gradient cache (GradCache, sentence-transformers' CachedMultipleNegativesRankingLoss) computes
    the same loss and gradients over mini-batches, so memory follows the mini-batch; measured on
    such data it costs a few percent of time. The mini-batch is the largest power of two that
    fits the budget."""

    budget = (config.memory_budget_gb or STEP_BUDGET_GB) * 2**30
    est = step_memory(model, loss, data, prompts)
    if est is None or est.at(batch_size) <= budget:
        return None
    mini = 2
    while mini * 2 < batch_size and est.at(mini * 2) <= budget:
        mini *= 2
    notes.append(f"a step of {batch_size} rows of these texts would add about "
                 f"{est.at(batch_size) / 2**30:.1f} GB; training with the gradient cache instead "
                 f"(cached-mnrl, mini-batches of {mini}: the same loss and gradients, about "
                 f"{est.at(mini) / 2**30:.1f} GB; --memory-budget GB sets the limit, --loss mnrl "
                 "turns this off)")
    return build_loss("cached-mnrl", model, mini)


def peak_memory_gb() -> float:
    """The most resident memory this process has used so far (what ``/usr/bin/time -v``
    reports as its maximum resident set size), in GB."""

    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return round(kib / 2**20, 2)


def _require_training_extra() -> None:
    for module in ("sentence_transformers", "datasets", "accelerate"):
        try:
            __import__(module)
        except ImportError:
            raise MissingExtra(module, "train") from None


def _held_out(data: TrainingData, config: TrainConfig, notes: list[str]
              ) -> tuple[TrainingData | None, TrainingData]:
    """``(evaluation data or None, training data)`` from the file, the split or the eval file."""
    if config.eval_file:
        ev = load_training_data(config.eval_file, anchor=config.anchor, positive=config.positive,
                                negative=config.negative, score=config.score, encoding=config.encoding)
        return ev, data
    split = config.eval_split
    if split is None:
        split = AUTO_SPLIT if len(data) >= AUTO_SPLIT_MIN_ROWS else 0
        if split:
            notes.append(f"held out {AUTO_SPLIT:.0%} of the rows for evaluation (--eval-split 0: none)")
    if not split:
        return None, data
    train_part, held = data.split(split, config.seed)
    return held, train_part


def _prepare_workdir(partial: Path, checkpoints: Path, run_config: dict, resume: bool) -> Path | None:
    """Create ``partial``; on resume, check the settings match and return the last checkpoint."""
    saved = partial / CONFIG_FILE
    if resume:
        if not saved.is_file():
            raise InputError(f"{partial}: nothing to resume (no interrupted run of this output)")
        old = json.loads(saved.read_text())
        changed = sorted(k for k in set(old) | set(run_config) if old.get(k) != run_config.get(k))
        if changed:
            raise InputError(f"{partial}: the interrupted run used other settings ({', '.join(changed)}); "
                             "resume with the same command, or start over without --resume")
        found = sorted(checkpoints.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
        if not found:
            raise InputError(f"{checkpoints}: no checkpoint was saved before the interruption")
        return found[-1]
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    saved.write_text(json.dumps(run_config, indent=2, ensure_ascii=False) + "\n")
    return None


def _prompts(data: TrainingData, q: str, d: str) -> dict[str, str]:
    """Column prompts so training sees texts as search will: the model's query/document prefixes."""
    if not q and not d:
        return {}
    if data.format in ("pairs", "triplets"):
        cols = {"anchor": q, "positive": d, "negative": d}
    else:
        cols = {"sentence1": d, "sentence2": d}
    return {k: v for k, v in cols.items() if k in data.texts and v}


def _mine_negatives(data: TrainingData, model: Any, q: str, d: str, batch_size: int,
                    progress: bool, notes: list[str]) -> TrainingData:
    """Add, per pair, the closest other positive that scores clearly below the gold (5% margin)."""

    mined = mine_hard_negatives(
        Dataset.from_dict(data.as_columns()), model, anchor_column_name="anchor",
        positive_column_name="positive", range_max=30, relative_margin=0.05, num_negatives=1,
        sampling_strategy="top", query_prompt=q or None, corpus_prompt=d or None,
        batch_size=batch_size, output_format="triplet", verbose=progress and on_terminal())
    if len(mined) == 0:
        raise InputError(f"{data.source}: no hard negatives found (every candidate scored too close "
                         "to its positive); train without --mine-hard-negatives")
    notes.append(f"hard negatives mined for {len(mined)} of {len(data)} pairs")
    texts = {k: list(mined[k]) for k in ("anchor", "positive", "negative")}
    return TrainingData("triplets", texts, None, data.source, data.columns, data.score_scale,
                        list(data.notes))


class _CtrlC:
    """First Ctrl-C: finish the step, save a checkpoint, stop. Second Ctrl-C: stop at once."""

    def __init__(self) -> None:
        self.stopped = False
        self._previous: Any = None

    def __enter__(self) -> _CtrlC:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.stopped:
            raise KeyboardInterrupt
        self.stopped = True
        print("\nstopping after this step and saving a checkpoint (Ctrl-C again to stop now)",
              file=sys.stderr)

    def callback(self) -> Any:

        outer = self

        class StopOnCtrlC(TrainerCallback):
            def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> Any:
                if outer.stopped:
                    control.should_save = True
                    control.should_training_stop = True
                return control

        return StopOnCtrlC()


def _release_callback() -> Any:
    """After each step, hand freed memory back to the system: steps of varying text lengths
    otherwise leave the heap fragmented and resident memory creeping up over a run."""


    class Release(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            malloc_trim()

    return Release()


def _progress_callbacks(progress: bool) -> list[Any]:
    """Training steps with the loss: a bar on a terminal, log lines with rate and time left
    otherwise (:mod:`neartext.util.progress`); each evaluation's metrics on a line of their own."""
    if not progress:
        return []


    class Bar(TrainerCallback):
        bar: Any = None

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.bar = progress_bar(state.max_steps, "training", "step", enabled=True,
                                    initial=state.global_step)

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.bar.update(state.global_step - self.bar.n)

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            if logs and "loss" in logs:
                self.bar.set_postfix(loss=f"{float(logs['loss']):.4f}", epoch=f"{state.epoch:.2f}")
            metrics = {k[len("eval_heldout_"):]: v for k, v in (logs or {}).items()
                       if k.startswith("eval_heldout_")}
            if metrics:
                shown = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()
                                  if k in ("spearman", "average_precision", "mrr@10", "ndcg@10"))
                self.bar.write(f"epoch {state.epoch:.2f}: {shown}")

        def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.bar.close()

    return [Bar()]


def _quiet_trainer(trainer: Any) -> None:
    """Drop the trainer's own printing; neartext shows one progress bar with the loss."""

    for cb in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(cb)

    hf_logging.set_verbosity_error()


def _save_model(model: Any, path: Path, q: str, d: str) -> None:
    """Save in sentence-transformers format, carrying the prefixes as the model's prompts."""
    prompts = {k: v for k, v in (("query", q), ("document", d)) if v}
    if prompts:
        model.prompts = {**(model.prompts or {}), **prompts}
    if path.exists():
        shutil.rmtree(path)

    with _quiet_transformers():
        model.save(str(path), create_model_card=False)


def _publish(staged: Path, out: Path) -> None:
    """Move the finished model into place; an existing ``out`` is replaced only after that."""
    out.parent.mkdir(parents=True, exist_ok=True)
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    if out.exists():
        out.rename(old)
    staged.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def _machine() -> dict[str, Any]:

    cpu = platform.machine()
    try:
        names = [ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                 if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "available_memory_gb": round(available_memory() / 2**30, 1),
            "python": platform.python_version(), "torch": torch.__version__}


def build_loss(name: str, model: Any, mini_batch_size: int = 32) -> Any:
    """The sentence-transformers loss module called ``name`` for ``model``."""
    if name == "mnrl":
        return losses.MultipleNegativesRankingLoss(model)
    if name == "cached-mnrl":
        return losses.CachedMultipleNegativesRankingLoss(model, mini_batch_size=mini_batch_size,
                                                         show_progress_bar=False)
    if name == "cosent":
        return losses.CoSENTLoss(model)
    if name == "cosine":
        return losses.CosineSimilarityLoss(model)
    if name == "online-contrastive":
        return losses.OnlineContrastiveLoss(model)
    raise InputError(f"unknown loss '{name}'; choose one of: {', '.join(LOSSES)}")
