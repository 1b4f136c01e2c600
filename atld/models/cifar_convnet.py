"""A small CNN for 32x32 colour images that PGD-trains on a CPU in minutes ("convnet-<w>").

After airbench (KellerJordan/cifar10-airbench): a 3x3 conv-BN-ReLU stem of max(w/2, 8) channels at
full resolution, then three groups of widths w, 2w, 4w; each group is conv -> 2x2 max-pool -> BN ->
ReLU -> conv -> BN -> ReLU, so only a group's first conv runs at the higher resolution; a global
max-pool and a linear head. A PreAct ResNet-18 costs about 20x a convnet-32 per step. 28x28 inputs
work too (the pools floor 28 -> 14 -> 7 -> 3).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from atld.models.common import Classifier, InputConv2d, Normalize

MIN_SIDE = 8  # three 2x2 pools need at least 8 pixels a side
WIDTHS = range(8, 257)  # the widths "convnet-<w>" accepts


def _conv_bn_relu(cin: int, cout: int, kind: type[nn.Conv2d] = nn.Conv2d) -> list[nn.Module]:
    return [kind(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]


def _widths(width: int) -> tuple[int, tuple[int, int, int]]:
    return max(width // 2, 8), (width, 2 * width, 4 * width)


class ConvNet(Classifier):
    """Input [B, C, H, W] in [0, 1], H and W >= 8; logits [B, K]; features [B, 4·width]."""

    def __init__(self, input_shape: tuple[int, int, int], num_classes: int, mean: tuple[float, ...],
                 std: tuple[float, ...], width: int = 32):
        super().__init__()
        stem, widths = _widths(width)
        self.num_classes, self.feature_dim = num_classes, widths[-1]
        self.normalize = Normalize(mean, std)
        layers, cin = _conv_bn_relu(input_shape[0], stem, InputConv2d), stem
        for w in widths:
            layers += [nn.Conv2d(cin, w, 3, padding=1, bias=False), nn.MaxPool2d(2), nn.BatchNorm2d(w), nn.ReLU(),
                       *_conv_bn_relu(w, w)]
            cin = w
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(cin, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_max_pool2d(self.body(self.normalize(x)), 1).flatten(1)


def convnet_params(channels: int, num_classes: int, width: int) -> int:
    """Learnable parameters of `ConvNet` (a formula: nothing is built)."""
    stem, widths = _widths(width)

    def conv_bn(cin: int, cout: int) -> int:  # 3x3 weights without bias, BatchNorm's scale and shift
        return cin * cout * 9 + 2 * cout

    total, cin = conv_bn(channels, stem), stem
    for w in widths:
        total += conv_bn(cin, w) + conv_bn(w, w)
        cin = w
    return total + (cin + 1) * num_classes
