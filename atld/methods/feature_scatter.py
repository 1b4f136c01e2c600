"""Feature Scattering training (Zhang & Wang, NeurIPS 2019), ATLD's main baseline (docs/method.md §6).

As the released code (github.com/Haichao-Zhang/FeatureScatter, `Attack_FeaScatter` and `ot.py`)
does it, one iteration on a batch (x, y):
 1. z_nat = f_eval(x), no gradient: the natural latents (logits).
 2. x0 = x + U(−ε, ε) (not clamped, as the released code).
 3. L_ot = Σ_ij T_ij C_ij, the entropic optimal-transport distance between the batch of natural
    latents and the batch of perturbed latents f_eval(x0): C_ij = max(0, 1 − cos(z_nat_i, z0_j)),
    uniform marginals 1/B, T = Sinkhorn plan (ε_reg = 0.01, at most 100 log-domain iterations).
    Gradients flow through the unrolled Sinkhorn iterations, as in the released code. No labels:
    the perturbation "scatters" the batch's latents as a whole.
 4. x_adv = clamp01(proj_ε(x0 + ε·sign(∇_{x0} L_ot))): one ascent step of size ε.
 5. L = softCE(f_train(x_adv), ỹ) with label smoothing δ = 0.5 (true class 1 − δ); SGD on f.
Units: ε in [0, 1] pixel units (the released code's 8/255·2 on [−1, 1] images is our 8/255).
Deliberate differences: log-sum-exp without the released code's "+1e-6" inside the log (that
term slightly breaks the marginals and is only a NaN guard, which logsumexp does not need); the
perturbation is computed without the released code's per-batch deep copy of the network.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from atld.attacks.gradient import project_linf, uniform_noise
from atld.methods.base import StepContext, StepOutput, descend
from atld.methods.losses import smooth_labels, soft_cross_entropy

SINKHORN_REG = 0.01  # entropic regularisation of the OT plan, in cosine-cost units (released code)
SINKHORN_MAX_ITER = 100  # Sinkhorn iterations at most (released code: 100)
SINKHORN_TOL = 0.1  # stop when Σ|Δu| < tol, u the row potential (released code: 10^-1)
COSINE_EPS = 1e-6  # norm floor inside the cosine similarity (released code)


def cosine_cost(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """[M, D], [N, D] -> [M, N] cost max(0, 1 − cos(a_i, b_j)) in [0, 2] (released code's
    `cost_matrix_cos`)."""
    return (1 - F.cosine_similarity(a[:, None, :], b[None, :, :], dim=2, eps=COSINE_EPS)).clamp_min(0)


def sinkhorn_plan(cost: torch.Tensor, reg: float = SINKHORN_REG, max_iter: int = SINKHORN_MAX_ITER,
                  tol: float = SINKHORN_TOL) -> torch.Tensor:
    """Entropic OT plan between uniform marginals for a [M, N] cost: T ∈ R^{M×N}, rows summing to
    about 1/M and columns to 1/N, found by log-domain Sinkhorn (stable for small `reg`).

    Differentiable w.r.t. `cost` through the unrolled iterations (as the released code). Stops,
    as the released code, once Σ_i |u_i − u_i'| < tol (u the row potential), tested on the host
    after each iteration. With the released settings (reg 0.01, tol 0.1) that test passes at the
    2nd iteration in practice (measured on digits, at initialisation and after training), so a
    training step pays two small host reads; a device-side test would have to run all max_iter
    iterations instead (50x the work). tol = 0 never stops early."""
    m, n = cost.shape
    if cost.dtype != torch.float64:  # float64 stays (gradient checks); half precision is lifted
        cost = cost.float()
    log_mu = torch.full((m,), -math.log(m), device=cost.device, dtype=cost.dtype)
    log_nu = torch.full((n,), -math.log(n), device=cost.device, dtype=cost.dtype)
    u = torch.zeros(m, device=cost.device, dtype=cost.dtype)
    v = torch.zeros(n, device=cost.device, dtype=cost.dtype)

    def scaled(u, v):  # (−C_ij + u_i + v_j) / reg
        return (-cost + u[:, None] + v[None, :]) / reg

    for _ in range(max_iter):
        u_prev = u
        u = reg * (log_mu - torch.logsumexp(scaled(u, v), dim=1)) + u
        v = reg * (log_nu - torch.logsumexp(scaled(u, v), dim=0)) + v
        if tol > 0 and float((u - u_prev).detach().abs().sum()) < tol:
            break
    return torch.exp(scaled(u, v))


def ot_distance(z_a: torch.Tensor, z_b: torch.Tensor, reg: float = SINKHORN_REG,
                max_iter: int = SINKHORN_MAX_ITER, tol: float = SINKHORN_TOL) -> torch.Tensor:
    """Feature Scattering's objective: Σ_ij T_ij C_ij for the cosine cost between two batches of
    latents [M, K] and [N, K]; a 0-dim tensor, differentiable w.r.t. both (plan included)."""
    if z_a.dtype != torch.float64 or z_b.dtype != torch.float64:
        z_a, z_b = z_a.float(), z_b.float()
    cost = cosine_cost(z_a, z_b)
    return (sinkhorn_plan(cost, reg, max_iter, tol) * cost).sum()


def feature_scatter_perturbation(f, x: torch.Tensor, z_nat: torch.Tensor, epsilon: float,
                                 generator: torch.Generator | None = None, autocast=None) -> torch.Tensor:
    """Steps 2-4: the label-free scattering perturbation, [B, C, H, W] in [0, 1] within ε of x.

    f must be in eval mode (the caller sets it); z_nat = f(x) [B, K], constant. Only ∂L_ot/∂x0
    is computed: no gradient is left on f's parameters."""
    x0 = (x + uniform_noise(x, epsilon, generator)).requires_grad_(True)  # not clamped, as the released code
    with torch.enable_grad():
        with autocast() if autocast else torch.autocast(x.device.type, enabled=False):
            z0 = f(x0)
        loss_ot = ot_distance(z_nat.detach(), z0)
    (grad,) = torch.autograd.grad(loss_ot, x0)
    return project_linf(x0.detach() + epsilon * grad.sign(), x, epsilon)


def feature_scatter_step(ctx: StepContext, x: torch.Tensor, y: torch.Tensor) -> StepOutput:
    cfg, f = ctx.config, ctx.classifier
    target = smooth_labels(y, cfg.spec.num_classes, cfg.label_smoothing)
    f.eval()
    with torch.no_grad(), ctx.autocast():
        z_nat = f(x).float()
    x_adv = feature_scatter_perturbation(f, x, z_nat, ctx.step_epsilon, ctx.generator, ctx.autocast)
    f.train()
    with ctx.autocast():
        logits = f(x_adv)
    loss = soft_cross_entropy(logits, target)
    descend(ctx.optimizer, loss)
    return StepOutput(loss.detach(), {"loss_ce": loss.detach()},
                      logits_clean=z_nat.detach(), logits_perturbed=logits.detach().float())
