"""Natural training: cross-entropy on clean images."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from atld.train.methods.base import StepContext, StepOutput


def natural_step(ctx: StepContext, x: torch.Tensor, y: torch.Tensor) -> StepOutput:
    f = ctx.classifier
    f.train()
    with ctx.autocast():
        logits = f(x)
    loss = F.cross_entropy(logits.float(), y)
    ctx.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    ctx.optimizer.step()
    return StepOutput(loss.detach(), {"loss_ce": loss.detach()}, logits_clean=logits.detach())
