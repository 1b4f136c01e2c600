"""Feature Scattering (atld/train/methods/feature_scatter.py): the Sinkhorn plan against POT as an
independent oracle, differentiability, the perturbation's invariants and effect, and learning."""

from __future__ import annotations

import numpy as np
import ot
import pytest
import torch

from atld.config.train import TrainConfig
from atld.data import as_float01, get_spec
from atld.errors import ConfigError
from atld.methods import METHODS
from atld.methods.feature_scatter import (cosine_cost, feature_scatter_perturbation, feature_scatter_step, ot_distance,
                                          sinkhorn_plan)
from atld.models import build_classifier
from atld.runs.store import load_checkpoint
from atld.train.trainer import train

EPS = get_spec("digits").epsilon



@pytest.mark.parametrize("reg", [0.1, 0.01])
def test_sinkhorn_plan_matches_pot(reg):
    gen = torch.Generator().manual_seed(0)
    cost = torch.rand(7, 5, generator=gen, dtype=torch.float64) * 2
    plan = sinkhorn_plan(cost, reg, max_iter=5000, tol=0)
    oracle = ot.sinkhorn(np.full(7, 1 / 7), np.full(5, 1 / 5), cost.numpy(), reg, method="sinkhorn_log",
                         stopThr=1e-13, numItermax=100_000)
    np.testing.assert_allclose(plan.numpy(), oracle, atol=1e-9)
    np.testing.assert_allclose(plan.sum(1).numpy(), 1 / 7, atol=1e-9)
    np.testing.assert_allclose(plan.sum(0).numpy(), 1 / 5, atol=1e-9)


def test_cosine_cost_matches_definition():
    gen = torch.Generator().manual_seed(1)
    a, b = torch.randn(4, 10, generator=gen), torch.randn(3, 10, generator=gen)
    expected = 1 - (a / a.norm(dim=1, keepdim=True)) @ (b / b.norm(dim=1, keepdim=True)).T
    torch.testing.assert_close(cosine_cost(a, b), expected.clamp_min(0))
    assert float(cosine_cost(a, a).diagonal().abs().max()) < 1e-6


def test_ot_distance_is_differentiable_through_the_plan():
    gen = torch.Generator().manual_seed(2)
    z_nat = torch.randn(5, 4, generator=gen, dtype=torch.float64)
    z = torch.randn(5, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: ot_distance(z_nat, t, reg=0.1, max_iter=30, tol=0), (z,))


def test_ot_distance_is_smallest_for_identical_batches():
    gen = torch.Generator().manual_seed(3)
    z = torch.randn(16, 10, generator=gen)
    scattered = z + 2.0 * torch.randn(16, 10, generator=gen)
    assert float(ot_distance(z, z)) < 0.05 * float(ot_distance(z, scattered))


def _toy_setup(seed: int, digits):
    torch.manual_seed(seed)
    f = build_classifier("small-cnn", get_spec("digits")).eval()
    x = as_float01(digits.x_test[:50])
    with torch.no_grad():
        z_nat = f(x)
    return f, x, z_nat


def test_perturbation_stays_in_ball_and_box_and_leaves_no_parameter_gradient(digits):
    f, x, z_nat = _toy_setup(0, digits)
    x_adv = feature_scatter_perturbation(f, x, z_nat, EPS, torch.Generator().manual_seed(0))
    assert float((x_adv - x).abs().max()) <= EPS + 1e-6
    assert float(x_adv.min()) >= 0 and float(x_adv.max()) <= 1
    assert not x_adv.requires_grad
    assert all(p.grad is None for p in f.parameters())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_scattering_step_increases_ot_distance_over_the_random_start(seed, digits):
    f, x, z_nat = _toy_setup(seed, digits)
    x_adv = feature_scatter_perturbation(f, x, z_nat, EPS, torch.Generator().manual_seed(seed))
    noise = torch.rand(x.shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1  # the same start
    x0 = x + EPS * noise
    with torch.no_grad():
        at_start = float(ot_distance(z_nat, f(x0)))
        after = float(ot_distance(z_nat, f(x_adv)))
        # and a sign step in a random direction does not do the same (the gradient matters)
        rand_dir = torch.rand(x.shape, generator=torch.Generator().manual_seed(seed + 100)) * 2 - 1
        random_step = float(ot_distance(z_nat, f((x0 + EPS * rand_dir.sign()).clamp(x - EPS, x + EPS).clamp(0, 1))))
    assert after > 1.3 * at_start
    assert after > 1.3 * random_step


def test_method_is_registered_and_validated():
    assert "feature-scatter" in METHODS and METHODS["feature-scatter"].step is feature_scatter_step
    assert not METHODS["feature-scatter"].discriminator
    config = TrainConfig(method="feature-scatter")
    assert not config.uses_discriminator
    with pytest.raises(ConfigError, match="label smoothing"):
        TrainConfig(method="feature-scatter", label_smoothing=1.0)


@pytest.mark.slow
def test_feature_scatter_training_learns_digits(digits, tmp_path):
    config = TrainConfig(method="feature-scatter", epochs=4, lr=0.1, lr_milestones=(), seed=0,
                         device="cpu", eval_limit=0)
    result = train(config, data=digits, run_dir=tmp_path / "fs")
    losses = [m["loss"] for m in result.card["metrics"]]
    assert losses[-1] < losses[0]
    assert result.discriminator is None
    run = load_checkpoint(tmp_path / "fs")
    assert run.card["method"] == "feature-scatter" and run.discriminator is None
    with torch.no_grad():
        accuracy = float((run.classifier(as_float01(digits.x_test)).argmax(1) == digits.y_test).float().mean())
    assert accuracy > 0.6  # chance is 0.1


def test_stopping_rule_is_the_released_codes():
    """The plan is the one the released code's loop gives: stop after the first iteration with
    Σ|Δu| < tol (an independent transcription of its `sinkhorn` without the +1e-6)."""
    gen = torch.Generator().manual_seed(4)
    cost = torch.rand(6, 6, generator=gen, dtype=torch.float64) * 2
    reg, tol = 0.05, 1e-3
    u, v = torch.zeros(6, dtype=torch.float64), torch.zeros(6, dtype=torch.float64)
    log_w = torch.full((6,), -np.log(6.0), dtype=torch.float64)
    iterations = 0
    for iterations in range(1, 101):  # noqa: B007 - the count after the loop is the point
        u_prev = u
        u = reg * (log_w - torch.logsumexp((-cost + u[:, None] + v[None, :]) / reg, dim=1)) + u
        v = reg * (log_w - torch.logsumexp((-cost + u[:, None] + v[None, :]) / reg, dim=0)) + v
        if float((u - u_prev).abs().sum()) < tol:
            break
    assert 1 < iterations < 100  # the rule fired: the comparison below is not trivial
    expected = torch.exp((-cost + u[:, None] + v[None, :]) / reg)
    torch.testing.assert_close(sinkhorn_plan(cost, reg, max_iter=100, tol=tol), expected)
    assert not torch.allclose(sinkhorn_plan(cost, reg, max_iter=100, tol=0), expected)

