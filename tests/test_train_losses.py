"""ATLD's loss terms: label smoothing, soft cross-entropy, the guarded ratio s."""

import math

import pytest
import torch
import torch.nn.functional as F

from atld.methods.losses import gap_ratio, latent_gap_loss, natural_bce, smooth_labels, soft_cross_entropy


def test_label_smoothing_puts_half_on_the_true_class_and_rows_sum_to_one():
    y = torch.tensor([0, 3, 9, 3])
    t = smooth_labels(y, 10, 0.5)
    assert torch.allclose(t.sum(1), torch.ones(4))
    assert torch.all(t[torch.arange(4), y] == 0.5)
    off = t.clone()
    off[torch.arange(4), y] = 0
    assert torch.allclose(off.sum(1), torch.full((4,), 0.5))
    assert torch.allclose(off[off > 0], torch.full_like(off[off > 0], 0.5 / 9))


def test_soft_cross_entropy_matches_torch_label_smoothing():
    # torch spreads ls/K over all classes; δ on the K-1 others equals ls = δ·K/(K−1).
    torch.manual_seed(0)
    z, y = torch.randn(7, 10), torch.randint(0, 10, (7,))
    ours = soft_cross_entropy(z, smooth_labels(y, 10, 0.5))
    ref = F.cross_entropy(z, y, label_smoothing=0.5 * 10 / 9)
    assert torch.allclose(ours, ref, atol=1e-6)


def test_latent_gap_loss_is_mean_squared_logit_difference_with_constant_target():
    z_nat = torch.randn(4, 10, requires_grad=True)
    z_adv = torch.randn(4, 10, requires_grad=True)
    loss = latent_gap_loss(z_adv, z_nat)
    assert torch.allclose(loss, ((z_adv - z_nat) ** 2).mean())
    loss.backward()
    assert z_nat.grad is None and z_adv.grad is not None  # z_nat is a constant target


def test_bce_from_logits_stays_finite_for_confident_discriminators():
    logits = torch.tensor([1e4, -1e4, 0.0])
    assert torch.isfinite(natural_bce(logits, natural=True))
    assert torch.isfinite(natural_bce(logits, natural=False))
    assert natural_bce(torch.tensor([50.0]), natural=True) < 1e-10


@pytest.mark.parametrize("num,den,expected", [
    (2.0, 4.0, 0.5),          # ordinary ratio
    (3.0, 0.0, 10.0),         # zero denominator -> the cap
    (3.0, -1.0, 10.0),        # negative denominator -> the cap, never a negative s
    (3.0, 1e-30, 10.0),       # tiny denominator -> the cap, no blow-up
    (-2.0, 4.0, 0.0),         # negative numerator -> 0
    (1e30, 1.0, 10.0),        # blow-up -> the cap
    (0.0, 0.0, 10.0),
])
def test_gap_ratio_is_guarded(num, den, expected):
    g_ce = torch.full((2, 3), -5.0)
    g_ce[0, 0] = num
    g_gap = torch.full((2, 3), -5.0)
    g_gap[1, 2] = den
    if num < -5:
        g_ce.fill_(num)
    s = gap_ratio(g_ce, g_gap, s_max=10.0)
    assert s.dim() == 0 and math.isfinite(float(s)) and 0.0 <= float(s) <= 10.0
    assert float(s) == pytest.approx(expected)


def test_gap_ratio_uses_signed_maximum_over_the_whole_batch():
    g_ce = torch.tensor([[1.0, -7.0], [0.5, 2.0]])   # max 2
    g_gap = torch.tensor([[-9.0, 0.25], [0.1, 0.0]])  # max 0.25 (not |−9|)
    assert float(gap_ratio(g_ce, g_gap, s_max=100.0)) == pytest.approx(8.0)
