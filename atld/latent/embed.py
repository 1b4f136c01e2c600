"""2-D (or 3-D) maps of natural and perturbed latents, scikit-learn estimator style:
`Embedder(projection=...).fit(z_nat, z_pert)` sets `embedding_` ([N_nat + N_pert, n_components],
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

UMAP's start-up cost is numba compiling umap-learn and pynndescent once per process. Two choices
keep it small (docs/benchmarks.md): numba's on-disk cache is switched on for every compiled
function of both libraries (`umap_module`; about two thirds of the compile time, kept in
$ATLD_CACHE/numba unless NUMBA_CACHE_DIR says otherwise), and a map that needs no `transform`
(every joint fit of at most `max_fit_points` rows: the default) takes its exact k-nearest
neighbours from scikit-learn instead of pynndescent's NN-descent, whose compiled functions take a
distance function as an argument and so can never be cached. A fresh process then loads the
compiled code instead of building it. Fits that need `transform` (the natural map, larger sets)
build pynndescent's index and pay its compile once per process.

Progress: UMAP reports its epochs (and the fit its stages) through `atld.progress.report`, so a
listener can show them and cancel between epochs.
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time
import warnings

import numpy as np
from numpy.typing import ArrayLike

from atld.config.settings import settings
from atld.vocab import FitMode, Projection, parse
from atld.errors import ConfigError, DataError, check_int_at_least, check_int_in, require
from atld.latent.gap import as_2d
from atld.progress import report, stage

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
        projection: "pca" | "umap" | "tsne".
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

    def __init__(self, projection: str = "pca", fit_on: str = "joint", n_components: int = 2,
                 random_state: int | None = 0, max_fit_points: int | None = None, pca_dims: int = UMAP_PCA_DIMS,
                 **params):
        projection, fit_on = parse(Projection, projection, "projection"), parse(FitMode, fit_on, "fit mode")
        check_int_in("n_components", n_components, 1, 3)  # a map: 2-D (or 3-D)
        if max_fit_points is not None:
            check_int_at_least("max fit points", max_fit_points, 3)
        check_int_at_least("pca dims", pca_dims, n_components)
        require(not (projection is Projection.TSNE and fit_on is FitMode.NATURAL),
                "t-SNE cannot project new points onto a fitted map; use fit_on='joint' or projection pca/umap")
        self.projection, self.fit_on, self.n_components = projection, fit_on, n_components
        self.random_state, self.max_fit_points, self.pca_dims = random_state, max_fit_points, pca_dims
        self.params = params

    def get_params(self) -> dict:
        """Every parameter, for cache keys and run records."""
        return {"projection": self.projection, "fit_on": self.fit_on, "n_components": self.n_components,
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
        limit = self.max_fit_points or (UMAP_MAX_FIT_POINTS if self.projection == "umap" else len(candidates))
        fit_index = candidates[stratified_subsample(groups[candidates], limit, self.random_state)]
        require(len(fit_index) >= max(3, self.n_components + 1),
                f"need at least {max(3, self.n_components + 1)} points to fit a map, got {len(fit_index)}", DataError)
        rest = np.setdiff1d(np.arange(n + m), fit_index)
        embedding = np.empty((n + m, self.n_components))
        if self.projection == "pca":
            embedding[fit_index] = self._fit_pca(z[fit_index])
        elif self.projection == "tsne":
            require(len(rest) == 0 and n + m <= TSNE_MAX_POINTS,
                    f"t-SNE is for small sets: {n + m} points given, at most {TSNE_MAX_POINTS} "
                    "(and no max_fit_points below that); use umap or pca", ConfigError)
            embedding[fit_index] = self._fit_tsne(z[fit_index])
        else:
            embedding[fit_index] = self._fit_umap(z[fit_index], transform_later=len(rest) > 0)
        if len(rest):
            with stage(0.95, 1.0, "placing the other points"):
                embedding[rest] = self.transform(z[rest])
        self.embedding_, self.n_natural_, self.fit_index_ = embedding, n, fit_index
        return self

    def transform(self, z: ArrayLike) -> np.ndarray:
        """Place new latents [K, D] on the fitted map -> [K, n_components] (PCA and UMAP)."""
        require(hasattr(self, "model_"), "fit the Embedder before calling transform")
        require(self.projection != "tsne", "t-SNE has no transform; fit jointly instead")
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

    def _fit_umap(self, z: np.ndarray, transform_later: bool = False) -> np.ndarray:
        """UMAP of z; with exact neighbours from scikit-learn unless `transform` will be needed
        (which needs pynndescent's search index)."""
        from sklearn.decomposition import PCA

        report(0.0, "reducing with PCA")
        self.reducer_ = None
        if z.shape[1] > self.pca_dims:
            self.reducer_ = PCA(n_components=min(self.pca_dims, len(z)), random_state=self.random_state).fit(z)
            z = self.reducer_.transform(z)
        params = dict(self.params)
        if not transform_later and "precomputed_knn" not in params:
            report(0.02, "nearest neighbours")
            params["precomputed_knn"] = _exact_knn(z, _neighbours(params, len(z)))
        report(0.08, "neighbour graph (the first UMAP in a process also loads its compiled code)")
        self.model_ = _make_umap(self.n_components, self.random_state, len(z), params)
        with warnings.catch_warnings(), stage(0.1, 1.0, "layout"):
            warnings.simplefilter("ignore")  # "n_jobs overridden to 1 by setting random_state" etc.
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


def _neighbours(params: dict, n_points: int) -> int:
    return max(2, min(int(params.get("n_neighbors", UMAP_DEFAULTS["n_neighbors"])), n_points - 1))


def _exact_knn(z: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices, distances) [N, k] of each row's k nearest rows (itself first), Euclidean, from
    scikit-learn (BLAS; a fraction of a second for a few thousand rows)."""
    from sklearn.neighbors import NearestNeighbors

    dist, idx = NearestNeighbors(n_neighbors=k).fit(z).kneighbors(z)
    return idx.astype(np.int32), dist.astype(np.float32)


class _EpochSink:
    """A file for umap's tqdm bar (bar_format "{n}/{total}"): every line it writes becomes a
    `report` of the epochs done. A listener that raises `Cancelled` stops the layout there."""
    _LINE = re.compile(r"(\d+)/(\d+)")

    def write(self, text: str) -> int:
        match = self._LINE.search(text)
        if match and int(match.group(2)):
            done, total = int(match.group(1)), int(match.group(2))
            report(done / total, f"epoch {done}/{total}")
        return len(text)

    def flush(self) -> None:
        pass


def _make_umap(n_components: int, random_state: int | None, n_points: int, params: dict):
    umap = umap_module()
    params = {**UMAP_DEFAULTS, **params}
    params["n_neighbors"] = _neighbours(params, n_points)
    # NN-descent even below 4096 points when a search index is needed: umap's exact small-data
    # path hands sklearn a numba metric that is then called from Python once per pair (16 M
    # calls, about 30 s, for 4,000 points).
    params.setdefault("force_approximation_algorithm", True)
    params.setdefault("tqdm_kwds", {"disable": False, "file": _EpochSink(), "bar_format": "{n}/{total}\n",
                                    "mininterval": 0.1, "leave": False})
    return umap.UMAP(n_components=n_components, random_state=random_state, init="pca", **params)


def numba_cache_dir() -> str:
    """Where numba keeps compiled code: NUMBA_CACHE_DIR when set, else $ATLD_CACHE/numba."""
    return os.environ.get("NUMBA_CACHE_DIR") or str(settings().cache_dir.expanduser() / "numba")


_IMPORT_LOCK = threading.Lock()
_UMAP_MODULE = None


def umap_module():
    """umap-learn, imported once per process with numba's on-disk cache switched on for every
    compiled function of umap-learn and pynndescent (see the module docstring)."""
    global _UMAP_MODULE
    with _IMPORT_LOCK:
        if _UMAP_MODULE is None:
            cache_dir = numba_cache_dir()
            os.environ["NUMBA_CACHE_DIR"] = cache_dir  # read when numba is first imported...
            import numba

            numba.config.CACHE_DIR = cache_dir  # ...and here if it already was
            import umap

            _enable_numba_cache(("umap", "pynndescent"))
            _UMAP_MODULE = umap
    return _UMAP_MODULE


def _enable_numba_cache(packages: tuple[str, ...]) -> int:
    """Switch numba's on-disk cache on for the compiled functions of `packages` that were
    declared without it; returns how many. Functions numba cannot cache stay as they are."""
    from numba.core.dispatcher import Dispatcher

    count = 0
    for name, module in list(sys.modules.items()):
        if module is None or name.split(".")[0] not in packages:
            continue
        for obj in list(vars(module).values()):
            if isinstance(obj, Dispatcher) and type(obj._cache).__name__ == "NullCache":
                try:
                    obj.enable_caching()
                    count += 1
                except Exception:  # noqa: BLE001 - an uncacheable function only costs compile time
                    pass
    return count


_WARM_LOCK = threading.Lock()
_WARM: set[bool] = set()  # which paths are warm in this process: False = exact neighbours, True = transform


def warm_up_umap(transform: bool = False) -> float:
    """Load (or, the first time on a machine, compile and store) umap-learn's compiled code in
    this process by fitting a tiny random set with the settings `Embedder` uses: the default
    path (exact neighbours, no transform), and with `transform=True` also pynndescent's index
    and UMAP's transform (the natural-map path, which cannot be cached on disk). Thread-safe;
    later calls return at once. Returns the seconds spent."""
    with _WARM_LOCK:
        if transform in _WARM:
            return 0.0
        start = time.perf_counter()
        rng = np.random.default_rng(0)
        z = rng.normal(size=(300, 10))
        labels = rng.integers(0, 10, size=150)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # numba's notes about functions it cannot cache
            if transform:
                Embedder("umap", fit_on="natural", random_state=0, max_fit_points=150).fit(z[:150], z[150:], labels)
            else:
                Embedder("umap", random_state=0).fit(z[:150], z[150:], labels)
        _WARM.add(transform)
        return time.perf_counter() - start
