"""Gap numbers (atld/latent/gap.py): exactness against small oracles, and statistical sanity on
synthetic latents with fixed seeds (same distribution -> no gap found; shifted -> every measure
finds it)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from atld.errors import ConfigError, DataError
from atld.latent import discriminator_auc, gap_numbers, knn_mixing, mmd_test, two_sample_test
from atld.latent.gap import MEASURE_KEYS, MIN_CLASS_POINTS


def _gauss(n: int, d: int, seed: int, shift: float = 0.0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, d)) + shift


# ----------------------------------------------------------------------------- oracles

def test_discriminator_auc_matches_pairwise_definition():
    rng = np.random.default_rng(0)
    pos, neg = rng.random(30), rng.random(40) - 0.2
    pos[:5] = neg[:5]  # ties count one half
    oracle = np.mean([(p > q) + 0.5 * (p == q) for p, q in itertools.product(pos, neg)])
    assert discriminator_auc(pos, neg) == pytest.approx(oracle)
    assert discriminator_auc(np.ones(5), np.zeros(5)) == 1.0


def _mmd2_oracle(a: np.ndarray, b: np.ndarray, sigma: float) -> float:
    def k(u, v):
        return np.exp(-np.sum((u - v) ** 2) / (2 * sigma ** 2))
    n, m = len(a), len(b)
    xx = sum(k(a[i], a[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    yy = sum(k(b[i], b[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(a[i], b[j]) for i in range(n) for j in range(m)) / (n * m)
    return xx + yy - 2 * xy


def test_mmd_is_the_unbiased_estimator_and_p_value_is_a_permutation_p_value():
    a, b = _gauss(12, 3, 1), _gauss(9, 3, 2, shift=0.7)
    mmd2, p, sigma = mmd_test(a, b, bandwidth=1.3, permutations=50)
    assert sigma == 1.3
    assert mmd2 == pytest.approx(_mmd2_oracle(a, b, 1.3), rel=1e-4, abs=1e-6)
    assert 1 / 51 <= p <= 1 and (p * 51) == pytest.approx(round(p * 51))


def test_mmd_median_heuristic_bandwidth():
    a, b = _gauss(20, 4, 3), _gauss(20, 4, 4)
    z = np.concatenate([a, b])
    dists = [np.linalg.norm(z[i] - z[j]) for i in range(len(z)) for j in range(i + 1, len(z))]
    assert mmd_test(a, b, permutations=5)[2] == pytest.approx(np.median(dists), rel=1e-6)


def test_knn_mixing_exact_cases():
    far = _gauss(40, 3, 5)
    # separated clouds: no perturbed point has a natural neighbour
    assert knn_mixing(far, far + 100.0, neighbors=5) == (0.0, 40 / 79)
    # perturbed == natural: with k = 1 each perturbed point's neighbour (itself excluded) is its twin
    assert knn_mixing(far, far.copy(), neighbors=1)[0] == 1.0


def test_two_sample_test_is_exact_chance_on_identical_pairs():
    z = _gauss(100, 4, 6)
    acc, p = two_sample_test(z, z.copy())
    assert acc == 0.5 and p > 0.4  # paired rows share a fold and a prediction


# ----------------------------------------------------------------------------- statistical sanity

@pytest.fixture(scope="module")
def same_and_shifted():
    n, d = 300, 10
    labels = np.random.default_rng(9).integers(0, 3, n)
    nat = _gauss(n, d, 10)
    same = _gauss(n, d, 11)
    shifted = _gauss(n, d, 12, shift=0.5)  # 0.5 σ per dimension, 1.6 σ overall: Bayes accuracy 0.79
    rng = np.random.default_rng(13)
    d_random = (rng.random(n), rng.random(n))
    d_good = (rng.random(n) * 0.5 + 0.5, rng.random(n) * 0.5)  # D separates perfectly
    return {"labels": labels, "nat": nat,
            "same": gap_numbers(nat, same, labels, *d_random, permutations=100),
            "shifted": gap_numbers(nat, shifted, labels, *d_good, permutations=100)}


def test_same_distribution_shows_no_gap(same_and_shifted):
    g = same_and_shifted["same"]
    assert abs(g["two_sample_accuracy"] - 0.5) < 0.06 and g["two_sample_p_value"] > 0.05
    assert g["mmd_p_value"] > 0.05 and abs(g["mmd2"]) < 0.01
    assert abs(g["knn_mixing"] - g["knn_mixing_expected"]) < 0.05
    assert abs(g["discriminator_auc"] - 0.5) < 0.08


def test_shifted_distribution_is_detected_by_every_measure(same_and_shifted):
    g = same_and_shifted["shifted"]
    assert g["two_sample_accuracy"] > 0.7 and g["two_sample_p_value"] < 1e-6
    assert g["mmd_p_value"] <= 1 / 101 + 1e-12 and g["mmd2"] > 0.05
    assert g["knn_mixing"] < g["knn_mixing_expected"] - 0.1
    assert g["discriminator_auc"] == 1.0


def test_per_class_numbers_find_the_class_that_moved():
    rng = np.random.default_rng(20)
    labels = np.repeat([0, 1], 150)
    nat = rng.normal(size=(300, 6))
    pert = nat + rng.normal(size=(300, 6)) * 0.05
    pert[labels == 1] += 1.0  # only class 1 is pushed off
    rows = {r["label"]: r for r in gap_numbers(nat, pert, labels, permutations=50)["per_class"]}
    assert rows[1]["two_sample_accuracy"] > 0.9 and rows[1]["mmd_p_value"] < 0.05
    assert rows[0]["two_sample_accuracy"] < 0.65 and rows[0]["mmd_p_value"] > 0.05
    assert rows[1]["knn_mixing"] < 0.3 and rows[0]["knn_mixing"] > 0.4
    assert rows[0]["n_natural"] == rows[0]["n_perturbed"] == 150


def test_result_shape_is_stable_and_small_classes_get_none():
    nat = _gauss(60, 3, 30)
    labels = np.array([0] * 55 + [1] * 5)
    g = gap_numbers(nat, nat + 0.1, labels, permutations=10)
    assert set(MEASURE_KEYS) <= set(g) and g["discriminator_auc"] is None
    small = next(r for r in g["per_class"] if r["label"] == 1)
    assert small["n_natural"] == 5 < MIN_CLASS_POINTS
    assert all(small[k] is None for k in MEASURE_KEYS)
    big = next(r for r in g["per_class"] if r["label"] == 0)
    assert set(big) == set(small)
    assert gap_numbers(nat, nat + 0.1, permutations=10)["per_class"] == []


def test_bad_input_gives_clear_errors():
    z = _gauss(20, 3, 40)
    bad = z.copy()
    bad[0, 0] = np.nan
    with pytest.raises(DataError, match="NaN"):
        gap_numbers(z, bad)
    with pytest.raises(DataError, match="width"):
        gap_numbers(z, _gauss(20, 4, 41))
    with pytest.raises(ConfigError, match="both sides"):
        gap_numbers(z, z, d_nat=np.ones(20))
    with pytest.raises(DataError, match="labels"):
        gap_numbers(z, z, labels=np.zeros(7))
    with pytest.raises(DataError, match="2-D"):
        gap_numbers(z[0], z)
