"""White-box ℓ∞ attacks: FGSM, PGD-k on cross-entropy, CW-k (PGD on the Carlini-Wagner margin).

Contract for every attack:
    x: float [B, C, H, W] in [0, 1], y: int64 [B], both on the model's device.
    Returns x_adv with ‖x_adv − x‖∞ ≤ ε and x_adv in [0, 1], detached.
    The model's mode (train/eval) is left as it is (evaluation puts it in eval mode first) and no
    gradient is left on its parameters (only ∂loss/∂x is computed).
Units: ε and step sizes are in [0, 1] pixel units (see `atld.data.registry`).

Definitions (method doc §5): FGSM = one step of size ε from a random start; PGD-k = k signed
steps of size α on CE; CW-k = k signed steps of size α on relu(z_y − max_{j≠y} z_j + κ), κ = 50,
minimized (i.e. the margin is pushed down). The update order (step, project to the ε-ball,
clip to [0, 1]) is foolbox's, so with random start off the two agree bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from atld.errors import check_choice, check_finite_range, check_int_at_least, require

ATTACK_KINDS = ("fgsm", "pgd", "cw")
CW_KAPPA = 50.0  # CW-k confidence κ (method doc §5)


@dataclass(frozen=True)
class AttackConfig:
    kind: str  # "fgsm" | "pgd" | "cw"
    epsilon: float  # ℓ∞ radius, [0, 1] pixel units
    steps: int = 20  # number of signed steps (FGSM: always 1)
    step_size: float | None = None  # [0, 1] units; None -> ε/4 (PGD/CW), ε (FGSM)
    random_start: bool = True  # start from x + U(−ε, ε)
    kappa: float = CW_KAPPA  # CW margin confidence (logit units)

    def __post_init__(self):
        check_choice("attack", self.kind, ATTACK_KINDS)
        check_finite_range("epsilon", self.epsilon, 0.0, 1.0, "([0, 1] pixel units)")
        check_int_at_least("attack steps", self.steps, 1)
        require(self.steps <= 100_000, f"attack steps must be <= 100000, got {self.steps}")
        if self.step_size is not None:
            check_finite_range("attack step size", self.step_size, 0.0, 1.0, "([0, 1] pixel units)")
        check_finite_range("kappa", self.kappa, 0.0, 1e6)

    @property
    def alpha(self) -> float:
        """The step size actually used."""
        if self.kind == "fgsm":
            return self.epsilon if self.step_size is None else self.step_size
        return self.epsilon / 4 if self.step_size is None else self.step_size

    @property
    def num_steps(self) -> int:
        return 1 if self.kind == "fgsm" else self.steps

    @property
    def label(self) -> str:
        return "FGSM" if self.kind == "fgsm" else f"{self.kind.upper()}-{self.steps}"


def cross_entropy_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-example CE, [B]; maximized by PGD / FGSM."""
    return F.cross_entropy(logits, y, reduction="none")


def cw_margin_loss(logits: torch.Tensor, y: torch.Tensor, kappa: float = CW_KAPPA) -> torch.Tensor:
    """Per-example relu(z_y − max_{j≠y} z_j + κ), [B] (method doc §5); CW-k minimizes it."""
    true = logits.gather(1, y[:, None]).squeeze(1)
    others = logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), float("-inf")).amax(1)
    return F.relu(true - others + kappa)


def project_linf(x: torch.Tensor, x_orig: torch.Tensor, epsilon: float) -> torch.Tensor:
    """Project onto the ℓ∞ ball of radius ε around x_orig, then clip to [0, 1]."""
    return (x_orig + (x - x_orig).clamp(-epsilon, epsilon)).clamp(0.0, 1.0)


def random_start(x: torch.Tensor, epsilon: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """x + U(−ε, ε), clipped to [0, 1]."""
    noise = torch.rand(x.shape, device=x.device, dtype=x.dtype, generator=generator) * 2 - 1
    return (x + epsilon * noise).clamp(0.0, 1.0)


def _ascent_objective(config: AttackConfig):
    """Per-example objective the attack increases."""
    if config.kind == "cw":
        return lambda logits, y: -cw_margin_loss(logits, y, config.kappa)
    return cross_entropy_loss


def run_attack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, config: AttackConfig,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """Run `config` against `model` on one batch; see the module docstring for the contract."""
    require(x.dim() == 4, f"images must be [B, C, H, W], got shape {tuple(x.shape)}")
    require(y.shape == x.shape[:1], f"labels must be [B] = [{x.shape[0]}], got {tuple(y.shape)}")
    require(bool(torch.isfinite(x).all()), "images contain NaN or infinite values")
    x = x.detach()
    if config.epsilon == 0:
        return x.clone()
    objective = _ascent_objective(config)
    x_adv = random_start(x, config.epsilon, generator) if config.random_start else x.clone()
    alpha = config.alpha
    for _ in range(config.num_steps):
        x_adv.requires_grad_(True)
        with torch.enable_grad():
            loss = objective(model(x_adv), y).sum()
            (grad,) = torch.autograd.grad(loss, x_adv)
        x_adv = project_linf(x_adv.detach() + alpha * grad.sign(), x, config.epsilon)
    return x_adv.detach()


def attack_batched(model: nn.Module, x: torch.Tensor, y: torch.Tensor, config: AttackConfig,
                   batch_size: int = 256, generator: torch.Generator | None = None) -> torch.Tensor:
    """`run_attack` over a large set in batches; x and y may live on the CPU, each batch is moved
    to the model's device and the result comes back on x's device."""
    device = next(model.parameters()).device
    out = [run_attack(model, xb.to(device), yb.to(device), config, generator).to(x.device)
           for xb, yb in zip(x.split(batch_size), y.split(batch_size))]
    return torch.cat(out) if out else x.clone()
