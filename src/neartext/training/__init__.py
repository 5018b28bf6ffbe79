"""Fine-tuning sentence-embedding models on a user's own data (the ``train`` extra).

Example:
    >>> from neartext.training import TrainConfig, train               # doctest: +SKIP
    >>> train("pairs.csv", TrainConfig(output="models/v1")).output      # doctest: +SKIP
    PosixPath('models/v1')
"""

import importlib
from typing import Any

from neartext.training.data import FORMATS, TrainingData, load_training_data
from neartext.training.losses import LOSSES, default_loss

__all__ = ["FORMATS", "LOSSES", "TrainConfig", "TrainResult", "TrainingData", "TrainingInterrupted",
           "default_loss", "load_training_data", "train"]
_TRAINER = ("TrainConfig", "TrainResult", "TrainingInterrupted", "train")


def __getattr__(name: str) -> Any:
    """The trainer (:mod:`neartext.training.trainer`: torch, transformers, datasets) on first
    use: the data formats and losses here are read by commands that never train."""
    if name in _TRAINER:
        return getattr(importlib.import_module("neartext.training.trainer"), name)
    raise AttributeError(f"module 'neartext.training' has no attribute {name!r}")
