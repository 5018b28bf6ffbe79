"""What a training run is measured on: the held-out data, turned into the matching ``neartext eval``.

Scored pairs are measured like ``eval sts`` (Spearman), labeled pairs like ``eval pairs``
(average precision), (anchor, positive) pairs and triplets like ``eval retrieval --pairs``
(MRR@10). The same numbers appear before training, after each epoch and in ``metrics.json``.

Example:
    >>> import numpy as np
    >>> from neartext.training.data import TrainingData
    >>> d = TrainingData("scored", {"sentence1": ["a", "b", "c"], "sentence2": ["a", "x", "y"]},
    ...                  np.array([1.0, 0.2, 0.1]), "mem", ("s1", "s2", "score"))
    >>> EvalSet.of(d).primary
    'spearman'
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sentence_transformers.base.evaluation.evaluator import BaseEvaluator

from neartext.data.evaldata import PairData, RetrievalData
from neartext.encoders import Encoder, Kind
from neartext.engine.modeleval import evaluate_pairs, evaluate_sts, semantic_retrieval
from neartext.training.data import TrainingData
from neartext.util.progress import Progress, progress_bar

TRUSTED_MARGIN = 0.05  # the 95% margin (in [0, 1] metric units) held-out data should reach


@dataclass
class EvalSet:
    """Evaluation data with the metric that decides which checkpoint is best."""

    kind: str  # "sts", "pairs" or "retrieval"
    data: PairData | RetrievalData
    primary: str
    size: int
    source: str

    @classmethod
    def of(cls, data: TrainingData) -> EvalSet:
        if data.format == "scored":
            return cls("sts", data.pair_data(), "spearman", len(data), data.source)
        if data.format == "labeled":
            return cls("pairs", data.pair_data(), "average_precision", len(data), data.source)
        r = data.retrieval_data()
        return cls("retrieval", r, "mrr@10", len(r.qrels), data.source)

    def texts(self) -> int:
        """How many texts one evaluation encodes."""
        if isinstance(self.data, RetrievalData):
            return len(self.data.corpus) + len(self.data.qrels)
        return len(set(self.data.text1) | set(self.data.text2))

    def run(self, encoder: Encoder, *, progress: bool = False, what: str = "") -> dict[str, float]:
        """The metrics of ``encoder`` on this data; ``progress`` shows the encoding."""
        if progress:
            encoder = _Counting(encoder, progress_bar(
                self.texts(), f"evaluating{' (' + what + ')' if what else ''}", "text",
                enabled=True))
        try:
            return self._run(encoder)
        finally:
            if isinstance(encoder, _Counting):
                encoder.bar.close()

    def _run(self, encoder: Encoder) -> dict[str, float]:
        if self.kind == "sts":
            return evaluate_sts(encoder, self.data)  # type: ignore[arg-type]
        if self.kind == "pairs":
            return evaluate_pairs(encoder, self.data)  # type: ignore[arg-type]
        return semantic_retrieval(encoder, self.data)  # type: ignore[arg-type]

    def noise(self, level: float | None = None) -> tuple[float, int]:
        """``(half-width, items needed)``: the 95% margin of the primary metric on this many
        items (a difference smaller than it can be chance), and how many items bring the margin
        down to :data:`TRUSTED_MARGIN`. Rank and precision metrics: per-item values in [0, 1],
        standard deviation at most 0.5; Spearman (reported x100): Fisher's z with Bonett and
        Wright's 1.06 factor at the correlation ``level`` (x100; 80 when not known).

        >>> EvalSet("retrieval", None, "mrr@10", 41, "f").noise()
        (0.153, 385)
        """
        if self.kind == "sts":
            rho = min(0.99, max(0.0, (level if level is not None else 80.0) / 100))
            spread = 1.96 * 1.06 * (1 - rho * rho)
            half = spread / math.sqrt(max(self.size - 3, 1))
            needed = math.ceil((spread / TRUSTED_MARGIN) ** 2) + 3
            return round(100 * half, 1), needed
        spread = 1.96 * 0.5
        return round(spread / math.sqrt(max(self.size, 1)), 3), math.ceil((spread / TRUSTED_MARGIN) ** 2)

    def small_warning(self, level: float | None = None) -> str | None:
        """A warning when this held-out data is too small to trust a gain of a few points."""
        half, needed = self.noise(level)
        if self.size >= needed:
            return None
        unit = "queries" if self.kind == "retrieval" else "pairs"
        scale = " points" if self.kind == "sts" else ""
        target = f"{100 * TRUSTED_MARGIN:g} points" if self.kind == "sts" else f"{TRUSTED_MARGIN:g}"
        return (f"the held-out data is small: on {self.size} {unit} a change of up to "
                f"±{half:g}{scale} in {self.primary} can be chance (95%); about {needed} {unit} "
                f"are needed to trust a change of {target} (--eval FILE, or a larger --eval-split)")

    def describe(self) -> str:
        unit = "queries" if self.kind == "retrieval" else "pairs"
        return f"{self.size} {unit} from {self.source} ({self.kind}, primary metric {self.primary})"


class _Counting:
    """An encoder that encodes in chunks and counts them on a progress display."""

    CHUNK = 256

    def __init__(self, encoder: Encoder, bar: Progress) -> None:
        self.inner, self.bar = encoder, bar

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def encode(self, texts: Sequence[str], kind: Kind = "document", *,
               show_progress: bool = False) -> np.ndarray:
        parts = []
        for i in range(0, len(texts), self.CHUNK):
            parts.append(self.inner.encode(texts[i:i + self.CHUNK], kind))
            self.bar.update(len(parts[-1]))
        return np.concatenate(parts) if parts else self.inner.encode([], kind)


def trainer_evaluator(eval_set: EvalSet, make_encoder: Any, progress: bool = False) -> Any:
    """A sentence-transformers evaluator that runs ``eval_set`` on the model being trained.

    ``make_encoder(model)`` wraps the live model in an :class:`Encoder` (same prefixes as training).
    """

    class NeartextEvaluator(BaseEvaluator):
        def __init__(self) -> None:
            super().__init__()
            self.name = "heldout"
            self.primary_metric = eval_set.primary
            self.history: list[dict[str, float]] = []

        def __call__(self, model: Any, output_path: str | None = None, epoch: float = -1,
                     steps: int = -1) -> dict[str, float]:
            metrics = eval_set.run(make_encoder(model), progress=progress,
                                   what=f"epoch {epoch:g}" if epoch >= 0 else "")
            self.history.append({"epoch": float(epoch), "step": int(steps), **metrics})
            return self.prefix_name_to_metrics(metrics, self.name)

    return NeartextEvaluator()
