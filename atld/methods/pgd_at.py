"""PGD adversarial training (Madry et al., 2018): CE on PGD-k examples (k = 10, step ε/4;
docs/method.md §5).

The attack runs with the classifier in eval mode (BatchNorm statistics are not polluted by the
attack's intermediate points); the update runs in train mode."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from atld.attacks.gradient import AttackConfig, run_attack
from atld.methods.base import StepContext, StepOutput, descend


def training_attack(ctx: StepContext) -> AttackConfig:
    """The PGD-k training attack of this step (PGD-AT, and ATLD with d_perturbation = pgd)."""
    cfg = ctx.config
    eps, full = ctx.step_epsilon, cfg.resolved_epsilon
    # while ε ramps up, the step keeps its ratio to ε (ε/4 by default)
    step_size = cfg.resolved_pgd_step_size * (eps / full if full > 0 and eps != full else 1.0)
    return AttackConfig("pgd", eps, steps=cfg.pgd_steps, step_size=step_size, random_start=True)


def pgd_at_step(ctx: StepContext, x: torch.Tensor, y: torch.Tensor) -> StepOutput:
    f = ctx.classifier
    attack = training_attack(ctx)
    f.eval()
    with ctx.autocast():
        with torch.no_grad():
            logits_clean = f(x)
        x_adv = run_attack(f, x, y, attack, ctx.generator, check_finite=False)  # no host sync
        f.train()
        logits = f(x_adv)
    loss = F.cross_entropy(logits.float(), y)
    descend(ctx.optimizer, loss)
    return StepOutput(loss.detach(), {"loss_ce": loss.detach()},
                      logits_clean=logits_clean.detach(), logits_perturbed=logits.detach())
