"""IMT inference (docs/method.md §4): ATLD-, ATLD, ATLD+ and the attackable pipeline."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from atld.attacks import attack_from_name, run_attack
from atld.errors import ConfigError
from atld.inference import INFERENCE_MODES, IMTPipeline, apply_inference, imt_direction, imt_step, predict


@pytest.fixture
def models(atld_run):
    """(run, classifier, discriminator, IMT radius) of the ATLD run."""
    return atld_run, atld_run.classifier, atld_run.discriminator, atld_run.config.resolved_epsilon


@pytest.fixture
def attacked(atld_run, digits_batch):
    """attacked(n=48): (x, PGD-20 x_adv against the bare classifier, y) for the first n test images."""
    def make(n: int = 48):
        x, y = digits_batch(n)
        x_adv = run_attack(atld_run.classifier, x, y, attack_from_name("pgd20", atld_run.spec.epsilon),
                           torch.Generator().manual_seed(0))
        return x, x_adv, y
    return make


def test_imt_step_follows_the_definition(models, attacked):
    """x_t = clamp01(x − ε·sign(∇_x BCE(D(f(x)), 1))), recomputed here independently."""
    run, f, d, eps = models
    _, x, _ = attacked()
    x_t = imt_step(f, d, x, eps)
    leaf = x.clone().requires_grad_(True)
    p = torch.sigmoid(d(f(leaf))[0])
    (grad,) = torch.autograd.grad(-torch.log(p).mean(), leaf)
    expected = (x - eps * grad.sign()).clamp(0, 1)
    assert (x_t == expected).float().mean().item() > 0.999  # sign flips only where ∇ rounds to ±0
    assert torch.equal(x_t, imt_step(f, d, x, eps))  # deterministic


@pytest.mark.parametrize("window", [None, (0.3, 0.7), (0.0, 1.0)])
def test_imt_stays_within_its_radius(window, models, attacked):
    run, f, d, eps = models
    _, x, _ = attacked()
    x_t = imt_step(f, d, x, eps, window)
    assert (x_t - x).abs().max().item() <= eps + 1e-6
    assert x_t.min().item() >= 0 and x_t.max().item() <= 1
    moved = (x_t - x).abs()
    inside = (x - eps >= 0) & (x + eps <= 1)  # where no clipping can happen
    step = imt_direction(f, d, x, window).abs()
    assert torch.allclose(moved[inside], eps * step[inside], atol=1e-6)


def test_atld_plus_halves_the_step_inside_the_window_only(models, attacked):
    run, f, d, eps = models
    _, x, _ = attacked()
    with torch.no_grad():
        p = d.natural_probability(f(x))
    low, high = float(p.median()) - 0.02, float(p.median()) + 0.02  # a window holding some images
    step = imt_direction(f, d, x, (low, high)).abs().flatten(1).amax(1)
    unsure = (p > low) & (p < high)
    assert unsure.any() and (~unsure).any()
    assert torch.all(step[unsure] == 0.5) and torch.all(step[~unsure] == 1.0)


def test_imt_moves_towards_what_d_calls_natural(models, attacked):
    """The step descends BCE(D, 1): on attacked images D's P(natural) goes up on average."""
    run, f, d, eps = models
    _, x, _ = attacked()
    with torch.no_grad():
        before = d.natural_probability(f(x)).mean().item()
        after = d.natural_probability(f(imt_step(f, d, x, eps))).mean().item()
    assert after > before


def test_inference_modes_and_predict(models, attacked):
    run, f, d, eps = models
    x, x_adv, y = attacked(32)
    assert apply_inference(run, x, "atld-") is x
    assert torch.equal(apply_inference(run, x, "atld"), imt_step(f, d, x, eps))
    assert torch.equal(apply_inference(run, x, "atld+"), imt_step(f, d, x, eps, run.spec.imt_window))
    for mode in INFERENCE_MODES:
        with torch.no_grad():  # IMT needs ∂/∂x but must work under no_grad
            logits = predict(run, x_adv, mode)
        assert torch.equal(logits, f(apply_inference(run, x_adv, mode)).detach())
    # a (classifier, discriminator) pair works with an explicit ε
    assert torch.equal(apply_inference((f, d), x, "atld", epsilon=eps), imt_step(f, d, x, eps))


def test_imt_leaves_models_as_it_found_them(models, attacked):
    run, f, d, eps = models
    x, _, _ = attacked(16)
    f.train(), d.train()
    try:
        imt_step(f, d, x, eps)
        assert f.training and d.training
    finally:
        f.eval(), d.eval()
    assert all(p.grad is None for p in [*f.parameters(), *d.parameters()])


@pytest.mark.parametrize("mode", INFERENCE_MODES)
def test_pipeline_forward_is_the_real_imt(mode, models, attacked):
    run, f, d, eps = models
    _, x_adv, _ = attacked(32)
    for straight_through in (True, False):
        pipe = IMTPipeline(run, mode, straight_through).eval()
        with torch.no_grad():
            assert torch.equal(pipe(x_adv), predict(run, x_adv, mode))


def test_straight_through_gradient_is_bpda(models, attacked):
    """Straight-through: ∂L(f(IMT(x)))/∂x = ∂L(f(z))/∂z at z = IMT(x) (x_t treated as x + const);
    exact mode: the same, times the clip mask (zero where IMT clipped to [0, 1])."""
    run, f, d, eps = models
    _, x_adv, y = attacked(32)
    x_t = imt_step(f, d, x_adv, eps)
    z = x_t.clone().requires_grad_(True)
    (g_ref,) = torch.autograd.grad(F.cross_entropy(f(z), y, reduction="sum"), z)
    for straight_through in (True, False):
        leaf = x_adv.clone().requires_grad_(True)
        loss = F.cross_entropy(IMTPipeline(run, "atld", straight_through)(leaf), y, reduction="sum")
        (g,) = torch.autograd.grad(loss, leaf)
        if straight_through:
            assert torch.allclose(g, g_ref, atol=1e-6)
        else:
            clipped = (x_t == 0) | (x_t == 1)
            assert torch.all(g[clipped] == 0)
            assert torch.allclose(g[~clipped], g_ref[~clipped], atol=1e-6)
    assert g_ref.abs().sum() > 0


def test_imt_needs_a_discriminator(natural_run, digits_batch):
    run = natural_run
    x, _ = digits_batch(4)
    assert apply_inference(run, x, "atld-") is x
    for mode in ("atld", "atld+"):
        with pytest.raises(ConfigError, match="no discriminator") as info:
            apply_inference(run, x, mode)
        assert "\n" not in str(info.value)
        with pytest.raises(ConfigError, match="no discriminator"):
            IMTPipeline(run, mode)


@pytest.mark.parametrize("bad", [
    lambda run, x: apply_inference(run, x, "atld++"),
    lambda run, x: imt_step(run.classifier, run.discriminator, x, 1.5),
    lambda run, x: imt_step(run.classifier, run.discriminator, x, -0.1),
    lambda run, x: imt_step(run.classifier, run.discriminator, x, 0.1, window=(0.7, 0.3)),
    lambda run, x: apply_inference((run.classifier, run.discriminator), x, "atld"),  # no ε
])
def test_bad_inference_input_gives_one_line_errors(bad, atld_run, digits_batch):
    run = atld_run
    x, _ = digits_batch(4)
    with pytest.raises(ConfigError) as info:
        bad(run, x)
    assert "\n" not in str(info.value)
