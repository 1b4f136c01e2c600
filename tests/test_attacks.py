"""Attacks: an independent oracle (foolbox 3.3.4) and invariants over every attack.

Property-based tests of the same invariants over random models live in tests/test_properties.py."""

from __future__ import annotations

import pytest
import torch

from atld.attacks import (PRESET_NAMES, AttackConfig, apgd, attack_from_name, autoattack, cross_entropy_loss,
                          cw_margin_loss, run_attack, square)
from atld.errors import ConfigError

EPS_WEAK = 0.1  # at ε = 0.1 the natural digits CNN keeps about half its accuracy: comparisons mean something


def _accuracy(model, x, y) -> float:
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


# ----------------------------------------------------------------------------- the foolbox oracle

def _foolbox_pgd(model, x, y, epsilon, step, steps, loss):
    import eagerpy as ep
    import foolbox as fb

    class SameLossPGD(fb.attacks.LinfPGD):
        def get_loss_fn(self, fmodel, labels):
            def loss_fn(inputs):
                return ep.astensor(loss(fmodel(inputs).raw, labels.raw).sum())
            return loss_fn

    fmodel = fb.PyTorchModel(model, bounds=(0.0, 1.0))
    attack = SameLossPGD(abs_stepsize=step, steps=steps, random_start=False)
    _, x_adv, _ = attack(fmodel, x, y, epsilons=epsilon)
    return x_adv


@pytest.mark.parametrize("kind, steps", [("pgd", 20), ("cw", 20), ("fgsm", 1)])
def test_bit_identical_to_foolbox(kind, steps, natural_run, digits_batch):
    """With random start off, our PGD / CW-k / FGSM equal foolbox's LinfPGD driven by the same
    loss, step and steps, bit for bit (foolbox maximizes its loss: for CW we give it −margin)."""
    run = natural_run
    x, y = digits_batch(32)
    config = AttackConfig(kind, 0.2, steps=steps, random_start=False)
    ours = run_attack(run.classifier, x, y, config)
    if kind == "cw":
        loss = lambda logits, labels: -cw_margin_loss(logits, labels, config.kappa)  # noqa: E731
    else:
        loss = cross_entropy_loss
    theirs = _foolbox_pgd(run.classifier, x, y, 0.2, config.alpha, config.num_steps, loss)
    for p in run.classifier.parameters():
        p.grad = None  # foolbox's gradient leaves them on the parameters; ours must not
    assert torch.equal(ours, theirs)
    assert not torch.equal(ours, x)  # the attack did move the images


# ----------------------------------------------------------------------------- invariants

def _gen():
    return torch.Generator().manual_seed(0)


def _preset(name: str):
    return lambda m, x, y, eps: run_attack(m, x, y, attack_from_name(name, eps), _gen())


ALL_ATTACKS = {
    **{name: _preset(name) for name in PRESET_NAMES},
    "autoattack": lambda m, x, y, eps: autoattack(m, x, y, eps, device="cpu", seed=0),
    "apgd-ce": lambda m, x, y, eps: apgd(m, x, y, eps, loss="ce", device="cpu", seed=0, steps=20),
    "apgd-t": lambda m, x, y, eps: apgd(m, x, y, eps, loss="targeted", device="cpu", seed=0, steps=10),
    "square": lambda m, x, y, eps: square(m, x, y, eps, device="cpu", seed=0, queries=200),
}


@pytest.mark.parametrize("name", list(ALL_ATTACKS))
def test_attack_invariants(name, natural_run, digits, digits_batch):
    """‖x_adv − x‖∞ ≤ ε (+1e-6), x_adv in [0, 1], robust ≤ clean accuracy, the model's mode and its
    parameters' gradients untouched, the global RNG untouched, and the attack does hurt."""
    model = natural_run.classifier
    x, y = digits_batch(48)
    for p in model.parameters():
        p.grad = None
    model.train()  # an attack must leave whatever mode it found
    try:
        rng = torch.get_rng_state()
        x_adv = ALL_ATTACKS[name](model, x, y, 0.2)
        assert torch.equal(torch.get_rng_state(), rng)
        assert model.training
    finally:
        model.eval()
    assert all(p.grad is None for p in model.parameters())
    assert all(p.requires_grad for p in model.parameters())
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype
    assert (x_adv - x).abs().max().item() <= 0.2 + 1e-6
    assert x_adv.min().item() >= 0.0 and x_adv.max().item() <= 1.0
    clean, robust = _accuracy(model, x, y), _accuracy(model, x_adv, y)
    assert robust <= clean
    assert robust < clean - 0.3  # ε = 0.2 breaks a naturally trained digits CNN


@pytest.mark.slow  # full standard AutoAttack on images that survive PGD
def test_stronger_attacks_are_not_weaker(natural_run, digits_batch):
    """PGD-100 and AutoAttack are no weaker than PGD-20, CW-100 no weaker than CW-20, beyond noise
    (two images out of 64), at an ε where the natural model keeps some accuracy."""
    model = natural_run.classifier
    x, y = digits_batch(64)
    acc = {name: _accuracy(model, ALL_ATTACKS[name](model, x, y, EPS_WEAK), y)
           for name in ("pgd20", "pgd100", "cw20", "cw100", "autoattack")}
    noise = 2 / 64
    assert 0.05 < acc["pgd20"] < _accuracy(model, x, y)  # the comparison is not vacuous
    assert acc["pgd100"] <= acc["pgd20"] + noise
    assert acc["cw100"] <= acc["cw20"] + noise
    assert acc["autoattack"] <= acc["pgd20"] + noise
    assert acc["autoattack"] <= min(acc.values()) + noise


def test_attack_is_deterministic_with_a_seed(natural_run, digits_batch):
    model = natural_run.classifier
    x, y = digits_batch(16)
    config = attack_from_name("pgd20", 0.2)
    a = run_attack(model, x, y, config, torch.Generator().manual_seed(3))
    b = run_attack(model, x, y, config, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    c = autoattack(model, x, y, 0.2, device="cpu", seed=5)
    d = autoattack(model, x, y, 0.2, device="cpu", seed=5)
    assert torch.equal(c, d)


@pytest.mark.slow  # over 10 s
def test_autoattack_step_by_step_equals_the_packages_standard_evaluation(digits_batch):
    """Our loop (inner attack by inner attack, with progress) against pyautoattack's own
    run_standard_evaluation, on a tiny linear model at an ε where every inner attack has points
    left to attack (the batch size splits them, as in the package)."""
    from pyautoattack import AutoAttack

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10)).eval()
    x, y = digits_batch(24)
    with torch.no_grad():
        y = model(x).argmax(1)  # every point starts correct, so each inner attack has work
    parts = []
    ours = autoattack(model, x, y, 0.03, device="cpu", seed=1, batch_size=10,
                      progress=lambda e: parts.append((e.part, e.batch, e.batches)))
    assert [p for p, b, _ in parts if b == 0] == ["APGD-CE", "APGD-T", "FAB-T", "Square"]
    assert ("APGD-CE", 3, 3) in parts and all(n > 0 for p, b, n in parts if p == "Square")
    with torch.random.fork_rng():
        adversary = AutoAttack(model, norm="Linf", eps=0.03, version="standard", device="cpu", seed=1)
        theirs, _ = adversary.run_standard_evaluation(x, y, batch_size=10)
    assert torch.equal(ours, theirs)
    assert _accuracy(model, ours, y) < 1.0  # the comparison is not vacuous


def test_epsilon_zero_is_identity(natural_run, digits_batch):
    model = natural_run.classifier
    x, y = digits_batch(8)
    for fn in ALL_ATTACKS.values():
        assert torch.equal(fn(model, x, y, 0.0), x)


def test_presets_use_the_registry_step():
    config = attack_from_name("pgd20", 0.2)
    assert (config.kind, config.steps, config.alpha) == ("pgd", 20, 0.05)
    assert attack_from_name("cw100", 8 / 255).alpha == pytest.approx(2 / 255)
    assert attack_from_name("fgsm", 0.3).alpha == 0.3
    assert attack_from_name("natural", 0.3) is None


@pytest.mark.parametrize("bad", [
    lambda model, x, y: AttackConfig("pgd", -0.1),
    lambda model, x, y: AttackConfig("pgd", 1.5),
    lambda model, x, y: AttackConfig("pgd", float("nan")),
    lambda model, x, y: AttackConfig("pgd", 0.1, steps=0),
    lambda model, x, y: AttackConfig("bim", 0.1),
    lambda model, x, y: attack_from_name("pgd7", 0.1),
    lambda model, x, y: apgd(model, x, y, 0.1, loss="dlr", device="cpu"),
    lambda model, x, y: square(model, x, y, 2.0, device="cpu"),
])
def test_bad_attack_settings_give_one_line_errors(bad, natural_run, digits_batch):
    with pytest.raises(ConfigError) as info:
        bad(natural_run.classifier, *digits_batch(2))
    assert "\n" not in str(info.value)
