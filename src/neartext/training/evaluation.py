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

from dataclasses import dataclass
from typing import Any

from ..encoders import Encoder
from ..evaluate import PairData, RetrievalData, evaluate_pairs, evaluate_retrieval, evaluate_sts
from .data import TrainingData


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

    def run(self, encoder: Encoder) -> dict[str, float]:
        if self.kind == "sts":
            return evaluate_sts(encoder, self.data)  # type: ignore[arg-type]
        if self.kind == "pairs":
            return evaluate_pairs(encoder, self.data)  # type: ignore[arg-type]
        return evaluate_retrieval(encoder, self.data)  # type: ignore[arg-type]

    def describe(self) -> str:
        unit = "queries" if self.kind == "retrieval" else "pairs"
        return f"{self.size} {unit} from {self.source} ({self.kind}, primary metric {self.primary})"


def trainer_evaluator(eval_set: EvalSet, make_encoder: Any) -> Any:
    """A sentence-transformers evaluator that runs ``eval_set`` on the model being trained.

    ``make_encoder(model)`` wraps the live model in an :class:`Encoder` (same prefixes as training).
    """
    from sentence_transformers.base.evaluation.evaluator import BaseEvaluator

    class NeartextEvaluator(BaseEvaluator):
        def __init__(self) -> None:
            super().__init__()
            self.name = "heldout"
            self.primary_metric = eval_set.primary
            self.history: list[dict[str, float]] = []

        def __call__(self, model: Any, output_path: str | None = None, epoch: float = -1,
                     steps: int = -1) -> dict[str, float]:
            metrics = eval_set.run(make_encoder(model))
            self.history.append({"epoch": float(epoch), "step": int(steps), **metrics})
            return self.prefix_name_to_metrics(metrics, self.name)

    return NeartextEvaluator()
