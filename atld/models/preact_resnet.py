"""PreAct ResNet-18 (He et al., 2016), the usual CIFAR layout."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from atld.models.common import Classifier, InputConv2d, Normalize


class PreActBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(cin), nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(cout), nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.shortcut = (nn.Conv2d(cin, cout, 1, stride, bias=False)
                         if stride != 1 or cin != cout else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


def preact_block_params(cin: int, cout: int, stride: int) -> int:
    """Learnable parameters of `PreActBlock` (two BatchNorms, two 3x3 convs, maybe a 1x1 shortcut)."""
    shortcut = cin * cout if stride != 1 or cin != cout else 0
    return 2 * cin + cin * cout * 9 + 2 * cout + cout * cout * 9 + shortcut


PREACT18_LAYERS = ((64, 1), (128, 2), (256, 2), (512, 2))  # (width, stride) of each pair of blocks


class PreActResNet18(Classifier):
    def __init__(self, input_shape: tuple[int, int, int], num_classes: int,
                 mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        self.num_classes, self.feature_dim = num_classes, 512
        self.normalize = Normalize(mean, std)
        self.stem = InputConv2d(input_shape[0], 64, 3, 1, 1, bias=False)
        layers, cin = [], 64
        for cout, stride in PREACT18_LAYERS:
            layers += [PreActBlock(cin, cout, stride), PreActBlock(cout, cout, 1)]
            cin = cout
        self.layers = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(512)
        self.head = nn.Linear(512, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layers(self.stem(self.normalize(x)))
        out = F.relu(self.bn(out))
        return F.adaptive_avg_pool2d(out, 1).flatten(1)


def preact_resnet18_params(channels: int, num_classes: int) -> int:
    """Learnable parameters of `PreActResNet18` (a formula: nothing is built)."""
    total, cin = channels * 64 * 9, 64
    for cout, stride in PREACT18_LAYERS:
        total += preact_block_params(cin, cout, stride) + preact_block_params(cout, cout, 1)
        cin = cout
    return total + 2 * 512 + 513 * num_classes
