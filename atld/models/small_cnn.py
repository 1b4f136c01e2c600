"""A small CNN for 8x8 (digits) and 28x28 (MNIST, Fashion-MNIST) grey images."""

from __future__ import annotations

import torch
from torch import nn

from atld.models.common import Classifier, Normalize


class SmallCNN(Classifier):
    """conv32-conv32-pool-conv64-conv64-pool-fc128-fcK, ReLU; no BatchNorm (so eval and train
    mode compute the same function, which keeps small-batch ATLD steps well defined)."""

    def __init__(self, input_shape: tuple[int, int, int], num_classes: int,
                 mean: tuple[float, ...], std: tuple[float, ...], width: int = 32, hidden: int = 128):
        super().__init__()
        c, h, w = input_shape
        if h % 4 or w % 4:
            raise ValueError(f"SmallCNN needs height and width divisible by 4, got {h}x{w}")
        self.num_classes, self.feature_dim = num_classes, hidden
        self.normalize = Normalize(mean, std)
        self.body = nn.Sequential(
            nn.Conv2d(c, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(2 * width * (h // 4) * (w // 4), hidden), nn.ReLU(),
        )
        self.head = nn.Linear(hidden, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.normalize(x))
