"""Training: one loop (`trainer.train`) and the methods natural, pgd-at, atld."""

from atld.train.config import METHODS, TrainConfig
from atld.train.trainer import Progress, TrainResult, learning_rate, train

__all__ = ["METHODS", "Progress", "TrainConfig", "TrainResult", "learning_rate", "train"]
