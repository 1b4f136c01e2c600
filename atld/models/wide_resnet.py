"""WideResNet(depth, widen) (Zagoruyko & Komodakis, 2016); WRN-28-10 is the paper's classifier
(no dropout, as the official code)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from atld.models.common import Classifier, InputConv2d, Normalize
from atld.models.preact_resnet import PreActBlock, preact_block_params  # WRN's block is the same block


class WideResNet(Classifier):
    def __init__(self, input_shape: tuple[int, int, int], num_classes: int,
                 mean: tuple[float, ...], std: tuple[float, ...], depth: int = 28, widen: int = 10):
        super().__init__()
        if depth < 10 or (depth - 4) % 6:
            raise ValueError(f"WideResNet depth must be 6n + 4 with n >= 1, got {depth}")
        widths = _widths(widen)
        self.num_classes, self.feature_dim = num_classes, widths[3]
        self.normalize = Normalize(mean, std)
        self.stem = InputConv2d(input_shape[0], widths[0], 3, 1, 1, bias=False)
        self.layers = nn.Sequential(*(PreActBlock(*b) for b in _blocks(depth, widen)))
        cin = widths[3]
        self.bn = nn.BatchNorm2d(cin)
        self.head = nn.Linear(cin, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def features(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn(self.layers(self.stem(self.normalize(x)))))
        return F.adaptive_avg_pool2d(out, 1).flatten(1)


def _widths(widen: int) -> tuple[int, int, int, int]:
    return 16, 16 * widen, 32 * widen, 64 * widen


def _blocks(depth: int, widen: int) -> list[tuple[int, int, int]]:
    """(in width, out width, stride) of every block: (depth − 4) / 6 blocks in each of 3 groups."""
    widths, out, cin = _widths(widen), [], 16
    for cout, stride in zip(widths[1:], (1, 2, 2)):
        for i in range((depth - 4) // 6):
            out.append((cin, cout, stride if i == 0 else 1))
            cin = cout
    return out


def wide_resnet_params(channels: int, num_classes: int, depth: int, widen: int) -> int:
    """Learnable parameters of `WideResNet` (a formula: nothing is built)."""
    last = _widths(widen)[3]
    blocks = sum(preact_block_params(*b) for b in _blocks(depth, widen))
    return channels * 16 * 9 + blocks + 2 * last + (last + 1) * num_classes
