"""Pieces every classifier shares: input normalization inside the model, and the features/head split."""

from __future__ import annotations

import contextlib

import torch
from torch import nn


class Normalize(nn.Module):
    """(x - mean) / std per channel. Lives inside the model so every attack sees [0, 1] inputs."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class Classifier(nn.Module):
    """Base for classifiers: `features(x)` gives the penultimate features, `head` maps them to logits.

    Contract: x is float [B, C, H, W] in [0, 1] on the model's device; `forward` returns logits
    [B, K]; `forward_with_features` returns (logits [B, K], features [B, F]).
    """

    num_classes: int
    feature_dim: int

    def features(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def forward_with_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.features(x)
        return self.head(feats), feats


@contextlib.contextmanager
def eval_mode(*modules: nn.Module):
    """Put modules in eval mode for the block and restore each one's previous mode after."""
    modes = [m.training for m in modules]
    try:
        for m in modules:
            m.eval()
        yield
    finally:
        for m, mode in zip(modules, modes):
            m.train(mode)
