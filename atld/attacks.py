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
clip to [0, 1]) is foolbox's, so with random start off the two agree bit for bit (tested against
foolbox 3.3.4's LinfPGD driven with the same loss, step and number of steps).

Named presets (`attack_from_name`): fgsm, pgd20, pgd100, cw20, cw100, with the step ε/4 of
`atld.data.registry` ("natural" means no attack). AutoAttack, APGD-CE / APGD-T and the black-box
Square attack come from the official AutoAttack code (PyPI `pyautoattack`, import name
`pyautoattack`); `autoattack`, `apgd` and `square` only wrap it with explicit ε, device, seed and
version, fork the global RNG (the package reseeds it) and freeze the parameters (its FAB calls
`.backward()`, which would otherwise leave gradients on them).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from atld.errors import check_choice, check_finite_range, check_int_at_least, require

ATTACK_KINDS = ("fgsm", "pgd", "cw")
CW_KAPPA = 50.0  # CW-k confidence κ (method doc §5)
# name -> (kind, steps): the gradient attacks of the method doc §5 table
NAMED_ATTACKS: dict[str, tuple[str, int]] = {
    "fgsm": ("fgsm", 1), "pgd20": ("pgd", 20), "pgd100": ("pgd", 100), "cw20": ("cw", 20), "cw100": ("cw", 100)}
AUTOATTACK_STANDARD = ("apgd-ce", "apgd-t", "fab-t", "square")  # what version='standard' runs, in order
APGD_STEPS = 100  # APGD iterations, as AutoAttack's standard version
SQUARE_QUERIES = 5000  # Square attack query budget, as AutoAttack's standard version


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
               generator: torch.Generator | None = None, check_finite: bool = True) -> torch.Tensor:
    """Run `config` against `model` on one batch; see the module docstring for the contract.
    check_finite=False skips the NaN/inf check of x, a host synchronisation (the trainer's
    batches come from checked data; its hot loop must not wait on the GPU)."""
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


def attack_from_name(name: str, epsilon: float, random_start: bool = True) -> AttackConfig | None:
    """The preset `name` ("natural", "fgsm", "pgd20", "pgd100", "cw20", "cw100") at radius ε
    ([0, 1] units, step ε/4; FGSM one step of ε). "natural" gives None (no attack)."""
    check_choice("attack", name, ("natural", *NAMED_ATTACKS))
    if name == "natural":
        return None
    kind, steps = NAMED_ATTACKS[name]
    return AttackConfig(kind, epsilon, steps=steps, random_start=random_start)


# ----------------------------------------------------------------------------- AutoAttack package

@contextlib.contextmanager
def _attack_guard(model: nn.Module, device: torch.device):
    """Freeze the parameters (no gradient is accumulated on them) and fork the global RNG (the
    AutoAttack package calls torch.manual_seed); both are restored afterwards."""
    params = list(model.parameters())
    flags = [p.requires_grad for p in params]
    devices = [device] if device.type == "cuda" else []
    try:
        for p in params:
            p.requires_grad_(False)
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)


def _check_batch(x: torch.Tensor, y: torch.Tensor, epsilon: float) -> None:
    require(x.dim() == 4, f"images must be [B, C, H, W], got shape {tuple(x.shape)}")
    require(y.shape == x.shape[:1], f"labels must be [B] = [{x.shape[0]}], got {tuple(y.shape)}")
    check_finite_range("epsilon", epsilon, 0.0, 1.0, "([0, 1] pixel units)")


def _batches(model, x, y, batch_size, device, fn) -> torch.Tensor:
    out = [fn(xb.to(device).float(), yb.to(device).long()).detach().to(x.device)
           for xb, yb in zip(x.split(batch_size), y.split(batch_size))]
    return torch.cat(out) if out else x.clone()


def autoattack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epsilon: float, *,
               device: str | torch.device, seed: int = 0, batch_size: int = 256) -> torch.Tensor:
    """Standard ℓ∞ AutoAttack (APGD-CE, APGD-T, FAB-T, Square; Croce & Hein 2020) from the
    official package, with eps, device, seed and version='standard' passed explicitly.

    x: float [N, C, H, W] in [0, 1] (any device), y: int64 [N]. Returns x_adv on x's device:
    for every point the package broke, its adversarial example; elsewhere x itself. The model
    should be in eval mode (its mode is not changed)."""
    from pyautoattack import AutoAttack

    _check_batch(x, y, epsilon)
    device = torch.device(device)
    if epsilon == 0 or len(x) == 0:
        return x.detach().clone()
    with _attack_guard(model, device):
        adversary = AutoAttack(model, norm="Linf", eps=float(epsilon), version="standard",
                               device=device, seed=int(seed))
        result = adversary.run_standard_evaluation(x.detach().float().to(device), y.long().to(device),
                                                   batch_size=batch_size)
    x_adv = result[0] if isinstance(result, tuple) else result  # 0.2.0 returns (x_adv, y_adv)
    return x_adv.detach().to(x.device)


def apgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epsilon: float, *, loss: str = "ce",
         device: str | torch.device, seed: int = 0, steps: int = APGD_STEPS,
         batch_size: int = 256) -> torch.Tensor:
    """APGD from the official package: loss "ce" (APGD-CE, untargeted cross-entropy, 1 restart)
    or "targeted" (APGD-T, targeted DLR over the 9 (or K − 1) most likely other classes), as in
    AutoAttack's standard version. Contract as `autoattack`; points it cannot break stay x."""
    from pyautoattack.autopgd_base import APGDAttack, APGDAttack_targeted

    check_choice("APGD loss", loss, ("ce", "targeted"))
    check_int_at_least("APGD steps", steps, 1)
    _check_batch(x, y, epsilon)
    device = torch.device(device)
    if epsilon == 0 or len(x) == 0:
        return x.detach().clone()
    with _attack_guard(model, device):
        if loss == "ce":
            attack = APGDAttack(model, n_iter=steps, norm="Linf", n_restarts=1, eps=float(epsilon),
                                seed=int(seed), loss="ce", eot_iter=1, rho=0.75, device=device)
        else:
            with torch.no_grad():
                num_classes = model(x[:1].to(device).float()).shape[1]
            require(num_classes >= 4, f"APGD-T needs at least 4 classes, the model has {num_classes}")
            attack = APGDAttack_targeted(model, n_iter=steps, norm="Linf", n_restarts=1, eps=float(epsilon),
                                         seed=int(seed), eot_iter=1, rho=0.75,
                                         n_target_classes=min(9, num_classes - 1), device=device)
        return _batches(model, x, y, batch_size, device, lambda xb, yb: attack.perturb(xb, yb))


def square(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epsilon: float, *,
           device: str | torch.device, seed: int = 0, queries: int = SQUARE_QUERIES,
           batch_size: int = 256) -> torch.Tensor:
    """The black-box Square attack (Andriushchenko et al. 2020) from the official package, with
    AutoAttack's standard settings (p_init 0.8, one restart, margin loss). It only queries the
    model's outputs, so it needs no gradient: a masking diagnostic. Contract as `autoattack`."""
    from pyautoattack.square import SquareAttack

    check_int_at_least("Square queries", queries, 1)
    _check_batch(x, y, epsilon)
    device = torch.device(device)
    if epsilon == 0 or len(x) == 0:
        return x.detach().clone()
    with _attack_guard(model, device), torch.no_grad():
        attack = SquareAttack(model, p_init=0.8, n_queries=queries, eps=float(epsilon), norm="Linf",
                              n_restarts=1, seed=int(seed), verbose=False, device=device, resc_schedule=False)
        return _batches(model, x, y, batch_size, device, lambda xb, yb: attack.perturb(xb, yb))
