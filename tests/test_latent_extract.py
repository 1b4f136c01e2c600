"""Extraction, trajectories and the cache (atld/latent/extract.py, trajectories.py, cache.py) on the
`latent_runs` of tests/conftest.py: a small digits classifier saved and loaded through atld.runs,
once with a discriminator (freshly initialised: only its scores' plumbing is tested here) and
once without."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from atld.attacks.gradient import AttackConfig
from atld.errors import DataError
from atld.latent import Embedder, LatentCache, embed_trajectories, extract_latents, gap_for_latents
from atld.latent.trajectories import trajectories


@pytest.fixture(scope="module")
def run(latent_runs):
    return latent_runs[True]


@pytest.fixture(scope="module")
def pgd_latents(run, digits_batch):
    x, y = digits_batch(100)
    attack = AttackConfig("pgd", run.spec.epsilon, steps=10)
    return extract_latents(run, x, y, attack, batch_size=33, generator=torch.Generator().manual_seed(0))


def test_latents_match_the_models_and_respect_the_threat_model(run, pgd_latents, digits_batch):
    lat = pgd_latents
    x, y = digits_batch(100)
    n, eps = len(y), run.spec.epsilon
    assert len(lat) == n and lat.images_nat.shape == (n, 1, 8, 8)
    assert lat.logits_nat.shape == lat.logits_pert.shape == (n, 10)
    assert lat.features_nat.shape == (n, run.classifier.feature_dim)
    assert all(t.device.type == "cpu" for t in (lat.images_pert, lat.logits_pert, lat.d_pert))
    assert torch.equal(lat.images_nat, x) and torch.equal(lat.labels, y)
    assert (lat.images_pert - x).abs().max() <= eps + 1e-6
    assert lat.images_pert.min() >= 0 and lat.images_pert.max() <= 1
    with torch.no_grad():  # oracle: the models themselves, in one batch
        logits, feats = run.classifier.forward_with_features(lat.images_pert)
        d = run.discriminator.natural_probability(logits)
    torch.testing.assert_close(lat.logits_pert, logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(lat.features_pert, feats, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(lat.d_pert, d, rtol=1e-5, atol=1e-5)
    assert torch.equal(lat.pred_pert, lat.logits_pert.argmax(1))
    assert lat.accuracy_nat > 0.75 and lat.accuracy_pert < lat.accuracy_nat - 0.3  # the attack works


def test_gap_numbers_see_the_attack(pgd_latents):
    g = gap_for_latents(pgd_latents, permutations=50)
    assert g["two_sample_accuracy"] > 0.6 and g["two_sample_p_value"] < 1e-3 and g["mmd2"] > 0
    # (MMD with the median-heuristic σ is weak here: σ is set by the between-class distances of
    # the logits, wider than the shift inside a class; see docs/latent.md)
    assert g["knn_mixing"] < g["knn_mixing_expected"]
    assert 0.0 <= g["discriminator_auc"] <= 1.0
    z_nat, z_pert = pgd_latents.latents("features")
    assert z_nat.shape == (100, 128) and z_pert.dtype == np.float32


def test_no_attack_copies_natural_and_seeded_attacks_repeat(run, digits_batch):
    x, y = digits_batch(40)
    lat = extract_latents(run, x, y, None)
    assert torch.equal(lat.logits_pert, lat.logits_nat) and lat.logits_pert is not lat.logits_nat
    fgsm = AttackConfig("fgsm", run.spec.epsilon)
    a = extract_latents(run, x, y, fgsm, generator=torch.Generator().manual_seed(5))
    b = extract_latents(run, x, y, fgsm, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a.images_pert, b.images_pert)
    x_u8 = (x * 255).round().to(torch.uint8)  # uint8 images are read as 0..255
    torch.testing.assert_close(extract_latents(run, x_u8, y, None).logits_nat,
                               extract_latents(run, x_u8.float() / 255, y, None).logits_nat)


def test_model_modes_are_restored_and_runs_without_d_give_none(run, digits_batch, latent_runs):
    x, y = digits_batch(20)
    run.classifier.train()
    try:
        extract_latents(run, x, y, None)
        assert run.classifier.training
    finally:
        run.classifier.eval()
    lat = extract_latents(latent_runs[False], x, y, AttackConfig("fgsm", 0.2))
    assert lat.d_nat is None and lat.d_pert is None
    assert gap_for_latents(lat, permutations=10)["discriminator_auc"] is None


def test_bad_images_give_data_errors(run, digits_batch):
    x, y = digits_batch(10)
    with pytest.raises(DataError, match="expects digits"):
        extract_latents(run, torch.zeros(10, 1, 28, 28), y, None)
    with pytest.raises(DataError, match="labels"):
        extract_latents(run, x, y[:5], None)
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        extract_latents(run, x * 3, y, None)
    with pytest.raises(DataError, match="no images"):
        extract_latents(run, x[:0], y[:0], None)


def test_trajectories_follow_growing_epsilon(run, digits_batch):
    x, y = digits_batch(12)
    eps = [0.0, 0.05, 0.1, 0.2]
    traj = trajectories(run, x, y, eps, "pgd", steps=5)
    assert traj.logits.shape == (4, 12, 10) and traj.d_scores.shape == (4, 12)
    with torch.no_grad():
        torch.testing.assert_close(traj.logits[0], run.classifier(x), rtol=1e-5, atol=1e-5)
    for e, images in zip(eps, traj.images):
        assert (images - x).abs().max() <= e + 1e-6
    moved = (traj.logits - traj.logits[0]).norm(dim=2).mean(1)
    assert moved[1] < moved[3]  # latents move further as ε grows
    emb = embed_trajectories(traj, Embedder("pca"), background=np.random.default_rng(0).normal(size=(30, 10)))
    assert emb.shape == (4, 12, 2) and np.isfinite(emb).all()


def test_cache_hits_and_keys(run, tmp_path, digits_batch):
    x, y = digits_batch(30)
    cache = LatentCache(tmp_path)
    pgd = AttackConfig("pgd", 0.2, steps=3)
    a = cache.latents(run, x, y, pgd, seed=1)
    b = cache.latents(run, x, y, pgd, seed=1)
    assert (cache.misses, cache.hits) == (1, 1)
    assert torch.equal(a.logits_pert, b.logits_pert) and torch.equal(a.d_pert, b.d_pert)
    cache.latents(run, x, y, AttackConfig("pgd", 0.1, steps=3), seed=1)  # another attack: a miss
    cache.latents(run, x[:20], y[:20], pgd, seed=1)  # other data: a miss
    assert (cache.misses, cache.hits) == (3, 1)
    files = sorted(tmp_path.glob("*.npz"))
    assert len(files) == 3
    with np.load(files[0], allow_pickle=False) as z:  # plain arrays, readable without pickle
        assert "logits_nat" in z.files
    for f in files:  # a corrupt entry is a miss, not a crash
        f.write_bytes(b"not a zip file")
    c = cache.latents(run, x, y, pgd, seed=1)
    assert torch.equal(c.logits_pert, a.logits_pert) and cache.misses == 4
    z_nat, z_pert = a.latents()
    emb1 = cache.embedding(Embedder("pca"), z_nat, z_pert)
    emb2 = cache.embedding(Embedder("pca"), z_nat, z_pert)
    assert np.array_equal(emb1, emb2) and cache.hits == 2
    g1 = cache.gap(z_nat, z_pert, permutations=20)
    assert cache.gap(z_nat, z_pert, permutations=20) == g1 and cache.hits == 3
    off = LatentCache(tmp_path / "off", enabled=False)
    off.latents(run, x, y, pgd, seed=1)
    assert not (tmp_path / "off").exists()
