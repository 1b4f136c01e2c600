"""A small CNN for 8x8 (digits) and 28x28 (MNIST, Fashion-MNIST) grey images."""

from __future__ import annotations

import torch
from torch import nn

from atld.models.common import Classifier, InputConv2d, LayoutFlatten, Normalize


class SmallCNN(Classifier):
    """conv32-conv32-pool-conv64-conv64-pool-fc128-fcK with ReLU, and BatchNorm after every conv
    by default ("small-cnn"). Measured on digits (ε = 0.2, 30 epochs, SGD): without BatchNorm,
    ATLD training is unstable at lr >= 0.01 (collapses to one class) and slow below; with it,
    lr 0.05-0.1 trains natural and ATLD models to >= 99 % clean accuracy. "small-cnn-nobn" keeps
    the plain variant (its eval and train modes compute the same function, e.g. for exact
    multi-process equivalence tests on the CPU, where SyncBatchNorm is unavailable)."""

    def __init__(self, input_shape: tuple[int, int, int], num_classes: int,
                 mean: tuple[float, ...], std: tuple[float, ...], width: int = 32, hidden: int = 128,
                 batch_norm: bool = True):
        super().__init__()
        c, h, w = input_shape
        if h % 4 or w % 4:
            raise ValueError(f"SmallCNN needs height and width divisible by 4, got {h}x{w}")
        self.num_classes, self.feature_dim = num_classes, hidden
        self.normalize = Normalize(mean, std)
        def conv(cin: int, cout: int, kind: type[nn.Conv2d] = nn.Conv2d) -> list[nn.Module]:
            if batch_norm:
                return [kind(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]
            return [kind(cin, cout, 3, padding=1), nn.ReLU()]

        self.body = nn.Sequential(
            *conv(c, width, InputConv2d), *conv(width, width), nn.MaxPool2d(2),
            *conv(width, 2 * width), *conv(2 * width, 2 * width), nn.MaxPool2d(2),
            LayoutFlatten(),
            nn.Linear(2 * width * (h // 4) * (w // 4), hidden), nn.ReLU(),
        )
        self.head = nn.Linear(hidden, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.normalize(x))


def small_cnn_params(input_shape: tuple[int, int, int], num_classes: int, batch_norm: bool, width: int = 32,
                     hidden: int = 128) -> int:
    """Learnable parameters of `SmallCNN` (a formula: nothing is built)."""
    c, h, w = input_shape

    def conv(cin: int, cout: int) -> int:  # 3x3 weights, then BatchNorm's scale and shift, or a bias
        return cin * cout * 9 + (2 * cout if batch_norm else cout)

    convs = conv(c, width) + conv(width, width) + conv(width, 2 * width) + conv(2 * width, 2 * width)
    return convs + (2 * width * (h // 4) * (w // 4) + 1) * hidden + (hidden + 1) * num_classes
