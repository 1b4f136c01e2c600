"""White-box ℓ∞ gradient attacks: FGSM, PGD-k on cross-entropy, CW-k (PGD on the Carlini-Wagner
margin) (docs/method.md §5).

Contract for every attack:
    x: float [B, C, H, W] in [0, 1], y: int64 [B], both on the model's device.
    Returns x_adv with ‖x_adv − x‖∞ ≤ ε and x_adv in [0, 1], detached.
    The model's mode (train/eval) is left as it is (evaluation puts it in eval mode first) and no
    gradient is left on its parameters (only ∂loss/∂x is computed).
Units: ε and step sizes are in [0, 1] pixel units (`atld.data.registry`; the PGD / CW step is
`attack_step(ε)` = ε/4 unless given).

FGSM = one step of size ε from a random start; PGD-k = k signed steps of size α on CE; CW-k = k
signed steps of size α on relu(z_y − max_{j≠y} z_j + κ), κ = 50, minimized (the margin is pushed
down). The update order (step, project to the ε-ball, clip to [0, 1]) is foolbox's, so with the
random start off the two agree bit for bit (tested against foolbox 3.3.4's LinfPGD driven with
the same loss, step and number of steps).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from atld.attacks.progress import BatchProgress, batch_count, notify
from atld.vocab import AttackKind, parse
from atld.attacks.step import attack_step
from atld.errors import check_finite_range, check_int_in, require

CW_KAPPA = 50.0  # CW-k confidence κ, logit units (docs/method.md §5)
MAX_STEPS = 100_000


@dataclass(frozen=True)
class AttackConfig:
    kind: AttackKind  # fgsm | pgd | cw
    epsilon: float  # ℓ∞ radius, [0, 1] pixel units
    steps: int = 20  # number of signed steps (FGSM: always 1)
    step_size: float | None = None  # [0, 1] units; None: attack_step(ε) = ε/4 (PGD/CW), ε (FGSM)
    random_start: bool = True  # start from x + U(−ε, ε)
    kappa: float = CW_KAPPA  # CW margin confidence (logit units)

    def __post_init__(self):
        object.__setattr__(self, "kind", parse(AttackKind, self.kind, "attack"))
        check_finite_range("epsilon", self.epsilon, 0.0, 1.0, "([0, 1] pixel units)")
        check_int_in("attack steps", self.steps, 1, MAX_STEPS)
        if self.step_size is not None:
            check_finite_range("attack step size", self.step_size, 0.0, 1.0, "([0, 1] pixel units)")
        check_finite_range("kappa", self.kappa, 0.0, 1e6)

    @property
    def alpha(self) -> float:
        """The step size actually used."""
        if self.step_size is not None:
            return self.step_size
        return self.epsilon if self.kind is AttackKind.FGSM else attack_step(self.epsilon)

    @property
    def num_steps(self) -> int:
        return 1 if self.kind is AttackKind.FGSM else self.steps

    @property
    def label(self) -> str:
        return "FGSM" if self.kind is AttackKind.FGSM else f"{self.kind.upper()}-{self.steps}"


def cross_entropy_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-example CE, [B]; maximized by PGD / FGSM."""
    return F.cross_entropy(logits, y, reduction="none")


def cw_margin_loss(logits: torch.Tensor, y: torch.Tensor, kappa: float = CW_KAPPA) -> torch.Tensor:
    """Per-example relu(z_y − max_{j≠y} z_j + κ), [B] (docs/method.md §5); CW-k minimizes it."""
    true = logits.gather(1, y[:, None]).squeeze(1)
    others = logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), float("-inf")).amax(1)
    return F.relu(true - others + kappa)


def project_linf(x: torch.Tensor, x_orig: torch.Tensor, epsilon: float) -> torch.Tensor:
    """Project onto the ℓ∞ ball of radius ε around x_orig, then clip to [0, 1]."""
    return (x_orig + (x - x_orig).clamp(-epsilon, epsilon)).clamp(0.0, 1.0)


def uniform_noise(x: torch.Tensor, epsilon: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """U(−ε, ε) noise of x's shape, dtype and device: every random start draws it this way."""
    return epsilon * (torch.rand(x.shape, device=x.device, dtype=x.dtype, generator=generator) * 2 - 1)


def random_start(x: torch.Tensor, epsilon: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """x + U(−ε, ε), clipped to [0, 1]."""
    return (x + uniform_noise(x, epsilon, generator)).clamp(0.0, 1.0)


def _ascent_objective(config: AttackConfig):
    """Per-example objective the attack increases."""
    if config.kind is AttackKind.CW:
        return lambda logits, y: -cw_margin_loss(logits, y, config.kappa)
    return cross_entropy_loss


def run_attack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, config: AttackConfig,
               generator: torch.Generator | None = None, check_finite: bool = True,
               on_step: Callable[[int, torch.Tensor], None] | None = None) -> torch.Tensor:
    """Run `config` against `model` on one batch; see the module docstring for the contract.
    check_finite=False skips the NaN/inf check of x, a host synchronisation (the trainer's
    batches come from checked data; its hot loop must not wait on the GPU). on_step(k, x_k)
    receives every iterate (k = 1..num_steps, detached), e.g. to draw the attack's path."""
    require(x.dim() == 4, f"images must be [B, C, H, W], got shape {tuple(x.shape)}")
    require(y.shape == x.shape[:1], f"labels must be [B] = [{x.shape[0]}], got {tuple(y.shape)}")
    if check_finite:
        require(bool(torch.isfinite(x).all()), "images contain NaN or infinite values")
    x = x.detach()
    if config.epsilon == 0:
        return x.clone()
    objective = _ascent_objective(config)
    x_adv = random_start(x, config.epsilon, generator) if config.random_start else x.clone()
    alpha = config.alpha
    for k in range(config.num_steps):
        x_adv.requires_grad_(True)
        with torch.enable_grad():
            loss = objective(model(x_adv), y).sum()
            (grad,) = torch.autograd.grad(loss, x_adv)
        x_adv = project_linf(x_adv.detach() + alpha * grad.sign(), x, config.epsilon)
        if on_step is not None:
            on_step(k + 1, x_adv)
    return x_adv.detach()


def attack_batched(model: nn.Module, x: torch.Tensor, y: torch.Tensor, config: AttackConfig,
                   batch_size: int = 256, generator: torch.Generator | None = None,
                   progress: BatchProgress | None = None) -> torch.Tensor:
    """`run_attack` over a large set in batches; x and y may live on the CPU, each batch is moved
    to the model's device and the result comes back on x's device. progress: see
    `atld.attacks.progress` (one part, named by the config's label)."""
    device = next(model.parameters()).device
    batches = batch_count(len(y), batch_size)
    notify(progress, config.label, 0, batches, len(y))
    out = []
    for i, (xb, yb) in enumerate(zip(x.split(batch_size), y.split(batch_size))):
        out.append(run_attack(model, xb.to(device), yb.to(device), config, generator).to(x.device))
        notify(progress, config.label, i + 1, batches, len(y))
    return torch.cat(out) if out else x.clone()
