"""Fine-tuning sentence-embedding models on a user's own data (the ``train`` extra).

Example:
    >>> from neartext.training import TrainConfig, train               # doctest: +SKIP
    >>> train("pairs.csv", TrainConfig(output="models/v1")).output      # doctest: +SKIP
    PosixPath('models/v1')
"""

from .data import FORMATS, TrainingData, load_training_data
from .losses import LOSSES, default_loss
from .train import TrainConfig, TrainingInterrupted, TrainResult, train

__all__ = ["FORMATS", "LOSSES", "TrainConfig", "TrainResult", "TrainingData", "TrainingInterrupted",
           "default_loss", "load_training_data", "train"]
