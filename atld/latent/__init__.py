"""Latent analysis: where natural and perturbed images land in a classifier's latent space, 2-D
maps of the two clouds, and numbers for the gap between them (computed in latent space).

- `extract_latents` (extract.py): logits, features, predictions and D scores, natural and attacked.
- `Embedder` (embed.py): PCA / UMAP / t-SNE maps, estimator style; `warm_up_umap`.
- `gap_numbers` (gap.py): discriminator AUC, classifier two-sample test, MMD², kNN mixing.
- `trajectories` (trajectories.py): latents of chosen points over several ε.
- `LatentCache` (cache.py): disk cache keyed by checkpoint hash, data, attack and parameters.
"""

from atld.latent.cache import LatentCache, cache_key, default_cache_dir, digest
from atld.latent.embed import (EMBED_METHODS, FIT_MODES, TSNE_MAX_POINTS, Embedder, stratified_subsample, warm_up,
                              warm_up_umap)
from atld.latent.extract import ATTACK_NAMES, LATENT_SPACES, LatentSet, extract_latents
from atld.latent.gap import (discriminator_auc, gap_for_latents, gap_numbers, knn_mixing, median_bandwidth, mmd_test,
                             two_sample_test)
from atld.latent.trajectories import Trajectories, embed_trajectories, trajectories

__all__ = ["ATTACK_NAMES", "EMBED_METHODS", "FIT_MODES", "LATENT_SPACES", "TSNE_MAX_POINTS", "Embedder", "LatentCache",
           "LatentSet", "Trajectories", "cache_key", "default_cache_dir", "digest",
           "discriminator_auc", "embed_trajectories", "extract_latents", "gap_for_latents", "gap_numbers",
           "knn_mixing", "median_bandwidth", "mmd_test", "stratified_subsample", "trajectories", "two_sample_test",
           "warm_up", "warm_up_umap"]
