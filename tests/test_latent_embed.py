"""Projections (atld/latent/embed.py): the estimator contract, PCA against scikit-learn, the two
fit modes, the stratified subsample, t-SNE's limits and one (slow) UMAP test."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.decomposition import PCA

from atld.errors import ConfigError, DataError
from atld.latent import TSNE_MAX_POINTS, Embedder, stratified_subsample, warm_up_umap


def _clusters(n_per: int, d: int, seed: int, centers: int = 3, spread: float = 6.0):
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(centers, d)) * spread
    labels = np.repeat(np.arange(centers), n_per)
    return means[labels] + rng.normal(size=(len(labels), d)), labels


def _same_up_to_sign(a: np.ndarray, b: np.ndarray) -> bool:
    signs = np.sign((a * b).sum(0))
    return np.allclose(a, b * signs, atol=1e-8)


def test_pca_joint_matches_sklearn_on_the_stacked_latents():
    z_nat, labels = _clusters(30, 5, 0)
    z_pert = z_nat + 0.5
    emb = Embedder("pca").fit(z_nat, z_pert, labels)
    assert emb.embedding_.shape == (180, 2) and emb.n_natural_ == 90
    oracle = PCA(2).fit_transform(np.concatenate([z_nat, z_pert]))
    assert _same_up_to_sign(emb.embedding_, oracle)
    assert np.array_equal(emb.fit_index_, np.arange(180))


def test_natural_mode_projects_perturbed_onto_the_natural_map_and_understates_the_gap():
    rng = np.random.default_rng(1)
    z_nat = np.zeros((100, 3))
    z_nat[:, :2] = rng.normal(size=(100, 2)) * [3.0, 2.0]  # natural latents vary in dims 0 and 1 only
    z_pert = z_nat + [0.0, 0.0, 10.0]  # the attack moves them along a new direction, dim 2
    natural = Embedder("pca", fit_on="natural").fit(z_nat, z_pert)
    assert _same_up_to_sign(natural.embedding_[:100], PCA(2).fit_transform(z_nat))
    # the new direction is invisible on the natural map: each perturbed point sits on its twin
    assert np.allclose(natural.embedding_[100:], natural.embedding_[:100], atol=1e-8)
    joint = Embedder("pca", fit_on="joint").fit(z_nat, z_pert)
    gap = np.abs(joint.embedding_[100:] - joint.embedding_[:100]).max(1)
    assert gap.min() > 5.0  # the joint map shows it
    assert np.allclose(natural.transform(z_pert), natural.embedding_[100:])


def test_max_fit_points_fits_on_a_subsample_and_places_the_rest():
    z_nat, labels = _clusters(50, 4, 2)
    emb = Embedder("pca", max_fit_points=60, random_state=3).fit(z_nat, z_nat + 1.0, labels)
    assert len(emb.fit_index_) == 60 and emb.embedding_.shape == (300, 2)
    rest = np.setdiff1d(np.arange(300), emb.fit_index_)
    stacked = np.concatenate([z_nat, z_nat + 1.0])
    assert np.allclose(emb.embedding_[rest], emb.model_.transform(stacked[rest]))
    again = Embedder("pca", max_fit_points=60, random_state=3).fit(z_nat, z_nat + 1.0, labels)
    assert np.array_equal(again.embedding_, emb.embedding_)  # seeded


def test_stratified_subsample_keeps_group_shares():
    groups = np.array([0] * 600 + [1] * 300 + [2] * 100)
    idx = stratified_subsample(groups, 100, random_state=0)
    assert len(idx) == len(np.unique(idx)) == 100 and np.all(np.diff(idx) > 0)
    assert np.bincount(groups[idx]).tolist() == [60, 30, 10]
    assert np.array_equal(idx, stratified_subsample(groups, 100, random_state=0))
    assert np.array_equal(stratified_subsample(groups, 5000), np.arange(1000))


def test_tsne_small_set_and_its_limits():
    z_nat, labels = _clusters(20, 4, 4, spread=20.0)
    emb = Embedder("tsne", perplexity=10, max_iter=250).fit(z_nat, z_nat + 0.1, labels)
    assert emb.embedding_.shape == (120, 2) and np.isfinite(emb.embedding_).all()
    with pytest.raises(ConfigError, match="small sets"):
        big = np.zeros((TSNE_MAX_POINTS // 2 + 1, 2))
        Embedder("tsne").fit(big, big)
    with pytest.raises(ConfigError, match="t-SNE"):
        Embedder("tsne", fit_on="natural")
    with pytest.raises(ConfigError, match="transform"):
        emb.transform(z_nat)


def test_bad_parameters_and_inputs():
    with pytest.raises(ConfigError, match="unknown projection"):
        Embedder("isomap")
    with pytest.raises(ConfigError, match="fit mode"):
        Embedder("pca", fit_on="perturbed")
    with pytest.raises(ConfigError, match="n_components"):
        Embedder("pca", n_components=5)
    with pytest.raises(ConfigError, match="fit the Embedder"):
        Embedder("pca").transform(np.zeros((3, 2)))
    with pytest.raises(DataError, match="NaN"):
        Embedder("pca").fit(np.full((5, 2), np.nan))
    with pytest.raises(DataError, match="width"):
        Embedder("pca").fit(np.zeros((5, 2)), np.zeros((5, 3)))
    assert Embedder("pca").fit(np.random.default_rng(0).normal(size=(10, 1))).embedding_.shape == (10, 2)


@pytest.mark.slow
def test_umap_separates_clusters_and_transforms_new_points():
    """The one UMAP test (numba's JIT costs about 40 s of CPU once per process)."""
    warm_up_umap()
    assert warm_up_umap() == 0.0  # paid once
    z_nat, labels = _clusters(60, 60, 5, spread=3.0)  # 60 dims: reduced by PCA first
    emb = Embedder("umap", max_fit_points=200, pca_dims=20, n_neighbors=10).fit(z_nat, z_nat + 0.05, labels)
    assert emb.reducer_ is not None and emb.reducer_.n_components_ == 20
    assert emb.embedding_.shape == (360, 2) and len(emb.fit_index_) == 200
    # every point's nearest 2-D neighbour (itself excluded) is of its own cluster, placed or fitted
    from sklearn.neighbors import NearestNeighbors

    both = np.concatenate([labels, labels])
    nearest = NearestNeighbors(n_neighbors=1).fit(emb.embedding_).kneighbors(return_distance=False)[:, 0]
    assert (both[nearest] == both).mean() > 0.98
