"""What a training method is: one step over a batch, returning metrics as device tensors."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from atld.vocab import Method

if TYPE_CHECKING:
    from atld.config.train import TrainConfig


@dataclass
class StepContext:
    """Everything a method's step needs besides the batch."""
    config: TrainConfig
    classifier: nn.Module
    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    discriminator: nn.Module | None = None
    d_optimizer: torch.optim.Optimizer | None = None
    autocast: Callable = None  # returns a context manager: bf16 autocast or a no-op
    epsilon: float | None = None  # this step's training ε, [0, 1] pixel units (the trainer ramps it); None: full ε

    @property
    def step_epsilon(self) -> float:
        """The training ε of this step ([0, 1] pixel units): the ramped value, else the config's."""
        return self.config.resolved_epsilon if self.epsilon is None else self.epsilon


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


def descend(optimizer: torch.optim.Optimizer, loss: torch.Tensor, inputs: list[torch.Tensor] | None = None) -> None:
    """One optimizer step on `loss`: clear the gradients, backpropagate (to `inputs` only, when
    given, so other networks get no gradient), step."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward(inputs=inputs)
    optimizer.step()


@dataclass(frozen=True)
class MethodSpec:
    """One row of the method table (`atld.methods.METHODS`): a method and its step function."""
    method: Method
    step: Callable[[StepContext, torch.Tensor, torch.Tensor], StepOutput]

    @property
    def name(self) -> str:
        return self.method.value

    @property
    def discriminator(self) -> bool:
        return self.method.discriminator
