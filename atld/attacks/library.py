"""AutoAttack, APGD-CE / APGD-T and the black-box Square attack, from the official AutoAttack code
(PyPI `pyautoattack`). These wrappers only pass ε, device, seed and version explicitly, fork the
global RNG (the package reseeds it) and freeze the parameters (its FAB calls `.backward()`, which
would otherwise leave gradients on them).

Contract (every function): x float [N, C, H, W] in [0, 1] (any device), y int64 [N]; returns
x_adv on x's device, detached: for every point the attack broke, its adversarial example;
elsewhere x itself. ε in [0, 1] pixel units; ε = 0 or no images returns x unchanged. The model
should be in eval mode (its mode is not changed).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
from torch import nn

from atld.errors import check_choice, check_finite_range, check_int_at_least, require

AUTOATTACK_STANDARD = ("apgd-ce", "apgd-t", "fab-t", "square")  # what version='standard' runs, in order
APGD_STEPS = 100  # APGD iterations, as AutoAttack's standard version
SQUARE_QUERIES = 5000  # Square attack query budget, as AutoAttack's standard version


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


def _run(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epsilon: float, device,
         body: Callable[[torch.device], torch.Tensor]) -> torch.Tensor:
    """The prologue every wrapper shares: check the batch and ε, return x for ε = 0 or no images,
    else run `body(device)` under `_attack_guard` and bring the result back to x's device."""
    require(x.dim() == 4, f"images must be [B, C, H, W], got shape {tuple(x.shape)}")
    require(y.shape == x.shape[:1], f"labels must be [B] = [{x.shape[0]}], got {tuple(y.shape)}")
    check_finite_range("epsilon", epsilon, 0.0, 1.0, "([0, 1] pixel units)")
    device = torch.device(device)
    if epsilon == 0 or len(x) == 0:
        return x.detach().clone()
    with _attack_guard(model, device):
        return body(device).detach().to(x.device)


def _batches(x, y, batch_size, device, fn) -> torch.Tensor:
    out = [fn(xb.to(device).float(), yb.to(device).long()).detach().to(x.device)
           for xb, yb in zip(x.split(batch_size), y.split(batch_size))]
    return torch.cat(out)


def autoattack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epsilon: float, *,
               device: str | torch.device, seed: int = 0, batch_size: int = 256) -> torch.Tensor:
    """Standard ℓ∞ AutoAttack (APGD-CE, APGD-T, FAB-T, Square; Croce & Hein 2020), version='standard'."""
    from pyautoattack import AutoAttack

    def body(device):
        adversary = AutoAttack(model, norm="Linf", eps=float(epsilon), version="standard", device=device,
                               seed=int(seed))
        result = adversary.run_standard_evaluation(x.detach().float().to(device), y.long().to(device),
                                                   batch_size=batch_size)
        return result[0] if isinstance(result, tuple) else result  # 0.2.0 returns (x_adv, y_adv)

    return _run(model, x, y, epsilon, device, body)


def apgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epsilon: float, *, loss: str = "ce",
         device: str | torch.device, seed: int = 0, steps: int = APGD_STEPS,
         batch_size: int = 256) -> torch.Tensor:
    """APGD: loss "ce" (APGD-CE, untargeted cross-entropy, 1 restart) or "targeted" (APGD-T,
    targeted DLR over the 9 (or K − 1) most likely other classes), as AutoAttack's standard version."""
    from pyautoattack.autopgd_base import APGDAttack, APGDAttack_targeted

    check_choice("APGD loss", loss, ("ce", "targeted"))
    check_int_at_least("APGD steps", steps, 1)

    def body(device):
        common = dict(n_iter=steps, norm="Linf", n_restarts=1, eps=float(epsilon), seed=int(seed), eot_iter=1,
                      rho=0.75, device=device)
        if loss == "ce":
            attack = APGDAttack(model, loss="ce", **common)
        else:
            with torch.no_grad():
                num_classes = model(x[:1].to(device).float()).shape[1]
            require(num_classes >= 4, f"APGD-T needs at least 4 classes, the model has {num_classes}")
            attack = APGDAttack_targeted(model, n_target_classes=min(9, num_classes - 1), **common)
        return _batches(x, y, batch_size, device, attack.perturb)

    return _run(model, x, y, epsilon, device, body)


def square(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epsilon: float, *,
           device: str | torch.device, seed: int = 0, queries: int = SQUARE_QUERIES,
           batch_size: int = 256) -> torch.Tensor:
    """The black-box Square attack (Andriushchenko et al. 2020) with AutoAttack's standard settings
    (p_init 0.8, one restart, margin loss). It only queries the model's outputs, so it needs no
    gradient: a masking diagnostic."""
    from pyautoattack.square import SquareAttack

    check_int_at_least("Square queries", queries, 1)

    def body(device):
        attack = SquareAttack(model, p_init=0.8, n_queries=queries, eps=float(epsilon), norm="Linf", n_restarts=1,
                              seed=int(seed), verbose=False, device=device, resc_schedule=False)
        with torch.no_grad():
            return _batches(x, y, batch_size, device, attack.perturb)

    return _run(model, x, y, epsilon, device, body)
