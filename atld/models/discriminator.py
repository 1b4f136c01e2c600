"""ATLD's discriminator D, rebuilt as the residual MLP it effectively is (docs/method.md §3).

The official D is a WRN-28-5 fed the logit vector as a [B, K, 1, 1] map; on a 1x1 map each 3x3
conv only uses its centre tap, so it is a pre-activation residual MLP with BatchNorm. Here:
K -> widths[0], then one group of `blocks_per_group` pre-activation blocks per further width,
BN-ReLU, and two heads: a "natural" logit (sigmoid = P(natural); natural = 1, perturbed = 0) and
a K-way class head.

`DiscriminatorSpec.norm` picks the normalisation layers (docs/method.md §3.1): BatchNorm as
released, or a per-latent one (none, LayerNorm, GroupNorm) with which a latent's score never
depends on the rest of the batch it is scored in, in train mode as in eval mode.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from atld.vocab import DNorm, parse
from atld.errors import check_int_at_least, require, shown

MAX_WIDTHS = 16  # layers of widths at most
MAX_WIDTH = 8192  # units per layer at most
MAX_BLOCKS = 64  # residual blocks per width at most
GROUPS = 8  # GroupNorm: groups per layer at most (gcd with the width, so every width works)


@dataclass(frozen=True)
class DiscriminatorSpec:
    widths: tuple[int, ...] = (16, 80, 160, 320)  # official size (WRN-28-5 layout)
    blocks_per_group: int = 4  # official: (28 - 4) / 6
    norm: DNorm = DNorm.BATCH  # as released

    def __post_init__(self):
        object.__setattr__(self, "norm", parse(DNorm, self.norm, "discriminator normalisation"))
        require(isinstance(self.widths, tuple) and 2 <= len(self.widths) <= MAX_WIDTHS
                and all(isinstance(w, int) and not isinstance(w, bool) and w >= 1 for w in self.widths),
                f"discriminator widths must be 2 to {MAX_WIDTHS} positive integers, got {shown(self.widths, 80)}")
        require(max(self.widths) <= MAX_WIDTH, f"discriminator widths are absurdly large: {shown(self.widths)}")
        check_int_at_least("discriminator blocks_per_group", self.blocks_per_group, 1)
        require(self.blocks_per_group <= MAX_BLOCKS, f"discriminator blocks_per_group must be <= {MAX_BLOCKS}")


OFFICIAL_DISCRIMINATOR = DiscriminatorSpec()
SMALL_DISCRIMINATOR = DiscriminatorSpec(widths=(16, 32, 64), blocks_per_group=1)


def discriminator_params(num_classes: int, spec: DiscriminatorSpec) -> int:
    """Learnable parameters of `Discriminator(num_classes, spec)` (a formula: nothing is built)."""
    affine = 0 if spec.norm is DNorm.NONE else 2  # learnable scale and shift per unit (BN, LN and GN alike)
    total, din = num_classes * spec.widths[0], spec.widths[0]
    for dout in spec.widths[1:]:
        for _ in range(spec.blocks_per_group):  # norm, fc, norm, fc, and a shortcut when the width changes
            total += affine * din + din * dout + affine * dout + dout * dout + (din * dout if din != dout else 0)
            din = dout
    return total + affine * din + (din + 1) + (din + 1) * num_classes


def norm_layer(norm: DNorm, width: int) -> nn.Module:
    """One normalisation layer of D over `width` units."""
    if norm is DNorm.BATCH:
        return nn.BatchNorm1d(width)
    if norm is DNorm.LAYER:
        return nn.LayerNorm(width)
    if norm is DNorm.GROUP:
        return nn.GroupNorm(math.gcd(width, GROUPS), width)
    return nn.Identity()


class _PreActLinearBlock(nn.Module):
    def __init__(self, din: int, dout: int, norm: DNorm = DNorm.BATCH):
        super().__init__()
        self.bn1, self.fc1 = norm_layer(norm, din), nn.Linear(din, dout, bias=False)
        self.bn2, self.fc2 = norm_layer(norm, dout), nn.Linear(dout, dout, bias=False)
        self.shortcut = nn.Linear(din, dout, bias=False) if din != dout else None

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(h))
        shortcut = self.shortcut(out) if self.shortcut is not None else h
        return self.fc2(F.relu(self.bn2(self.fc1(out)))) + shortcut


class Discriminator(nn.Module):
    """D(z): z logits [B, K] -> (natural logit [B], class logits [B, K])."""

    def __init__(self, num_classes: int, spec: DiscriminatorSpec = OFFICIAL_DISCRIMINATOR):
        super().__init__()
        self.num_classes, self.spec = num_classes, spec
        self.stem = nn.Linear(num_classes, spec.widths[0], bias=False)
        blocks, din = [], spec.widths[0]
        for dout in spec.widths[1:]:
            for _ in range(spec.blocks_per_group):
                blocks.append(_PreActLinearBlock(din, dout, spec.norm))
                din = dout
        self.blocks = nn.Sequential(*blocks)
        self.bn = norm_layer(spec.norm, din)
        self.natural_head = nn.Linear(din, 1)
        self.class_head = nn.Linear(din, num_classes)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = F.relu(self.bn(self.blocks(self.stem(z))))
        return self.natural_head(h).squeeze(1), self.class_head(h)

    def natural_probability(self, z: torch.Tensor) -> torch.Tensor:
        """P(natural | z) in [0, 1], shape [B]."""
        return torch.sigmoid(self(z)[0])
