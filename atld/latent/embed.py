"""2-D (or 3-D) maps of natural and perturbed latents, scikit-learn estimator style:
`Embedder(method=...).fit(z_nat, z_pert)` sets `embedding_` ([N_nat + N_pert, n_components],
natural rows first).

Modes (`fit_on`):
- "joint" (default): the map is fit on natural and perturbed latents together, so both clouds
  shape it and a gap between them can show.
- "natural": the map is fit on natural latents only and perturbed latents are projected onto it
  (`transform`). This understates the gap: the map only has room for directions along which
  natural latents vary, so perturbed latents that leave the natural manifold in a new direction
  are folded back onto it (PCA drops that direction; UMAP places a new point near its nearest
  natural neighbours). It is the mode for comparing several runs or ε on one fixed map.

Methods: PCA (instant, linear, global distances kept), UMAP (umap-learn, on PCA-reduced latents
of at most `pca_dims` dimensions, fit on a class-stratified subsample of at most
`max_fit_points` rows; the other rows are placed with `transform`), t-SNE (scikit-learn; small
sets only, joint mode only, since t-SNE has no transform).
"""

from __future__ import annotations

import threading
import time
import warnings

import numpy as np
from numpy.typing import ArrayLike

from atld.config.vocab import FitMode, Projection, parse
from atld.errors import ConfigError, DataError, check_int_at_least, check_int_in, require
from atld.latent.gap import as_2d

TSNE_MAX_POINTS = 3000  # sklearn's exact-gradient-free Barnes-Hut t-SNE takes ~1 min beyond this on 2 cores
TSNE_EXACT_POINTS = 500  # up to this many points t-SNE uses exact gradients (faster on small sets)
UMAP_PCA_DIMS = 50  # UMAP input is PCA-reduced to at most this many dimensions
# UMAP fits on at most this many rows (class-stratified); the rest are placed with `transform`.
# About 2 s of CPU for 5,000 points after `warm_up_umap` (docs/benchmarks.md).
UMAP_MAX_FIT_POINTS = 5000
# n_epochs 200 (umap's own default above 10,000 points; 500 below): the layout of a few thousand
# points has settled by then, and it is 2.5x faster.
UMAP_DEFAULTS = {"n_neighbors": 15, "min_dist": 0.1, "n_epochs": 200}


def stratified_subsample(groups: ArrayLike, size: int, random_state: int | None = 0) -> np.ndarray:
    """Sorted indices of `size` rows drawn without replacement so that every group keeps (up to
    rounding) its share of the rows. groups: int array [N]."""
    groups = np.asarray(groups).ravel()
    n = len(groups)
    if size >= n:
        return np.arange(n)
    rng = np.random.default_rng(random_state)
    order = rng.permutation(n)
    _, inverse, counts = np.unique(groups[order], return_inverse=True, return_counts=True)
    rank = np.zeros(n)
    seen = np.zeros(len(counts))
    for pos, g in enumerate(inverse):  # rank of each shuffled row within its group
        rank[pos] = seen[g]
        seen[g] += 1
    key = (rank + rng.random(n)) / counts[inverse]  # rows with small key fill each group evenly
    return np.sort(order[np.argsort(key, kind="stable")[:size]])


class Embedder:
    """Project latents to `n_components` dimensions (see the module docstring).

    Parameters (stored as given, scikit-learn style):
        method: "pca" | "umap" | "tsne".
        fit_on: "joint" | "natural".
        n_components: output dimensions (2 for the maps, 3 allowed).
        random_state: seed (int) for every random choice; None lets UMAP use all cores
            (non-reproducible).
        max_fit_points: most rows the map is fit on (class-stratified subsample); None = all rows
            for PCA / t-SNE, UMAP_MAX_FIT_POINTS for UMAP.
        pca_dims: UMAP input dimensions after PCA reduction.
        **params: passed to the underlying estimator (UMAP: n_neighbors, min_dist, ...; t-SNE:
            perplexity, ...).

    Learned state: embedding_ (float64 [N_nat + N_pert, n_components], natural rows first),
    n_natural_, fit_index_ (rows of the stacked [natural; perturbed] array the map was fit on),
    reducer_ (the PCA reduction before UMAP, or None), model_ (the fitted estimator).
    """

    def __init__(self, method: str = "pca", fit_on: str = "joint", n_components: int = 2,
                 random_state: int | None = 0, max_fit_points: int | None = None, pca_dims: int = UMAP_PCA_DIMS,
                 **params):
        method, fit_on = parse(Projection, method, "projection"), parse(FitMode, fit_on, "fit mode")
        check_int_in("n_components", n_components, 1, 3)  # a map: 2-D (or 3-D)
        if max_fit_points is not None:
            check_int_at_least("max fit points", max_fit_points, 3)
        check_int_at_least("pca dims", pca_dims, n_components)
        require(not (method is Projection.TSNE and fit_on is FitMode.NATURAL),
                "t-SNE cannot project new points onto a fitted map; use fit_on='joint' or method pca/umap")
        self.method, self.fit_on, self.n_components = method, fit_on, n_components
        self.random_state, self.max_fit_points, self.pca_dims = random_state, max_fit_points, pca_dims
        self.params = params

    def get_params(self) -> dict:
        """Every parameter, for cache keys and run records."""
        return {"method": self.method, "fit_on": self.fit_on, "n_components": self.n_components,
                "random_state": self.random_state, "max_fit_points": self.max_fit_points,
                "pca_dims": self.pca_dims, **self.params}

    def fit(self, z_nat: ArrayLike, z_pert: ArrayLike | None = None, labels: ArrayLike | None = None) -> Embedder:
        """Fit the map and set `embedding_`. z_nat [N, D], z_pert [M, D] (or None); labels: int
        [N] (also used for z_pert when M = N, as for paired latents) or [N + M], for the
        class-stratified subsample. Returns self."""
        z_nat = as_2d("z_nat", z_nat)
        z_pert = np.zeros((0, z_nat.shape[1])) if z_pert is None else as_2d("z_pert", z_pert)
        require(z_nat.shape[1] == z_pert.shape[1], f"natural and perturbed latents differ in width: "
                f"{z_nat.shape[1]} vs {z_pert.shape[1]}", DataError)
        n, m = len(z_nat), len(z_pert)
        z = np.concatenate([z_nat, z_pert])
        groups = self._groups(labels, n, m)
        candidates = np.arange(n) if self.fit_on == "natural" else np.arange(n + m)
        limit = self.max_fit_points or (UMAP_MAX_FIT_POINTS if self.method == "umap" else len(candidates))
        fit_index = candidates[stratified_subsample(groups[candidates], limit, self.random_state)]
        require(len(fit_index) >= max(3, self.n_components + 1),
                f"need at least {max(3, self.n_components + 1)} points to fit a map, got {len(fit_index)}", DataError)
        rest = np.setdiff1d(np.arange(n + m), fit_index)
        embedding = np.empty((n + m, self.n_components))
        if self.method == "pca":
            embedding[fit_index] = self._fit_pca(z[fit_index])
        elif self.method == "tsne":
            require(len(rest) == 0 and n + m <= TSNE_MAX_POINTS,
                    f"t-SNE is for small sets: {n + m} points given, at most {TSNE_MAX_POINTS} "
                    "(and no max_fit_points below that); use umap or pca", ConfigError)
            embedding[fit_index] = self._fit_tsne(z[fit_index])
        else:
            embedding[fit_index] = self._fit_umap(z[fit_index])
        if len(rest):
            embedding[rest] = self.transform(z[rest])
        self.embedding_, self.n_natural_, self.fit_index_ = embedding, n, fit_index
        return self

    def transform(self, z: ArrayLike) -> np.ndarray:
        """Place new latents [K, D] on the fitted map -> [K, n_components] (PCA and UMAP)."""
        require(hasattr(self, "model_"), "fit the Embedder before calling transform")
        require(self.method != "tsne", "t-SNE has no transform; fit jointly instead")
        z = as_2d("z", z)
        if len(z) == 0:
            return np.zeros((0, self.n_components))
        if self.reducer_ is not None:
            z = self.reducer_.transform(z)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return np.asarray(self.model_.transform(z), dtype=np.float64)

    # ------------------------------------------------------------------ methods

    def _fit_pca(self, z: np.ndarray) -> np.ndarray:
        from sklearn.decomposition import PCA

        self.reducer_ = None
        self.model_ = PCA(n_components=min(self.n_components, *z.shape), random_state=self.random_state,
                          **self.params)
        out = self.model_.fit_transform(z)
        return _pad(out, self.n_components)

    def _fit_tsne(self, z: np.ndarray) -> np.ndarray:
        from sklearn.manifold import TSNE

        self.reducer_ = None
        # exact gradients for small sets: Barnes-Hut pays seconds of set-up there and gains nothing
        params = {"init": "pca", "perplexity": min(30.0, (len(z) - 1) / 3),
                  "method": "exact" if len(z) <= TSNE_EXACT_POINTS else "barnes_hut", **self.params}
        self.model_ = TSNE(n_components=self.n_components, random_state=self.random_state, **params)
        return self.model_.fit_transform(z)

    def _fit_umap(self, z: np.ndarray) -> np.ndarray:
        from sklearn.decomposition import PCA

        self.reducer_ = None
        if z.shape[1] > self.pca_dims:
            self.reducer_ = PCA(n_components=min(self.pca_dims, len(z)), random_state=self.random_state).fit(z)
            z = self.reducer_.transform(z)
        self.model_ = _make_umap(self.n_components, self.random_state, len(z), self.params)
        with warnings.catch_warnings():  # "n_jobs overridden to 1 by setting random_state" etc.
            warnings.simplefilter("ignore")
            return np.asarray(self.model_.fit_transform(z), dtype=np.float64)

    @staticmethod
    def _groups(labels, n: int, m: int) -> np.ndarray:
        """Stratification groups for the stacked rows: (class, side), or side alone without labels."""
        side = np.concatenate([np.zeros(n, int), np.ones(m, int)])
        if labels is None:
            return side
        labels = np.asarray(labels).ravel().astype(np.int64)
        if len(labels) == n and (m == n or m == 0):
            labels = np.concatenate([labels, labels[:m]])
        require(len(labels) == n + m, f"labels must have N = {n} or N + M = {n + m} entries, got {len(labels)}",
                DataError)
        return labels * 2 + side


def _pad(out: np.ndarray, width: int) -> np.ndarray:
    """PCA of data with fewer dimensions than asked: zero columns keep the output shape stable."""
    if out.shape[1] < width:
        out = np.concatenate([out, np.zeros((len(out), width - out.shape[1]))], axis=1)
    return out


def _make_umap(n_components: int, random_state: int | None, n_points: int, params: dict):
    import umap

    params = {**UMAP_DEFAULTS, **params}
    params["n_neighbors"] = max(2, min(int(params["n_neighbors"]), n_points - 1))
    # NN-descent even below 4096 points: umap's exact small-data path hands sklearn a numba metric
    # that is then called from Python once per pair (16 M calls, about 30 s, for 4,000 points).
    params.setdefault("force_approximation_algorithm", True)
    return umap.UMAP(n_components=n_components, random_state=random_state, init="pca", **params)


_WARM_LOCK = threading.Lock()
_WARM = False


def warm_up_umap() -> float:
    """Pay umap-learn's and pynndescent's numba JIT compilation once per process (about 90 s of
    CPU on the 2-core development machine; see docs/benchmarks.md) by fitting
    and transforming a tiny random set with the settings `Embedder` uses. Thread-safe; later
    calls return at once. Returns the seconds spent."""
    global _WARM
    with _WARM_LOCK:
        if _WARM:
            return 0.0
        start = time.perf_counter()
        rng = np.random.default_rng(0)
        z = rng.normal(size=(300, 10))
        labels = rng.integers(0, 10, size=150)
        Embedder("umap", fit_on="natural", random_state=0, max_fit_points=150).fit(z[:150], z[150:], labels)
        _WARM = True
        return time.perf_counter() - start
