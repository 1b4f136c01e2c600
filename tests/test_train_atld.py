"""The ATLD training step in isolation (seeded toy setups): the label-free perturbation, the
ratio s, the classifier update, the paper variant."""

import pytest
import torch

from atld.config.train import TrainConfig
from atld.methods import StepContext, atld_perturbation, atld_start, atld_step
from atld.methods.losses import natural_bce
from atld.models import SMALL_DISCRIMINATOR, Discriminator, build_classifier
from atld.train.trainer import _autocast_factory


@pytest.fixture(scope="module")
def batch(digits):
    return digits.x_train[:64], digits.y_train[:64]


def _models(seed=0):
    torch.manual_seed(seed)
    spec = TrainConfig().spec
    return build_classifier("small-cnn", spec), Discriminator(10, SMALL_DISCRIMINATOR)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_perturbation_stays_in_the_ball_and_lowers_the_discriminators_loss(batch, seed):
    # One signed step is a first-order move: the toy uses ε = 0.05, where the first-order model
    # of freshly initialised networks holds (at 0.2 their curvature can undo a single step).
    x, _ = batch
    f, d = _models(seed)
    eps = 0.05
    f.eval()
    d.train()
    with torch.no_grad():
        z_nat = f(x)
    g = torch.Generator().manual_seed(seed)
    x0 = atld_start(x, eps, g)
    x_adv = atld_perturbation(f, d, x, z_nat, eps, start=x0)
    assert (x_adv - x).abs().max() <= eps + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert not any(p.grad is not None for p in [*f.parameters(), *d.parameters()])
    with torch.no_grad():  # D's loss on the perturbed batch (label 0 = perturbed), D in train mode as in the step
        loss_start = natural_bce(d(f(x0))[0], natural=False)
        loss_adv = natural_bce(d(f(x_adv))[0], natural=False)
    assert loss_adv < loss_start  # the step makes the perturbed latents easier for D to spot


def test_perturbation_uses_no_labels(batch):
    x, _ = batch
    f, d = _models()
    f.eval()
    d.train()
    with torch.no_grad():
        z_nat = f(x)
    x0 = atld_start(x, 0.2, torch.Generator().manual_seed(0))
    a = atld_perturbation(f, d, x, z_nat, 0.2, start=x0)
    d2 = Discriminator(10, SMALL_DISCRIMINATOR)
    d2.load_state_dict(d.state_dict())
    b = atld_perturbation(f, d2.train(), x, z_nat, 0.2, start=x0)
    assert torch.equal(a, b)  # the signature has no labels: same inputs, same perturbation


def _context(config, f, d):
    opt = torch.optim.SGD(f.parameters(), lr=config.resolved_lr, momentum=config.momentum,
                          weight_decay=config.resolved_weight_decay)
    d_opt = torch.optim.SGD(d.parameters(), lr=config.d_lr, momentum=config.d_momentum)
    return StepContext(config, f, opt, torch.Generator().manual_seed(0), d, d_opt,
                       _autocast_factory(config, torch.device("cpu")))


@pytest.mark.parametrize("variant", ["code", "paper"])
def test_step_updates_both_networks_and_reports_finite_terms(batch, variant):
    x, y = batch
    config = TrainConfig(variant=variant)
    f, d = _models()
    before_f = [p.detach().clone() for p in f.parameters()]
    before_d = [p.detach().clone() for p in d.parameters()]
    out = atld_step(_context(config, f, d), x, y)
    assert all(torch.isfinite(v) for v in out.loss_terms.values())
    assert 0 <= float(out.loss_terms["s"]) <= config.s_max
    assert any(not torch.equal(a, b) for a, b in zip(before_f, f.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(before_d, d.parameters()))
    assert ("loss_fool" in out.loss_terms) == (variant == "paper")
    assert out.d_natural.shape == out.d_perturbed.shape == (64,)


def test_classifier_gradient_is_ce_plus_weighted_gap(batch):
    """The combined parameter gradient equals ∇(L_ce + s·scale·L_gap) computed the plain way."""
    x, y = batch
    config = TrainConfig(lr=1.0, momentum=0.0, weight_decay=0.0, d_updates=1)
    f, d = _models(3)
    f_ref, d_ref = _models(3)
    ctx = _context(config, f, d)
    captured = {}
    orig_step = ctx.optimizer.step

    def spy():
        captured["grads"] = [p.grad.clone() for p in f.parameters()]
        orig_step()

    ctx.optimizer.step = spy
    out = atld_step(ctx, x, y)
    s = float(out.loss_terms["s"])

    # reference: the same computation, written out directly
    from atld.methods.losses import latent_gap_loss, smooth_labels, soft_cross_entropy
    f_ref.eval()
    d_ref.train()
    with torch.no_grad():
        z_nat = f_ref(x)
    x_adv = atld_perturbation(f_ref, d_ref, x, z_nat, 0.2, torch.Generator().manual_seed(0))
    f_ref.train()
    z_adv = f_ref(x_adv)
    t = smooth_labels(y, 10, 0.5)
    loss = soft_cross_entropy(z_adv, t) + s * 0.5 * latent_gap_loss(z_adv, z_nat)
    grads = torch.autograd.grad(loss, list(f_ref.parameters()))
    for a, b in zip(captured["grads"], grads):
        assert torch.allclose(a, b, atol=1e-6, rtol=1e-4)
