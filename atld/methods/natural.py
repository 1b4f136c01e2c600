"""Natural training: cross-entropy on clean images."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from atld.methods.base import StepContext, StepOutput, descend


def natural_step(ctx: StepContext, x: torch.Tensor, y: torch.Tensor) -> StepOutput:
    f = ctx.classifier
    f.train()
    with ctx.autocast():
        logits = f(x)
    loss = F.cross_entropy(logits.float(), y)
    descend(ctx.optimizer, loss)
    return StepOutput(loss.detach(), {"loss_ce": loss.detach()}, logits_clean=logits.detach())
