"""Distribution-gap numbers between natural and perturbed latents, computed in latent space (never
on a 2-D projection, whose distances UMAP and t-SNE do not preserve).

Four measures, each overall and per class:
- discriminator AUC: how well the run's own D tells the two apart (natural = positive class);
  0.5 = cannot, 1 = perfectly. Only when D scores are given.
- classifier two-sample test (Lopez-Paz & Oquab, ICLR 2017): held-out accuracy of a fresh
  logistic regression (on standardised latents) that separates natural from perturbed, by k-fold
  cross-validation; 0.5 = no gap. p-value: one-sided binomial test of the pooled held-out
  predictions against chance.
- MMD² (Gretton et al., JMLR 2012): unbiased estimate with an RBF kernel exp(−‖a−b‖² / 2σ²), σ
  = median pairwise distance of the pooled sample (median heuristic; the per-class numbers reuse
  the overall σ so that they are comparable); p-value from a permutation test.
- kNN mixing: the mean share of natural points among a perturbed point's k nearest neighbours in
  the pooled set (the point itself excluded). Perfect mixing gives about n_nat / (N − 1)
  (`knn_mixing_expected`); 0 means the perturbed cloud is separate.

Pairs: when natural row i and perturbed row i come from the same image (as in a `LatentSet`), the
two rows of a pair always land in the same cross-validation fold, so the classifier never sees
the partner of a test point. For independent samples this grouping is harmless.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

from atld.errors import DataError, check_int_at_least, require

if TYPE_CHECKING:
    from atld.latent.extract import LatentSet

MIN_CLASS_POINTS = 10  # per side; a class with fewer natural (or perturbed) points gets None
MEASURE_KEYS = ("discriminator_auc", "two_sample_accuracy", "two_sample_p_value", "mmd2", "mmd_p_value",
                "mmd_bandwidth", "knn_mixing", "knn_mixing_expected")


def as_2d(name: str, z) -> np.ndarray:
    """z as a float64 array [N, D] of finite values, or a one-line DataError."""
    z = np.asarray(z, dtype=np.float64)
    require(z.ndim == 2, f"{name} must be a 2-D array [N, D], got shape {z.shape}", DataError)
    require(bool(np.isfinite(z).all()), f"{name} contains NaN or infinite values", DataError)
    return z


def discriminator_auc(d_nat: ArrayLike, d_pert: ArrayLike) -> float:
    """ROC AUC of D's natural probability, natural = positive; 0.5 = chance, 1 = perfect."""
    from sklearn.metrics import roc_auc_score

    scores = np.concatenate([np.asarray(d_nat, np.float64), np.asarray(d_pert, np.float64)])
    truth = np.concatenate([np.ones(len(d_nat)), np.zeros(len(d_pert))])
    return float(roc_auc_score(truth, scores))


def _balanced(z_nat: np.ndarray, z_pert: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Equal-sized samples (paired rows stay paired when the sizes already agree)."""
    n = min(len(z_nat), len(z_pert))
    if len(z_nat) > n:
        z_nat = z_nat[np.sort(rng.choice(len(z_nat), n, replace=False))]
    if len(z_pert) > n:
        z_pert = z_pert[np.sort(rng.choice(len(z_pert), n, replace=False))]
    return z_nat, z_pert


def two_sample_test(z_nat: ArrayLike, z_pert: ArrayLike, folds: int = 5, random_state: int = 0) -> tuple[float, float]:
    """(held-out accuracy, one-sided binomial p-value) of a logistic regression separating natural
    from perturbed latents, by `folds`-fold cross-validation over pairs. Unequal sizes are first
    subsampled to the smaller one, so chance is exactly 0.5."""
    from scipy.stats import binomtest
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import KFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(random_state)
    z_nat, z_pert = _balanced(as_2d("z_nat", z_nat), as_2d("z_pert", z_pert), rng)
    n = len(z_nat)
    require(n >= folds, f"the two-sample test needs at least {folds} points per side, got {n}", DataError)
    z = np.concatenate([z_nat, z_pert])
    target = np.concatenate([np.ones(n, int), np.zeros(n, int)])
    correct = 0
    for train, test in KFold(folds, shuffle=True, random_state=random_state).split(np.arange(n)):
        rows_train, rows_test = np.concatenate([train, train + n]), np.concatenate([test, test + n])
        model = make_pipeline(StandardScaler(), LogisticRegression(solver="liblinear"))
        model.fit(z[rows_train], target[rows_train])
        correct += int((model.predict(z[rows_test]) == target[rows_test]).sum())
    return correct / (2 * n), float(binomtest(correct, 2 * n, 0.5, alternative="greater").pvalue)


def _sq_dists(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.maximum(d, 0.0)


def median_bandwidth(z: ArrayLike, max_points: int = 1000, random_state: int = 0) -> float:
    """Median pairwise Euclidean distance of (a seeded subsample of) z: the RBF σ."""
    z = as_2d("z", z)
    if len(z) > max_points:
        z = z[np.random.default_rng(random_state).choice(len(z), max_points, replace=False)]
    d = _sq_dists(z, z)[np.triu_indices(len(z), k=1)]
    sigma = float(np.sqrt(np.median(d))) if len(d) else 0.0
    return sigma if sigma > 0 else 1.0  # all points equal: any σ gives MMD² = 0


def mmd_test(z_nat: ArrayLike, z_pert: ArrayLike, bandwidth: float | None = None, permutations: int = 200,
             random_state: int = 0) -> tuple[float, float, float]:
    """(unbiased MMD², permutation p-value, σ) with an RBF kernel of width σ (median heuristic when
    `bandwidth` is None). p = (1 + #{permuted MMD² ≥ observed}) / (1 + permutations)."""
    z_nat, z_pert = as_2d("z_nat", z_nat), as_2d("z_pert", z_pert)
    n, m = len(z_nat), len(z_pert)
    require(n >= 2 and m >= 2, f"MMD needs at least 2 points per side, got {n} and {m}", DataError)
    check_int_at_least("permutations", permutations, 1)
    z = np.concatenate([z_nat, z_pert])
    sigma = median_bandwidth(z, random_state=random_state) if bandwidth is None else float(bandwidth)
    # float32 halves the cost of the one big product; sums of 0/1-weighted kernel values keep a
    # relative error near 1e-6, far below the permutation spread of MMD².
    kernel = np.exp(-_sq_dists(z, z) / (2.0 * sigma * sigma)).astype(np.float32)
    # Column 0 is the observed split, the others are permutations; with a = indicator of the
    # "natural" group and b = 1 − a: aᵀKa, bᵀKb and aᵀKb come from one matrix product.
    rng = np.random.default_rng(random_state)
    assign = np.zeros((n + m, permutations + 1), dtype=np.float32)
    assign[:n, 0] = 1.0
    for p in range(1, permutations + 1):
        assign[rng.permutation(n + m)[:n], p] = 1.0
    k_a = kernel @ assign
    row = kernel.sum(1, dtype=np.float64)
    total = row.sum()
    aka = (assign * k_a).sum(0, dtype=np.float64)
    ar = assign.T.astype(np.float64) @ row
    bkb = total - 2.0 * ar + aka
    akb = ar - aka
    trace = 1.0  # k(x, x) = 1 for the RBF kernel
    mmd2 = (aka - n * trace) / (n * (n - 1)) + (bkb - m * trace) / (m * (m - 1)) - 2.0 * akb / (n * m)
    p_value = (1 + int((mmd2[1:] >= mmd2[0]).sum())) / (1 + permutations)
    return float(mmd2[0]), float(p_value), sigma


def knn_mixing(z_nat: ArrayLike, z_pert: ArrayLike, neighbors: int = 10) -> tuple[float, float]:
    """(mean share of natural points among each perturbed point's k nearest neighbours in the
    pooled set, the value expected under perfect mixing n_nat / (N − 1))."""
    from sklearn.neighbors import NearestNeighbors

    z_nat, z_pert = as_2d("z_nat", z_nat), as_2d("z_pert", z_pert)
    n, m = len(z_nat), len(z_pert)
    check_int_at_least("neighbors", neighbors, 1)
    require(n + m - 1 >= neighbors, f"kNN mixing needs more than {neighbors} points, got {n + m}", DataError)
    nn = NearestNeighbors(n_neighbors=neighbors).fit(np.concatenate([z_nat, z_pert]))
    # kneighbors() without X leaves each point out of its own neighbours (even with duplicates).
    idx = nn.kneighbors(return_distance=False)[n:]
    return float((idx < n).mean()), n / (n + m - 1)


def _measures(z_nat, z_pert, d_nat, d_pert, *, folds, permutations, neighbors, bandwidth, max_points,
              random_state) -> dict:
    rng = np.random.default_rng(random_state)
    out = {"n_natural": int(len(z_nat)), "n_perturbed": int(len(z_pert)),
           "discriminator_auc": None if d_nat is None else discriminator_auc(d_nat, d_pert)}
    acc, p = two_sample_test(z_nat, z_pert, folds, random_state)
    out.update(two_sample_accuracy=acc, two_sample_p_value=p)
    a, b = z_nat, z_pert
    if max_points and len(a) > max_points:  # MMD costs O(N²) memory: subsample, pairs kept
        keep = np.sort(rng.choice(len(a), max_points, replace=False))
        a, b = a[keep], (b[keep] if len(b) == len(z_nat) else b)
    if max_points and len(b) > max_points:
        b = b[np.sort(rng.choice(len(b), max_points, replace=False))]
    mmd2, p_mmd, sigma = mmd_test(a, b, bandwidth, permutations, random_state)
    out.update(mmd2=mmd2, mmd_p_value=p_mmd, mmd_bandwidth=sigma)
    k = min(neighbors, len(z_nat) + len(z_pert) - 1)
    mix, expected = knn_mixing(z_nat, z_pert, k)
    out.update(knn_mixing=mix, knn_mixing_expected=expected)
    return out


def gap_numbers(z_nat: ArrayLike, z_pert: ArrayLike, labels: ArrayLike | None = None, d_nat: ArrayLike | None = None,
                d_pert: ArrayLike | None = None, *, folds: int = 5, permutations: int = 200,
                neighbors: int = 10, max_points: int = 2000, per_class: bool = True,
                random_state: int = 0) -> dict:
    """The gap between natural latents z_nat [N, D] and perturbed latents z_pert [M, D].

    labels: int [N] (or [N + M]: natural labels then perturbed labels), for the per-class numbers;
    d_nat [N], d_pert [M]: D's natural probability (both or neither). max_points caps the points
    per side that enter MMD (O(N²) memory). Returns a JSON-ready dict: n_natural, n_perturbed,
    discriminator_auc (None without D), two_sample_accuracy, two_sample_p_value, mmd2,
    mmd_p_value, mmd_bandwidth, knn_mixing, knn_mixing_expected, settings, per_class (a list of
    dicts with label and the same measures; None values for classes with fewer than
    MIN_CLASS_POINTS points per side; empty without labels)."""
    z_nat, z_pert = as_2d("z_nat", z_nat), as_2d("z_pert", z_pert)
    require(z_nat.shape[1] == z_pert.shape[1],
            f"natural and perturbed latents differ in width: {z_nat.shape[1]} vs {z_pert.shape[1]}", DataError)
    require((d_nat is None) == (d_pert is None), "give D scores for both sides or for neither")
    if d_nat is not None:
        d_nat, d_pert = np.asarray(d_nat, np.float64).ravel(), np.asarray(d_pert, np.float64).ravel()
        require(len(d_nat) == len(z_nat) and len(d_pert) == len(z_pert),
                "D scores must have one value per latent", DataError)
    check_int_at_least("folds", folds, 2)
    check_int_at_least("max points", max_points, 2)
    settings = dict(folds=folds, permutations=permutations, neighbors=neighbors, max_points=max_points,
                    random_state=random_state)
    out = _measures(z_nat, z_pert, d_nat, d_pert, bandwidth=None, **settings)
    out["settings"] = settings
    out["per_class"] = []
    if labels is None or not per_class:
        return out
    labels = np.asarray(labels).ravel()
    if len(labels) == len(z_nat) and len(z_nat) == len(z_pert):
        lab_nat = lab_pert = labels
    else:
        require(len(labels) == len(z_nat) + len(z_pert),
                f"labels must have N = {len(z_nat)} or N + M = {len(z_nat) + len(z_pert)} entries", DataError)
        lab_nat, lab_pert = labels[:len(z_nat)], labels[len(z_nat):]
    for c in np.unique(np.concatenate([lab_nat, lab_pert])):
        sn, sp = lab_nat == c, lab_pert == c
        row = {"label": int(c)}
        if sn.sum() >= MIN_CLASS_POINTS and sp.sum() >= MIN_CLASS_POINTS:
            row.update(_measures(z_nat[sn], z_pert[sp], None if d_nat is None else d_nat[sn],
                                 None if d_pert is None else d_pert[sp], bandwidth=out["mmd_bandwidth"],
                                 folds=min(folds, int(min(sn.sum(), sp.sum()))), permutations=permutations,
                                 neighbors=neighbors, max_points=max_points, random_state=random_state))
        else:
            row.update({k: None for k in MEASURE_KEYS}, n_natural=int(sn.sum()), n_perturbed=int(sp.sum()))
        out["per_class"].append(row)
    return out


def gap_for_latents(latents: LatentSet, space: str = "logits", **kwargs) -> dict:
    """`gap_numbers` for a `LatentSet` (its true labels and D scores), in `space` ("logits" | "features")."""
    z_nat, z_pert = latents.latents(space)
    d_nat = None if latents.d_nat is None else latents.d_nat.numpy()
    d_pert = None if latents.d_pert is None else latents.d_pert.numpy()
    return gap_numbers(z_nat, z_pert, latents.labels.numpy(), d_nat, d_pert, **kwargs)
