"""What a training method is: one step over a batch, returning metrics as device tensors."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from atld.train.config import TrainConfig


@dataclass
class StepContext:
    """Everything a method's step needs besides the batch."""
    config: TrainConfig
    classifier: nn.Module
    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    discriminator: nn.Module | None = None
    d_optimizer: torch.optim.Optimizer | None = None
    autocast: object = None  # a callable returning a context manager (bf16 autocast or a no-op)
    extras: dict = field(default_factory=dict)


@dataclass
class StepOutput:
    """Per-batch results, all detached device tensors (no .item() in the hot loop).

    loss_terms: name -> 0-dim tensor (batch means); logits_clean / logits_perturbed: [B, K] or
    None; d_natural / d_perturbed: D's natural logits on the two latents (ATLD) or None."""
    loss: torch.Tensor
    loss_terms: dict[str, torch.Tensor]
    logits_clean: torch.Tensor | None = None
    logits_perturbed: torch.Tensor | None = None
    d_natural: torch.Tensor | None = None
    d_perturbed: torch.Tensor | None = None
