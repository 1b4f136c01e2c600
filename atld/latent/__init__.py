"""Latent analysis: where natural and perturbed images land in a classifier's latent space, 2-D
maps of the two clouds, and numbers for the gap between them (computed in latent space).

- `extract_latents` (extract.py): logits, features, predictions and D scores, natural and attacked.
- `Embedder` (embed.py): PCA / UMAP / t-SNE maps, estimator style; `warm_up_umap`.
- `gap_numbers` (gap.py): discriminator AUC, classifier two-sample test, MMD², kNN mixing.
- `trajectories` (trajectories.py): latents of chosen points over several ε; `attack_path` /
  `path_map`: the path of one attack, iterate by iterate, and the IMT step back.
- `LatentCache` (cache.py): disk cache keyed by checkpoint hash, data, attack and parameters.
- `path_figure` (path_figure.py): the attack's path as one animated plotly figure (the Learn page,
  the Latent explorer and `embed --trajectories --html` draw it).
- `latent_map` (maps.py): the one pipeline of the `embed` command and the Latent explorer, and
  the one table / CSV schema of its points.
"""

from __future__ import annotations

from atld.lazy import lazy_exports

# Names are imported on first use (PEP 562), so the torch-free modules (palette, axes, gap) can be
# imported by the app's torch-free pages without the rest.
_EXPORTS = {
    "atld.latent.cache": ("LatentCache", "cache_key", "default_cache_dir", "digest"),
    "atld.latent.embed": ("TSNE_MAX_POINTS", "Embedder", "stratified_subsample", "warm_up_umap"),
    "atld.latent.extract": ("LatentSet", "extract_latents"),
    "atld.latent.gap": ("MEASURE_KEYS", "discriminator_auc", "gap_for_latents", "gap_numbers", "knn_mixing",
                        "median_bandwidth", "mmd_test", "two_sample_test"),
    "atld.latent.maps": ("POINT_COLUMNS", "LatentMap", "latent_map", "map_csv", "points_frame"),
    # not `trajectories` itself: once its module is imported, that name on the package is the module
    # (import it from atld.latent.trajectories)
    "atld.latent.trajectories": ("PATH_COLUMNS", "AttackPath", "PathMap", "Trajectories", "attack_path", "embed_path",
                                 "embed_trajectories", "path_map", "path_rows"),
}
__getattr__, __all__ = lazy_exports("atld.latent", _EXPORTS)
