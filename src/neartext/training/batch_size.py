"""``--batch-size auto``: the largest batch that fits, found by trial.

Each candidate size (powers of two) runs one real forward and backward pass of the chosen loss
on the *longest* training rows, so the worst batch of the run is what gets measured. On a CPU
"fits" means the peak resident memory of the step stays inside a budget (default: half of the
memory available when training starts): the size doubles until the next doubling would cross
the budget, or until an allocation fails. Weights are not changed by the trials.

The chosen size is also capped so an epoch has at least :data:`MIN_STEPS_PER_EPOCH` steps, and
never exceeds :data:`MAX_BATCH`.

:func:`step_memory` estimates one step's memory from two small trials; ``train`` uses it to keep
a step of long texts within a budget (the gradient cache, see ``train``).

Example (numbers depend on the machine)::

    probe = find_batch_size(model, loss, data)
    probe.batch_size, probe.trials   # 256, [(16, 0.21 GB, 61 pairs/s), ...]
"""

from __future__ import annotations

import gc
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import torch

from neartext.training.data import TrainingData
from neartext.util.memory import malloc_trim

MIN_BATCH = 4
MAX_BATCH = 512
MIN_STEPS_PER_EPOCH = 8


@dataclass
class BatchProbe:
    """Outcome of a batch-size search: the size chosen and every trial behind it."""

    batch_size: int
    budget_bytes: int
    reason: str
    trials: list[dict[str, float | None]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"batch_size": self.batch_size, "budget_gb": round(self.budget_bytes / 2**30, 2),
                "reason": self.reason, "trials": self.trials}


def _status_kb(key: str) -> int | None:
    try:
        m = re.search(rf"{key}:\s+(\d+)", Path("/proc/self/status").read_text())
    except OSError:
        return None
    return int(m.group(1)) if m else None


def _release() -> None:
    """Free what can be freed, so that a trial's peak is measured from a baseline that does not
    hide reusable free memory."""
    gc.collect()
    malloc_trim()


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS counter (Linux); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def available_memory() -> int:
    """Bytes of memory available for new allocations (psutil, else /proc/meminfo)."""
    try:

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        m = re.search(r"MemAvailable:\s+(\d+)", Path("/proc/meminfo").read_text())
        if m:
            return int(m.group(1)) * 1024
    except OSError:
        pass
    return 4 * 2**30


def cap_for_rows(rows: int) -> int:
    """The largest power of two that leaves an epoch of ``rows`` at least MIN_STEPS_PER_EPOCH steps."""
    limit = max(MIN_BATCH, rows // MIN_STEPS_PER_EPOCH)
    size = MIN_BATCH
    while size * 2 <= min(limit, MAX_BATCH):
        size *= 2
    return size


def _longest_rows(data: TrainingData) -> list[int]:
    """Row numbers, longest texts first: the worst batch of a run is made of these."""
    columns = data.as_columns()
    keys = [k for k in columns if k in data.texts]
    length = [sum(len(columns[k][i]) for k in keys) for i in range(len(data))]
    return sorted(range(len(data)), key=lambda i: -length[i])


def _trial(model: Any, loss: Any, data: TrainingData, longest: list[int], size: int,
           prompts: dict[str, str]) -> dict[str, float | None]:
    """One real forward and backward pass of ``loss`` on ``size`` of the longest rows (weights
    untouched): its time and the peak memory it added (None where that cannot be measured).
    ``MemoryError`` when it does not fit."""

    columns = data.as_columns()
    text_keys = [k for k in columns if k in data.texts]
    prepare = getattr(model, "preprocess", None) or model.tokenize  # renamed in sentence-transformers 6
    rows = [longest[i % len(longest)] for i in range(size)]
    _release()
    baseline = _status_kb("VmRSS")
    measured = _reset_peak() and baseline is not None
    t0 = time.perf_counter()
    try:
        features = [prepare([prompts.get(k, "") + columns[k][i] for i in rows])
                    for k in text_keys]
        label_key = "score" if "score" in columns else "label" if "label" in columns else None
        labels = torch.tensor([float(columns[label_key][i]) for i in rows]) if label_key \
            else torch.zeros(size)
        loss(features, labels).backward()
    except RuntimeError as e:
        if "memory" not in str(e).lower():
            raise
        raise MemoryError(str(e)) from None
    finally:
        model.zero_grad(set_to_none=True)
        gc.collect()
    seconds = time.perf_counter() - t0
    peak = _status_kb("VmHWM") if measured else None
    used = (peak - baseline) * 1024 if peak is not None and baseline is not None else None
    return {"batch_size": size, "seconds": round(seconds, 3),
            "pairs_per_second": round(size / seconds, 1),
            "peak_gb": None if used is None else round(used / 2**30, 3)}


@dataclass
class StepMemory:
    """Memory one training step adds, as a line in the batch size fitted to two small trials."""

    fixed: float  # bytes
    per_row: float  # bytes
    trials: list[dict[str, float | None]]

    def at(self, batch_size: int) -> int:
        return int(max(self.fixed + self.per_row * batch_size, 0.0))


def step_memory(model: Any, loss: Any, data: TrainingData, prompts: dict[str, str] | None = None,
                small: tuple[int, int] = (4, 8)) -> StepMemory | None:
    """How much memory one training step adds, estimated from two small trial steps on the
    longest rows (activation memory grows linearly with the batch), so that a large step is never
    run to find out; None where memory cannot be measured."""
    longest = _longest_rows(data)
    was_training = model.training
    model.train()
    try:
        trials = [_trial(model, loss, data, longest, b, prompts or {}) for b in small]
    finally:
        model.train(was_training)
    peaks = [t["peak_gb"] for t in trials]
    if peaks[0] is None or peaks[1] is None:
        return None
    (b1, b2), (m1, m2) = small, (float(peaks[0]) * 2**30, float(peaks[1]) * 2**30)
    per_row = (m2 - m1) / (b2 - b1) if m2 > m1 else m2 / b2  # noise: assume all of it per row
    return StepMemory(m2 - per_row * b2, per_row, trials)


def find_batch_size(
    model: Any, loss: Any, data: TrainingData, *, budget_bytes: int | None = None,
    start: int = 16, prompts: dict[str, str] | None = None,
) -> BatchProbe:
    """Try batch sizes ``start, 2*start, ...`` on the longest rows; return the largest that fits."""

    budget = int(budget_bytes if budget_bytes is not None else available_memory() // 2)
    cap = cap_for_rows(len(data))
    longest = _longest_rows(data)
    prompts = prompts or {}
    trials: list[dict[str, float | None]] = []
    chosen, reason = min(start, cap), "capped by the number of rows"
    size = min(start, cap)
    was_training = model.training
    model.train()
    try:
        while True:
            try:
                trial = _trial(model, loss, data, longest, size, prompts)
            except MemoryError:
                reason = f"batch {size} failed to allocate memory"
                break
            trials.append(trial)
            used = None if trial["peak_gb"] is None else trial["peak_gb"] * 2**30
            chosen = size
            if size * 2 > cap:
                reason = (f"largest power of two leaving >= {MIN_STEPS_PER_EPOCH} steps per epoch"
                          if cap < MAX_BATCH else f"reached the maximum of {MAX_BATCH}")
                break
            if used is None:
                reason = "peak memory cannot be measured here; stopped at the first size that ran"
                break
            if used * 2.2 > budget:  # the next size roughly doubles activation memory
                reason = f"the next size would exceed the memory budget of {budget / 2**30:.1f} GB"
                break
            size *= 2
    finally:
        model.train(was_training)
    return BatchProbe(chosen, budget, reason, trials)

