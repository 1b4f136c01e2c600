"""Classifiers whose state dicts have RobustBench's parameter names and shapes, so a checkpoint
from its model zoo (or any code using these layouts) loads into the lab without renaming.

Written from the public architecture code of RobustBench (robustbench/model_zoo/architectures:
wide_resnet.py, dm_wide_resnet.py, resnet.py); the forward passes compute the same functions:

| family | RobustBench class | keys (first ones) | head |
|---|---|---|---|
| `rb-wrn-<depth>-<widen>` | `WideResNet` (TRADES code) | conv1, block1.layer.0.bn1, ..convShortcut | fc |
| `dm-wrn-<depth>-<widen>[-swish]` | `DMWideResNet` (DeepMind) | init_conv, layer.0.block.0.batchnorm_0 | logits |
| `dm-preact-resnet18[-swish]` | `DMPreActResNet` | conv_2d, layer_0.0.batchnorm_0 | logits |
| `rb-preact-resnet18` | `PreActResNet18()` | conv1, layer1.0.bn1, ..shortcut.0 | linear |
| `rb-preact-resnet18-bn` | `PreActResNet(PreActBlockV2, bn_before_fc=True)` | as above + bn | linear |
| `rb-resnet18` | `ResNet18()` | conv1, bn1, layer1.0.conv1, ..shortcut.0/1 | linear |

Differences that do not change any output on 32x32 inputs: the input normalization is a
`Normalize` module with non-persistent buffers (RobustBench puts it inside DM's models and outside
the others; here it is always inside, given by the imported run), the final pooling is adaptive
(RobustBench's fixed 8x8 / 4x4 average on 32x32 inputs), and Swish is `nn.SiLU` (the same function
and gradient). RobustBench's `sub_block1` (weights some WRN checkpoints carry but the forward pass
never uses) is not a module here: the importer checks and drops it (`atld.runs.importer`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from atld.models.common import Classifier, InputConv2d, Normalize


def _bn_params(width: int) -> int:
    return 2 * width  # weight and bias (running statistics are buffers)


def _wrn_widths(widen: int) -> tuple[int, int, int, int]:
    return 16, 16 * widen, 32 * widen, 64 * widen


def _wrn_blocks(depth: int, widen: int) -> list[list[tuple[int, int, int]]]:
    """(in width, out width, stride) of each block, per group: (depth − 4) / 6 blocks in 3 groups."""
    widths, groups, cin = _wrn_widths(widen), [], 16
    for cout, stride in zip(widths[1:], (1, 2, 2)):
        groups.append([(cin if i == 0 else cout, cout, stride if i == 0 else 1) for i in range((depth - 4) // 6)])
        cin = cout
    return groups


def _wrn_block_params(cin: int, cout: int) -> int:
    """Both WRN blocks (TRADES and DeepMind): two BatchNorms, two 3x3 convs, a 1x1 shortcut when
    the width changes."""
    return _bn_params(cin) + 9 * cin * cout + _bn_params(cout) + 9 * cout * cout + (cin * cout if cin != cout else 0)


def wrn_params(channels: int, num_classes: int, depth: int, widen: int) -> int:
    """Learnable parameters of `RBWideResNet` and `DMWideResNet` (the same counts; nothing built)."""
    last = _wrn_widths(widen)[3]
    blocks = sum(_wrn_block_params(cin, cout) for group in _wrn_blocks(depth, widen) for cin, cout, _ in group)
    return 9 * channels * 16 + blocks + _bn_params(last) + (last + 1) * num_classes


# ----------------------------------------------------------------------------- RobustBench / TRADES WideResNet

class _RBWideBlock(nn.Module):
    """Pre-activation block; when the width changes, the shortcut reads the activated input."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(cin), nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(cout), nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.convShortcut = nn.Conv2d(cin, cout, 1, stride, 0, bias=False) if cin != cout else None  # noqa: N815

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = F.relu(self.bn1(x))
        out = self.conv2(F.relu(self.bn2(self.conv1(act))))
        return out + (x if self.convShortcut is None else self.convShortcut(act))


class _RBGroup(nn.Module):
    def __init__(self, blocks: list[tuple[int, int, int]], block: type[nn.Module]):
        super().__init__()
        self.layer = nn.Sequential(*(block(*b) for b in blocks))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


class RBWideResNet(Classifier):
    """RobustBench's `WideResNet(depth, widen_factor)` layout (conv1, block1..3, bn1, fc)."""

    def __init__(self, input_shape: tuple[int, int, int], num_classes: int, mean: tuple[float, ...],
                 std: tuple[float, ...], depth: int = 28, widen: int = 10):
        super().__init__()
        widths = _wrn_widths(widen)
        self.num_classes, self.feature_dim = num_classes, widths[3]
        self.normalize = Normalize(mean, std)
        self.conv1 = InputConv2d(input_shape[0], 16, 3, 1, 1, bias=False)
        groups = _wrn_blocks(depth, widen)
        self.block1, self.block2, self.block3 = (_RBGroup(g, _RBWideBlock) for g in groups)
        self.bn1 = nn.BatchNorm2d(widths[3])
        self.fc = nn.Linear(widths[3], num_classes)

    @property
    def head(self) -> nn.Linear:
        return self.fc

    def features(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block3(self.block2(self.block1(self.conv1(self.normalize(x)))))
        return F.adaptive_avg_pool2d(F.relu(self.bn1(out)), 1).flatten(1)


# ----------------------------------------------------------------------------- DeepMind WideResNet / PreAct

def _same_pad(x: torch.Tensor, stride: int) -> torch.Tensor:
    """TensorFlow's SAME padding of a 3x3 convolution: 1 on every side at stride 1, only right and
    bottom at stride 2 (DeepMind's models were trained that way; padding=1 would shift every map)."""
    return F.pad(x, (1, 1, 1, 1) if stride == 1 else (0, 1, 0, 1))


def _activation(swish: bool) -> nn.Module:
    return nn.SiLU() if swish else nn.ReLU()


class _DMWideBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, swish: bool):
        super().__init__()
        self.stride = stride
        self.batchnorm_0, self.relu_0 = nn.BatchNorm2d(cin), _activation(swish)
        self.conv_0 = nn.Conv2d(cin, cout, 3, stride, 0, bias=False)
        self.batchnorm_1, self.relu_1 = nn.BatchNorm2d(cout), _activation(swish)
        self.conv_1 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.shortcut = nn.Conv2d(cin, cout, 1, stride, 0, bias=False) if cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = self.relu_0(self.batchnorm_0(x))
        out = self.conv_1(self.relu_1(self.batchnorm_1(self.conv_0(_same_pad(act, self.stride)))))
        return out + (x if self.shortcut is None else self.shortcut(act))


class _DMGroup(nn.Module):
    def __init__(self, blocks: list[tuple[int, int, int]], swish: bool):
        super().__init__()
        self.block = nn.Sequential(*(_DMWideBlock(*b, swish=swish) for b in blocks))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class DMWideResNet(Classifier):
    """DeepMind's `DMWideResNet(depth, width)` layout (init_conv, layer.N.block.M, batchnorm, logits),
    used by many leaderboard entries (WRN-70-16 among them); ReLU or Swish."""

    def __init__(self, input_shape: tuple[int, int, int], num_classes: int, mean: tuple[float, ...],
                 std: tuple[float, ...], depth: int = 28, widen: int = 10, swish: bool = False):
        super().__init__()
        widths = _wrn_widths(widen)
        self.num_classes, self.feature_dim = num_classes, widths[3]
        self.normalize = Normalize(mean, std)
        self.init_conv = InputConv2d(input_shape[0], 16, 3, 1, 1, bias=False)
        self.layer = nn.Sequential(*(_DMGroup(g, swish) for g in _wrn_blocks(depth, widen)))
        self.batchnorm, self.relu = nn.BatchNorm2d(widths[3]), _activation(swish)
        self.logits = nn.Linear(widths[3], num_classes)

    @property
    def head(self) -> nn.Linear:
        return self.logits

    def features(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layer(self.init_conv(self.normalize(x)))
        return F.adaptive_avg_pool2d(self.relu(self.batchnorm(out)), 1).flatten(1)


RESNET18_LAYERS = ((64, 1), (128, 2), (256, 2), (512, 2))  # (width, first stride) of each pair of blocks


def _resnet18_blocks() -> list[list[tuple[int, int, int]]]:
    out, cin = [], 64
    for cout, stride in RESNET18_LAYERS:
        out.append([(cin, cout, stride), (cout, cout, 1)])
        cin = cout
    return out


class _DMPreActBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, swish: bool):
        super().__init__()
        self.stride = stride
        self.batchnorm_0, self.relu_0 = nn.BatchNorm2d(cin), _activation(swish)
        self.conv_2d_1 = nn.Conv2d(cin, cout, 3, stride, 0, bias=False)
        self.batchnorm_1, self.relu_1 = nn.BatchNorm2d(cout), _activation(swish)
        self.conv_2d_2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        # DeepMind's shortcut is a 3x3 convolution of the raw input (not the usual 1x1 of the activated one)
        self.shortcut = nn.Conv2d(cin, cout, 3, stride, 0, bias=False) if stride != 1 or cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu_0(self.batchnorm_0(x))
        shortcut = x if self.shortcut is None else self.shortcut(_same_pad(x, self.stride))
        out = self.conv_2d_2(self.relu_1(self.batchnorm_1(self.conv_2d_1(_same_pad(out, self.stride)))))
        return out + shortcut


class DMPreActResNet18(Classifier):
    """DeepMind's `DMPreActResNet(depth=18)` layout (conv_2d, layer_0..3, batchnorm, logits)."""

    def __init__(self, input_shape: tuple[int, int, int], num_classes: int, mean: tuple[float, ...],
                 std: tuple[float, ...], swish: bool = False):
        super().__init__()
        self.num_classes, self.feature_dim = num_classes, 512
        self.normalize = Normalize(mean, std)
        self.conv_2d = InputConv2d(input_shape[0], 64, 3, 1, 1, bias=False)
        for i, group in enumerate(_resnet18_blocks()):
            self.add_module(f"layer_{i}", nn.Sequential(*(_DMPreActBlock(*b, swish=swish) for b in group)))
        self.batchnorm, self.relu = nn.BatchNorm2d(512), _activation(swish)
        self.logits = nn.Linear(512, num_classes)

    @property
    def head(self) -> nn.Linear:
        return self.logits

    def features(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv_2d(self.normalize(x))
        for i in range(4):
            out = getattr(self, f"layer_{i}")(out)
        return F.adaptive_avg_pool2d(self.relu(self.batchnorm(out)), 1).flatten(1)


# ----------------------------------------------------------------------------- RobustBench ResNet-18 / PreAct

class _RBPreActBlock(nn.Module):
    """RobustBench's `PreActBlock` (shortcut of the raw input) or, with `v2`, `PreActBlockV2`
    (shortcut of the activated input)."""

    def __init__(self, cin: int, cout: int, stride: int, v2: bool):
        super().__init__()
        self.v2 = v2
        self.bn1, self.conv1 = nn.BatchNorm2d(cin), nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(cout), nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(out if self.v2 else x) if hasattr(self, "shortcut") else x
        return self.conv2(F.relu(self.bn2(self.conv1(out)))) + shortcut


class _RBBasicBlock(nn.Module):
    """RobustBench's (post-activation) ResNet `BasicBlock`."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
        self.conv2, self.bn2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(out + self.shortcut(x))


class RBResNet18(Classifier):
    """RobustBench's `ResNet18()` (conv1, bn1, layer1..4, linear), or with `preact` its
    `PreActResNet(PreActBlock | PreActBlockV2, [2, 2, 2, 2], bn_before_fc)` (conv1, layer1..4,
    [bn], linear)."""

    def __init__(self, input_shape: tuple[int, int, int], num_classes: int, mean: tuple[float, ...],
                 std: tuple[float, ...], preact: bool = False, v2: bool = False):
        super().__init__()
        self.num_classes, self.feature_dim, self.preact = num_classes, 512, preact
        self.normalize = Normalize(mean, std)
        self.conv1 = InputConv2d(input_shape[0], 64, 3, 1, 1, bias=False)
        self.bn1 = None if preact else nn.BatchNorm2d(64)
        for i, group in enumerate(_resnet18_blocks()):
            blocks = (_RBPreActBlock(*b, v2=v2) if preact else _RBBasicBlock(*b) for b in group)
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
        self.bn = nn.BatchNorm2d(512) if preact and v2 else None  # bn_before_fc goes with PreActBlockV2
        self.linear = nn.Linear(512, num_classes)

    @property
    def head(self) -> nn.Linear:
        return self.linear

    def features(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.normalize(x))
        if self.bn1 is not None:
            out = F.relu(self.bn1(out))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        if self.bn is not None:
            out = F.relu(self.bn(out))
        return F.adaptive_avg_pool2d(out, 1).flatten(1)


def resnet18_params(channels: int, num_classes: int, kind: str) -> int:
    """Learnable parameters of `RBResNet18` ("basic", "preact", "preact-v2") and `DMPreActResNet18`
    ("dm"), from a formula (nothing is built)."""
    total = 9 * channels * 64 + (_bn_params(64) if kind == "basic" else 0)
    for group in _resnet18_blocks():
        for cin, cout, stride in group:
            convs = 9 * cin * cout + 9 * cout * cout
            changes = stride != 1 or cin != cout
            if kind == "basic":
                total += convs + 2 * _bn_params(cout) + ((cin * cout + _bn_params(cout)) if changes else 0)
            else:
                shortcut = (9 if kind == "dm" else 1) * cin * cout if changes else 0
                total += convs + _bn_params(cin) + _bn_params(cout) + shortcut
    last_bn = _bn_params(512) if kind in ("dm", "preact-v2") else 0
    return total + last_bn + 513 * num_classes
