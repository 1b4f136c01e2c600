"""The small network of the fast adversarial-training literature (Wong, Rice & Kolter 2020, "Fast is
better than free"; the MNIST model of their released code), with a width factor and a BatchNorm
variant.

conv(C, 16k, 4x4, stride 2, pad 1)-ReLU-conv(16k, 32k, 4x4, stride 2, pad 1)-ReLU-FC(32k·H/4·W/4,
100k)-ReLU-FC(100k, K). "fast-cnn" is k = 1 (about 0.6 M multiply-adds per 28x28 image, ~30x fewer
than `small-cnn`: what lets PGD-AT on the full 60,000 MNIST images fit a 2-core CPU), "fast-cnn-2x"
k = 2, "fast-cnn-bn" k = 1 with BatchNorm after both convolutions (steadier for ATLD, whose
discriminator sees unnormalised logits). Without BatchNorm, train and eval mode compute the same
function.
"""

from __future__ import annotations

import torch
from torch import nn

from atld.models.common import Classifier, InputConv2d, LayoutFlatten, Normalize

CONV_WIDTHS = (16, 32)  # channels of the two convolutions at width 1
HIDDEN = 100  # units of the hidden FC layer at width 1


class FastCNN(Classifier):
    """Input [B, C, H, W] in [0, 1] with H and W divisible by 4; logits [B, K]; features [B, 100·width]."""

    def __init__(self, input_shape: tuple[int, int, int], num_classes: int, mean: tuple[float, ...],
                 std: tuple[float, ...], width: int = 1, batch_norm: bool = False):
        super().__init__()
        c, h, w = input_shape
        if h % 4 or w % 4:
            raise ValueError(f"FastCNN needs height and width divisible by 4, got {h}x{w}")
        c1, c2 = (k * width for k in CONV_WIDTHS)
        self.num_classes, self.feature_dim = num_classes, HIDDEN * width
        self.normalize = Normalize(mean, std)

        def conv(cin: int, cout: int, kind: type[nn.Conv2d] = nn.Conv2d) -> list[nn.Module]:
            if batch_norm:
                return [kind(cin, cout, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]
            return [kind(cin, cout, 4, stride=2, padding=1), nn.ReLU()]

        self.body = nn.Sequential(*conv(c, c1, InputConv2d), *conv(c1, c2), LayoutFlatten(),
                                  nn.Linear(c2 * (h // 4) * (w // 4), self.feature_dim), nn.ReLU())
        self.head = nn.Linear(self.feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.normalize(x))


def fast_cnn_params(input_shape: tuple[int, int, int], num_classes: int, width: int = 1,
                    batch_norm: bool = False) -> int:
    """Learnable parameters of `FastCNN` (a formula: nothing is built)."""
    c, h, w = input_shape
    c1, c2 = (k * width for k in CONV_WIDTHS)
    hidden = HIDDEN * width

    def conv(cin: int, cout: int) -> int:  # 4x4 weights, then BatchNorm's scale and shift, or a bias
        return cin * cout * 16 + (2 * cout if batch_norm else cout)

    return conv(c, c1) + conv(c1, c2) + (c2 * (h // 4) * (w // 4) + 1) * hidden + (hidden + 1) * num_classes
