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

from atld.attacks.progress import BatchProgress, batch_count, notify
from atld.attacks.standard import APGD_STEPS, AUTOATTACK_PART_NAMES, AUTOATTACK_STANDARD, SQUARE_QUERIES
from atld.errors import check_choice, check_finite_range, check_int_at_least, require



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


def _batches(x, y, batch_size, device, fn, part: str, progress: BatchProgress | None) -> torch.Tensor:
    batches = batch_count(len(y), batch_size)
    notify(progress, part, 0, batches, len(y))
    out = []
    for i, (xb, yb) in enumerate(zip(x.split(batch_size), y.split(batch_size))):
        out.append(fn(xb.to(device).float(), yb.to(device).long()).detach().to(x.device))
        notify(progress, part, i + 1, batches, len(y))
    return torch.cat(out)


def _standard_attack(adversary, name: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """What `AutoAttack.run_standard_evaluation` calls for the inner attack `name` of the standard
    version, with the settings and the reseeding it applies before each batch."""
    def run(x, y):
        if name == "apgd-ce":
            adversary.apgd.loss = "ce"
            adversary.apgd.seed = adversary.get_seed()
            return adversary.apgd.perturb(x, y)
        if name == "apgd-t":
            adversary.apgd_targeted.seed = adversary.get_seed()
            return adversary.apgd_targeted.perturb(x, y)
        if name == "fab-t":
            adversary.fab.targeted = True
            adversary.fab.n_restarts = 1
            adversary.fab.seed = adversary.get_seed()
            return adversary.fab.perturb(x, y)
        adversary.square.seed = adversary.get_seed()
        return adversary.square.perturb(x, y)
    return run


def standard_evaluation(adversary, x: torch.Tensor, y: torch.Tensor, batch_size: int,
                        progress: BatchProgress | None = None) -> torch.Tensor:
    """`adversary.run_standard_evaluation(x, y, batch_size=batch_size)[0]` of pyautoattack 0.2.0
    for version='standard', step by step so that every batch can be reported: the same inner
    attacks in the same order with the same settings and seeds, each on the points still robust,
    in the same batches (tested equal to the package's own loop). It leaves out the package's
    sanity checks (they only log) and its resumable state file. x, y on the adversary's device."""
    require(list(adversary.attacks_to_run) == list(AUTOATTACK_STANDARD),
            f"expected the standard version's attacks {AUTOATTACK_STANDARD}, got {adversary.attacks_to_run}")
    with torch.no_grad():
        robust = torch.cat([adversary.get_logits(xb).max(1)[1] == yb
                            for xb, yb in zip(x.split(batch_size), y.split(batch_size))])
        x_adv = x.clone().detach()
        for name in AUTOATTACK_STANDARD:
            part = AUTOATTACK_PART_NAMES[name]
            idx = robust.nonzero().flatten()
            batches = batch_count(len(idx), batch_size)
            notify(progress, part, 0, batches, len(idx))
            attack = _standard_attack(adversary, name)
            for i, batch_idx in enumerate(idx.split(batch_size)):
                xb, yb = x[batch_idx].clone(), y[batch_idx].clone()
                adv = attack(xb, yb)
                broken = adversary.get_logits(adv).max(1)[1] != yb  # as the package decides
                robust[batch_idx[broken]] = False
                x_adv[batch_idx[broken]] = adv[broken].detach()
                notify(progress, part, i + 1, batches, len(idx))
    return x_adv


def autoattack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epsilon: float, *,
               device: str | torch.device, seed: int = 0, batch_size: int = 256,
               progress: BatchProgress | None = None) -> torch.Tensor:
    """Standard ℓ∞ AutoAttack (APGD-CE, APGD-T, FAB-T, Square; Croce & Hein 2020), version='standard',
    run by `standard_evaluation` so that progress is reported per inner attack and batch."""
    from pyautoattack import AutoAttack

    def body(device):
        adversary = AutoAttack(model, norm="Linf", eps=float(epsilon), version="standard", device=device,
                               seed=int(seed))
        return standard_evaluation(adversary, x.detach().float().to(device), y.long().to(device), batch_size,
                                   progress)

    return _run(model, x, y, epsilon, device, body)


def apgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epsilon: float, *, loss: str = "ce",
         device: str | torch.device, seed: int = 0, steps: int = APGD_STEPS,
         batch_size: int = 256, progress: BatchProgress | None = None) -> torch.Tensor:
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
        part = AUTOATTACK_PART_NAMES["apgd-ce" if loss == "ce" else "apgd-t"]
        return _batches(x, y, batch_size, device, attack.perturb, part, progress)

    return _run(model, x, y, epsilon, device, body)


def square(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epsilon: float, *,
           device: str | torch.device, seed: int = 0, queries: int = SQUARE_QUERIES,
           batch_size: int = 256, progress: BatchProgress | None = None) -> torch.Tensor:
    """The black-box Square attack (Andriushchenko et al. 2020) with AutoAttack's standard settings
    (p_init 0.8, one restart, margin loss). It only queries the model's outputs, so it needs no
    gradient: a masking diagnostic."""
    from pyautoattack.square import SquareAttack

    check_int_at_least("Square queries", queries, 1)

    def body(device):
        attack = SquareAttack(model, p_init=0.8, n_queries=queries, eps=float(epsilon), norm="Linf", n_restarts=1,
                              seed=int(seed), verbose=False, device=device, resc_schedule=False)
        with torch.no_grad():
            return _batches(x, y, batch_size, device, attack.perturb, AUTOATTACK_PART_NAMES["square"], progress)

    return _run(model, x, y, epsilon, device, body)
