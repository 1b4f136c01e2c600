"""One latent pipeline for the `embed` command and the Latent explorer: latents of N images and of
their attacked copies, a 2-D map of both clouds and the gap numbers, then one table and one CSV
schema for the points.

Points: a map of N images has 2N points, natural first: point i < N is natural image i, point
N + i its perturbed copy; the table's row number is the point's id. Columns (`POINT_COLUMNS`):
index (the image's index in the split), set (natural | perturbed), label and label_name (the
true class), pred and pred_name (the prediction), correct, d_natural (D's probability that the
latent is natural; empty without a discriminator), x and y (map coordinates).

The CSV starts with `# key: value` lines (what was computed, the accuracies and the gap numbers,
then one `# class ...` line per class) followed by the point table; read it back with
`pandas.read_csv(path, comment="#")`.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

import numpy as np
import torch

from atld.attacks.gradient import AttackConfig
from atld.attacks.registry import attack_from_name
from atld.config.latent import POINT_COLUMNS, LatentConfig
from atld.latent.axes import map_input, offset_share, pca_axes
from atld.vocab import PointSet, Projection
from atld.latent.cache import LatentCache
from atld.latent.embed import Embedder
from atld.latent.extract import LatentSet
from atld.latent.gap import MEASURE_KEYS
from atld.progress import stage


@dataclass(frozen=True)
class LatentMap:
    """What a map request computes. coords: float [2N, 2], natural rows first; gap: `gap_numbers`
    (on the latents as they are); explained: each PCA axis's share of the variance of what the map
    was fitted on (None for UMAP / t-SNE); offset_share: for logits, the share of their variance
    the map dropped as the softmax-invariant offset (`atld.latent.axes`), else None."""
    config: LatentConfig
    attack: AttackConfig | None
    latents: LatentSet
    coords: np.ndarray
    gap: dict
    explained: tuple[float, ...] | None = None
    offset_share: float | None = None


def latent_map(run, x: torch.Tensor, y: torch.Tensor, config: LatentConfig, cache: LatentCache | None = None,
               device: str | torch.device = "cpu") -> LatentMap:
    """Latents of x (float [N, C, H, W] in [0, 1], labels y [N]) and of its attacked copies under
    `run`, their map and gap numbers, as `config` says (each step served by `cache` when it can)."""
    cache = cache or LatentCache(enabled=False)
    attack = attack_from_name(config.attack, run.spec.epsilon_or_default(config.epsilon))
    slow_map = config.projection != Projection.PCA
    with stage(0.0, 0.3 if slow_map else 0.8, "latents"):
        latents = cache.latents(run, x, y, attack, config.batch_size, device, config.seed)
    z_nat, z_pert = latents.latents(config.space)
    labels = latents.labels.numpy()
    d_nat = None if latents.d_nat is None else latents.d_nat.numpy()
    d_pert = None if latents.d_pert is None else latents.d_pert.numpy()
    with stage(0.3 if slow_map else 0.8, 0.4 if slow_map else 0.95, "gap numbers"):
        gap = cache.gap(z_nat, z_pert, labels, d_nat, d_pert, folds=config.folds, permutations=config.permutations,
                        neighbors=config.neighbors, random_state=config.seed)
    embedder = Embedder(config.projection, fit_on=config.fit_on, random_state=config.seed)
    m_nat, m_pert = map_input(z_nat, config.space), map_input(z_pert, config.space)
    with stage(0.4 if slow_map else 0.95, 1.0, str(config.projection).upper()):
        coords = cache.embedding(embedder, m_nat, m_pert, labels)
    explained = (explained_variance(z_nat, z_pert, config.fit_on, space=config.space)
                 if config.projection == Projection.PCA else None)
    share = offset_share(np.concatenate([z_nat, z_pert])) if config.space == "logits" else None
    return LatentMap(config, attack, latents, coords, gap, explained, share)


def points_frame(coords: np.ndarray, latents: LatentSet, class_names: tuple[str, ...],
                 indices: np.ndarray | None = None):
    """The point table (see the module docstring) as a pandas DataFrame; `indices` are the images'
    indices in their split (default 0..N−1)."""
    import pandas as pd

    n = len(latents)
    index = np.arange(n) if indices is None else np.asarray(indices)
    labels = latents.labels.numpy()
    label = np.concatenate([labels, labels])
    pred = np.concatenate([latents.pred_nat.numpy(), latents.pred_pert.numpy()])
    d = (np.concatenate([latents.d_nat.numpy(), latents.d_pert.numpy()]).astype(float)
         if latents.d_nat is not None else np.full(2 * n, np.nan))
    return pd.DataFrame({
        "index": np.concatenate([index, index]),
        "set": np.repeat([PointSet.NATURAL.value, PointSet.PERTURBED.value], n),
        "label": label, "label_name": [class_names[i] for i in label], "pred": pred,
        "pred_name": [class_names[i] for i in pred], "correct": label == pred, "d_natural": d,
        "x": coords[:, 0], "y": coords[:, 1]}, columns=list(POINT_COLUMNS))


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value)).lower()
    return f"{value:.6g}" if isinstance(value, (float, np.floating)) else str(value)


def map_csv(m: LatentMap, meta: dict, class_names: tuple[str, ...]) -> str:
    """The map as CSV: `meta` (what was computed: checkpoint, hash, split, ...), the accuracies and
    gap numbers as `# key: value` lines, one `# class` line per class, then the point table."""
    cfg, attack = m.config, m.attack
    head = {**meta, "attack": cfg.attack if attack is None else f"{attack.label} eps={attack.epsilon:.6g} "
                                                                f"step={attack.alpha:.6g}",
            "projection": f"{cfg.projection} fit_on={cfg.fit_on}", "space": cfg.space, "seed": cfg.seed,
            "n_images": len(m.latents), "accuracy_natural": m.latents.accuracy_nat,
            "accuracy_perturbed": m.latents.accuracy_pert, **{k: m.gap[k] for k in MEASURE_KEYS}}
    buf = io.StringIO()
    for key, value in head.items():
        buf.write(f"# {key}: {_fmt(value)}\n")
    for row in m.gap["per_class"]:
        fields = " ".join(f"{k}={_fmt(row[k])}" for k in ("n_natural", *MEASURE_KEYS) if k != "mmd_bandwidth")
        buf.write(f"# class {row['label']} ({class_names[row['label']]}): {fields}\n")
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(POINT_COLUMNS)
    for row in points_frame(m.coords, m.latents, class_names).itertuples(index=False):
        writer.writerow([_fmt(v) for v in row])
    return buf.getvalue()


def explained_variance(z_nat, z_pert, fit_on: str, components: int = 2, space: str = "features") -> tuple[float, ...]:
    """The share of the fitted points' variance each PCA axis of a map keeps (the Embedder's PCA:
    centred, unscaled; fitted on the natural points or on both clouds; for space="logits" on the
    logits without their offset, as `latent_map` fits them)."""
    z = map_input(z_nat, space)
    if fit_on != "natural":
        z = np.concatenate([z, map_input(z_pert, space)])
    return pca_axes(z, components)[2]
