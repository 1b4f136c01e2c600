"""Loss terms of ATLD and Feature Scattering training (docs/method.md §2). Each is a pure function
over tensors."""

from __future__ import annotations

import torch
import torch.nn.functional as F

RATIO_TINY = 1e-12  # a gap-gradient maximum at or below this counts as zero


def smooth_labels(y: torch.Tensor, num_classes: int, delta: float) -> torch.Tensor:
    """Label smoothing δ (docs/method.md §1): [B] int64 -> [B, K] with 1 − δ on the true class and
    δ / (K − 1) on every other class; rows sum to 1."""
    off = delta / (num_classes - 1)
    target = torch.full((y.shape[0], num_classes), off, device=y.device, dtype=torch.float32)
    return target.scatter_(1, y[:, None], 1.0 - delta)


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of −Σ_k t_k log softmax(z)_k (the official `softCrossEntropy`)."""
    return -(target * F.log_softmax(logits.float(), dim=1)).sum(1).mean()


def latent_gap_loss(z_adv: torch.Tensor, z_nat: torch.Tensor) -> torch.Tensor:
    """mean((z_adv − z_nat)²): the released code's "gan_loss", a logit-pairing term (z_nat constant)."""
    return (z_adv.float() - z_nat.float().detach()).pow(2).mean()


def natural_bce(d_logit: torch.Tensor, natural: bool) -> torch.Tensor:
    """BCE of D's "natural" head against 1 (natural) or 0 (perturbed), computed from logits so it
    never takes log(0) (the released code applies sigmoid then BCE)."""
    target = torch.ones_like(d_logit) if natural else torch.zeros_like(d_logit)
    return F.binary_cross_entropy_with_logits(d_logit.float(), target.float())


def gap_ratio(grad_ce: torch.Tensor, grad_gap: torch.Tensor, s_max: float) -> torch.Tensor:
    """s = max(∇L_ce) / max(∇L_gap) over the whole batch tensor (signed max, as the released code),
    guarded: a zero, negative or tiny denominator gives s_max, a negative numerator gives 0, and s
    is capped at s_max. The cap is our documented deviation: at initialisation z_adv ≈ z_nat, so
    ∇L_gap is tiny and the uncapped s (about 40 on digits) stalls or diverges training.
    Returns a 0-dim tensor on the gradients' device (no host synchronisation)."""
    num = grad_ce.detach().float().max()
    den = grad_gap.detach().float().max()
    ok = den > RATIO_TINY
    ratio = (num / torch.where(ok, den, torch.ones_like(den))).clamp(0.0, s_max)
    return torch.where(ok, ratio, torch.full_like(ratio, s_max))
