"""atld.latent.axes: maps that read — logits without their softmax-invariant offset, the second-axis
warning, and two models side by side that never collapse to a line."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from atld.config.latent import LatentConfig
from atld.data.loaders import load_sample
from atld.latent import latent_map
from atld.latent.axes import (LOW_AXIS_SHARE, axis_warning, drop_logit_offset, map_input, offset_share, pca_axes,
                              side_by_side)
from atld.latent.maps import explained_variance
from atld.latent.trajectories import AttackPath, embed_path
from atld.runs.store import load_checkpoint


def _clouds(rng, n=200, k=10, offset_spread=0.0, shift=1.0):
    """Paired natural / perturbed logits: class structure in the softmax's directions, plus a
    per-image offset (the same number added to every logit) of spread `offset_spread`."""
    centres = rng.normal(scale=3.0, size=(k, k))
    labels = rng.integers(0, k, size=n)
    nat = centres[labels] + rng.normal(size=(n, k))
    pert = nat + shift * rng.normal(size=(n, k))
    off = offset_spread * rng.normal(size=(2 * n, 1))
    return np.concatenate([nat, pert]) + off, labels


def test_dropping_the_offset_keeps_every_softmax_probability_and_removes_only_the_offset():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(50, 10)) + rng.normal(scale=30, size=(50, 1))
    centred = drop_logit_offset(z)
    assert np.allclose(centred.mean(axis=1), 0)
    assert torch.allclose(torch.softmax(torch.tensor(z), 1), torch.softmax(torch.tensor(centred), 1))
    assert np.allclose(drop_logit_offset(centred), centred)  # idempotent
    feats = rng.normal(size=(5, 4)) + 7
    assert np.array_equal(map_input(feats, "features"), feats) and np.allclose(map_input(z, "logits"), centred)


@pytest.mark.parametrize("spread, low, high", [(0.0, 0.0, 0.2), (30.0, 0.97, 1.0)])  # isotropic: about 1/K
def test_offset_share_measures_the_variance_along_the_offset(spread, low, high):
    z, _ = _clouds(np.random.default_rng(1), offset_spread=spread)
    assert low <= offset_share(z) <= high
    pure = np.repeat(np.random.default_rng(2).normal(size=(40, 1)), 10, axis=1)  # nothing but offsets
    assert offset_share(pure) == pytest.approx(1.0)
    assert offset_share(z[:1]) == 0.0 and offset_share(np.ones((5, 10))) == 0.0


def test_the_second_axis_warning_fires_below_one_percent_only():
    assert axis_warning((0.995, 0.004)) is not None and "0.4 %" in axis_warning((0.995, 0.004))
    assert axis_warning((0.9, LOW_AXIS_SHARE)) is None and axis_warning((0.6, 0.3)) is None
    assert axis_warning(None) is None and axis_warning((1.0,)) is None


def test_a_raw_pca_of_offset_logits_is_a_line_and_the_map_input_is_not():
    z, _ = _clouds(np.random.default_rng(3), offset_spread=40.0)
    raw = pca_axes(z)[2]
    assert axis_warning(raw) is not None  # the failure the maps avoid
    fixed = explained_variance(z[:200], z[200:], "joint", space="logits")
    assert axis_warning(fixed) is None and fixed[1] > 0.05


def test_pca_axes_sign_is_fixed_and_missing_axes_are_zero():
    rng = np.random.default_rng(4)
    z = rng.normal(size=(30, 5)) * [5, 3, 1, 1, 1]
    _, basis, shares = pca_axes(z)
    _, basis_neg, _ = pca_axes(-z)
    assert np.allclose(basis, basis_neg)  # the SVD's arbitrary sign does not flip a recomputed map
    assert shares[0] > shares[1] > 0
    _, narrow, narrow_shares = pca_axes(rng.normal(size=(10, 1)))
    assert narrow[:, 1].tolist() == [0.0] and narrow_shares[1] == 0.0


@pytest.mark.parametrize("offset_a, offset_b", [(40.0, 0.0), (0.0, 40.0), (40.0, 25.0)])
def test_side_by_side_never_collapses_whichever_side_has_the_offset(offset_a, offset_b):
    rng = np.random.default_rng(5)
    za, _ = _clouds(rng, offset_spread=offset_a)
    zb, _ = _clouds(rng, k=10, offset_spread=offset_b)
    sb = side_by_side(za, zb, 200, 200)
    for xy, shares in zip(sb.coords, sb.explained):
        assert xy.shape == (400, 2) and axis_warning(shares) is None
        # each axis spreads the points: neither map is a streak
        assert xy.std(axis=0).min() > 0.3 * xy.std(axis=0).max()
        assert np.sqrt((xy[:200] ** 2).sum(1).mean()) == pytest.approx(1.0)  # units of the natural spread


def test_side_by_side_rotates_the_second_map_onto_the_first():
    rng = np.random.default_rng(6)
    za, _ = _clouds(rng, k=6)
    angle = np.deg2rad(50)
    turn = np.eye(6)
    turn[:2, :2] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    sb = side_by_side(za * 3.0, (za @ turn) * 0.5, 200, 200, space="features")  # same cloud, turned and scaled
    assert np.allclose(sb.coords[0], sb.coords[1], atol=1e-6)


def test_side_by_side_accepts_different_widths():
    rng = np.random.default_rng(7)
    za, _ = _clouds(rng, k=10)
    zb = rng.normal(size=(400, 32))
    sb = side_by_side(za, zb, 200, 200, space="features")
    assert sb.coords[0].shape == sb.coords[1].shape == (400, 2)


def test_the_attack_path_map_ignores_the_logit_offset():
    rng = np.random.default_rng(8)
    logits = torch.tensor(rng.normal(size=(4, 6, 10)), dtype=torch.float32)
    offsets = torch.tensor(rng.normal(scale=50, size=(4, 6, 1)), dtype=torch.float32)
    make = lambda z: AttackPath(None, z, z.argmax(2), torch.zeros(6, dtype=torch.long), None, None, None, None)
    plain, _, _ = embed_path(make(logits))
    shifted, _, _ = embed_path(make(logits + offsets))
    assert np.allclose(plain, shifted, atol=1e-4)


@pytest.fixture(scope="module")
def shipped_maps():
    """Latent maps of two shipped MNIST models on the first 60 images of the shipped sample."""
    data = load_sample("mnist", "checkpoints/samples")
    x, y = data.x_test[:60], data.y_test[:60]
    config = LatentConfig(attack="fgsm", limit=60, permutations=10)
    return {name: latent_map(load_checkpoint(f"checkpoints/{name}"), x, y, config)
            for name in ("mnist-atld", "mnist-natural")}


def test_a_shipped_atld_model_on_either_side_gives_two_readable_clouds(shipped_maps):
    atld_m, nat_m = shipped_maps["mnist-atld"], shipped_maps["mnist-natural"]
    assert atld_m.offset_share > 0.5  # the shipped ATLD logits vary mostly along the offset
    assert axis_warning(atld_m.explained) is None  # ... which the map leaves out
    za, zn = (np.concatenate(m.latents.latents("logits")) for m in (atld_m, nat_m))
    for first, second in ((za, zn), (zn, za)):
        sb = side_by_side(first, second, 60, 60)
        for xy, shares in zip(sb.coords, sb.explained):
            assert axis_warning(shares) is None and xy.std(axis=0).min() > 0.3 * xy.std(axis=0).max()
