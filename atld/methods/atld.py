"""ATLD training (docs/method.md §2), as the released code does it, with its accidents removed.

One iteration on a batch (x, y):
 1. z_nat = f_eval(x), no gradient: the constant natural latents (logits).
 2. x0 = x + U(−ε, ε) (not clamped, as the released code).
 3. L_att = BCE(D(z_nat), 1) + BCE(D(f_eval(x0)), 0), D in train mode.
 4. x_adv = clamp01(proj_ε(x0 − ε·sign(∇_{x0} L_att))): one label-free signed step that makes the
    perturbed latents *easier* for D to tell apart (it lowers D's loss).
 5. z_adv = f_train(x_adv), with graph.
 6. d_updates times: SGD on D with BCE(D(z_adv), 0) + BCE(D(z_nat), 1) + softCE(D_cls(z_nat), ỹ)
    + softCE(D_cls(z_adv), ỹ); D called separately on each batch (its BN sees each on its own).
 7. L_ce = softCE(z_adv, ỹ), L_gap = mean((z_adv − z_nat)²), s = max ∇_x L_ce / max ∇_x L_gap
    (guarded and capped, see `gap_ratio`), L = L_ce + s·scale·L_gap (scale 1/2; CIFAR-100 1/10).
 8. SGD step on f.
Variant "paper": f's loss also gets paper_d_weight·BCE(D(z_adv), 1), i.e. f minimizes D's
divergence estimate (non-saturating form). In the released code ("code", the default) D never
sends a gradient to f.

D's normalisation, how it sees a batch and the training perturbation are configurable
(docs/method.md §3.1; defaults = released): d_batch "mixed" scores the natural and perturbed
latents in one call on their shuffled concatenation (steps 3 and 6), so BatchNorm's per-call
statistics no longer carry the label; d_perturbation "pgd" replaces steps 2-4 by PGD-k on f's
cross-entropy (as PGD-AT) and D then learns to tell natural latents from attacked ones.

Cost: s needs ∇_x L_ce and ∇_x L_gap separately: two backward passes over the one forward graph
that stop at x_adv (no weight gradients); then one backward pass of L (s held constant) gives f's
parameter gradient. No extra forward pass; about one input-gradient pass more than plain CE.
"""

from __future__ import annotations

import torch

from atld.attacks.gradient import project_linf, run_attack, uniform_noise
from atld.vocab import DBatch, DPerturbation
from atld.methods.base import StepContext, StepOutput, descend
from atld.methods.losses import gap_ratio, latent_gap_loss, natural_bce, smooth_labels, soft_cross_entropy
from atld.methods.pgd_at import training_attack


def score_pair(discriminator, z_nat: torch.Tensor, z_pert: torch.Tensor, how: DBatch = DBatch.SEPARATE,
               generator: torch.Generator | None = None):
    """D on natural and perturbed latents [B, K] each: ((d_nat, c_nat), (d_pert, c_pert)), D's
    natural logits [B] and class logits [B, K]. "separate" (released): one call per batch, the
    perturbed one first, so BatchNorm in train mode normalizes each on its own; "mixed": one
    call on the shuffled concatenation, so a latent's score cannot come from which call it is in."""
    if DBatch(how) is DBatch.SEPARATE:
        pert = discriminator(z_pert)
        return discriminator(z_nat), pert
    both = torch.cat([z_nat, z_pert])
    order = torch.randperm(len(both), generator=generator, device=generator.device if generator else both.device)
    d, c = discriminator(both[order.to(both.device)])
    back = torch.empty_like(order)
    back[order] = torch.arange(len(order), device=order.device)  # undo the shuffle
    d, c = d[back.to(d.device)], c[back.to(c.device)]
    n = len(z_nat)
    return (d[:n], c[:n]), (d[n:], c[n:])


def atld_start(x: torch.Tensor, epsilon: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Step 2: x0 = x + U(−ε, ε), not clamped (as the released code)."""
    return x + uniform_noise(x, epsilon, generator)


def lmae_direction(f, discriminator, x0: torch.Tensor, z_nat: torch.Tensor, autocast=None,
                   how: DBatch = DBatch.SEPARATE, generator: torch.Generator | None = None) -> torch.Tensor:
    """Step 3: sign(∇_{x0} L_att), [B, C, H, W]; the perturbation steps against it. f in eval
    mode, D in train mode (the caller sets them); no gradient is left on the parameters."""
    x0 = x0.detach().clone().requires_grad_(True)
    with torch.enable_grad(), (autocast() if autocast else torch.autocast(x0.device.type, enabled=False)):
        if DBatch(how) is DBatch.SEPARATE:
            with torch.no_grad():  # BCE(D(z_nat), 1) is constant in x0; D still sees the batch (BN stats)
                d_nat, _ = discriminator(z_nat)
            d_0, _ = discriminator(f(x0))
        else:
            (d_nat, _), (d_0, _) = score_pair(discriminator, z_nat.detach(), f(x0), how, generator)
        loss_att = natural_bce(d_nat, natural=True) + natural_bce(d_0, natural=False)
    (grad,) = torch.autograd.grad(loss_att, x0)
    return grad.sign()


def atld_perturbation(f, discriminator, x: torch.Tensor, z_nat: torch.Tensor, epsilon: float,
                      generator: torch.Generator | None = None, autocast=None,
                      start: torch.Tensor | None = None, how: DBatch = DBatch.SEPARATE) -> torch.Tensor:
    """Steps 2-4: the label-free training perturbation, [B, C, H, W] in [0, 1] within ε of x.

    f must be in eval mode and D in train mode (the caller sets them). `start` overrides the
    random start x0 (for tests); `how`: how D sees the two batches (`score_pair`). Only
    ∂L_att/∂x0 is computed: no gradient is left on f's or D's parameters."""
    x0 = atld_start(x, epsilon, generator) if start is None else start.detach()
    direction = lmae_direction(f, discriminator, x0, z_nat, autocast, how, generator)
    return project_linf(x0 - epsilon * direction, x, epsilon)


def atld_step(ctx: StepContext, x: torch.Tensor, y: torch.Tensor) -> StepOutput:
    cfg, f, D = ctx.config, ctx.classifier, ctx.discriminator
    eps = ctx.step_epsilon
    target = smooth_labels(y, ctx.config.spec.num_classes, cfg.label_smoothing)

    f.eval()
    D.train()
    with torch.no_grad(), ctx.autocast():
        z_nat = f(x).float()
    if cfg.d_perturbation is DPerturbation.PGD:
        with ctx.autocast():
            x_adv = run_attack(f, x, y, training_attack(ctx), ctx.generator, check_finite=False)
    else:
        x_adv = atld_perturbation(f, D, x, z_nat, eps, ctx.generator, ctx.autocast, how=cfg.d_batch)

    f.train()
    x_adv.requires_grad_(True)
    with ctx.autocast():
        z_adv = f(x_adv).float()

    z_adv_const = z_adv.detach()
    for _ in range(cfg.d_updates):
        with ctx.autocast():
            (d_nat, c_nat), (d_adv, c_adv) = score_pair(D, z_nat, z_adv_const, cfg.d_batch, ctx.generator)
        loss_d = (natural_bce(d_adv, natural=False) + natural_bce(d_nat, natural=True)
                  + soft_cross_entropy(c_nat, target) + soft_cross_entropy(c_adv, target))
        descend(ctx.d_optimizer, loss_d)

    params = [p for p in f.parameters() if p.requires_grad]
    loss_ce = soft_cross_entropy(z_adv, target)
    loss_gap = latent_gap_loss(z_adv, z_nat)
    # s needs ∇_x of each term separately; these two backward passes stop at x (no weight
    # gradients), and one combined pass below gives f's parameter gradient: cheaper than two full
    # passes, since a weight gradient costs about as much as an input gradient.
    (gx_ce,) = torch.autograd.grad(loss_ce, x_adv, retain_graph=True)
    (gx_gap,) = torch.autograd.grad(loss_gap, x_adv, retain_graph=True)
    s = gap_ratio(gx_ce, gx_gap, cfg.s_max)
    loss = loss_ce + (s * cfg.resolved_gap_weight_scale) * loss_gap  # s is a constant here (no grad)
    terms = {"loss_ce": loss_ce.detach(), "loss_gap": loss_gap.detach(), "loss_d": loss_d.detach(),
             "s": s.detach()}
    if cfg.variant == "paper":
        D.eval()  # D's statistics stay those of its own updates; f sees D as it is now
        with ctx.autocast():
            d_fool, _ = D(z_adv)
        loss_fool = natural_bce(d_fool, natural=True)
        loss = loss + cfg.paper_d_weight * loss_fool
        terms["loss_fool"] = loss_fool.detach()
        D.train()

    descend(ctx.optimizer, loss, inputs=params)  # f's parameters only: D gets no gradient from f's loss
    return StepOutput(loss.detach(), terms, logits_clean=z_nat.detach(), logits_perturbed=z_adv_const,
                      d_natural=d_nat.detach().float(), d_perturbed=d_adv.detach().float())
