"""Axes a map can be read by: what goes into a projection, how much each axis holds, and two
models' maps that can stand side by side (torch-free).

Logits carry an offset the classifier ignores: adding the same number to every logit of an image
changes no softmax probability and no prediction. On ATLD-trained models that offset is huge
(its per-image spread is 10-40 logits on the shipped models, against a few tenths for natural or
PGD-AT training) and it does not tell natural from attacked images apart, so a PCA of raw logits
spends its first axis on it (99 % of the variance) and draws the clouds as streaks. Maps of
logits therefore project each logit vector onto the directions the softmax sees
(`drop_logit_offset`), and say how much variance the offset held (`offset_share`). The gap
numbers and D keep the raw logits: D sees them as they are.

Side by side, each model gets its own PCA (fitted on its natural points), measured in units of
its own natural cloud's spread, and the second map is rotated onto the first (orthogonal
Procrustes on the natural points of the same images), so neither model's scale or offset can
flatten the other into a line and "up-left" means the same in both.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from atld.vocab import LatentSpace

# Below this share of the variance the second axis is mostly noise: the map is nearly a line.
LOW_AXIS_SHARE = 0.01


def drop_logit_offset(z) -> np.ndarray:
    """z [N, K] minus each row's mean: the logits on the K−1 directions the softmax can see."""
    z = np.asarray(z, dtype=np.float64)
    return z - z.mean(axis=1, keepdims=True)


def map_input(z, space: str) -> np.ndarray:
    """What a projection of `space` latents [N, D] is fitted on: logits without their offset
    (module docstring), features as they are."""
    z = np.asarray(z, dtype=np.float64)
    return drop_logit_offset(z) if space == LatentSpace.LOGITS else z


def offset_share(z) -> float:
    """The share of the total variance of logits z [N, K] that lies along the offset direction
    (every logit up by the same amount), in [0, 1]; 0 for fewer than two rows."""
    z = np.asarray(z, dtype=np.float64)
    if z.ndim != 2 or len(z) < 2 or z.shape[1] < 2:
        return 0.0
    total = float(z.var(axis=0).sum())
    along = z.shape[1] * float(z.mean(axis=1).var())  # projection on ones/√K has variance K·var(row mean)
    return min(1.0, along / total) if total > 0 else 0.0


def axis_warning(explained) -> str | None:
    """One line when a PCA map's second axis holds under LOW_AXIS_SHARE of the variance, else None."""
    if explained is None or len(explained) < 2 or explained[1] >= LOW_AXIS_SHARE:
        return None
    return (f"The second axis holds only {100 * explained[1]:.1f} % of the variance: this map is nearly a line, "
            "so read positions along the first axis only.")


def pca_axes(fit, components: int = 2) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    """PCA of the rows `fit` [N, D]: (mean [D], basis [D, components], each axis's variance share).
    Each axis's sign is fixed (its largest loading positive), so a recomputed map does not flip;
    missing axes (D < components) are zero columns."""
    fit = np.asarray(fit, dtype=np.float64)
    mean = fit.mean(axis=0)
    _, s, vt = np.linalg.svd(fit - mean, full_matrices=False)
    basis = np.zeros((fit.shape[1], components))
    k = min(components, vt.shape[0])
    basis[:, :k] = vt[:k].T
    signs = np.sign(basis[np.abs(basis).argmax(axis=0), range(components)])
    basis = basis * np.where(signs == 0, 1.0, signs)
    total = float((s ** 2).sum())
    shares = np.zeros(components)
    if total > 0:
        shares[:k] = s[:k] ** 2 / total
    return mean, basis, tuple(float(v) for v in shares)


@dataclass(frozen=True)
class SideBySide:
    """Two models' maps, each [2·n, 2] (natural rows first) in units of its own natural cloud's
    spread (root-mean-square distance from its centre = 1), the second rotated onto the first;
    explained: each map's two axis shares; rotated: whether the alignment turned or mirrored the
    second map (it always keeps its shape)."""
    coords: tuple[np.ndarray, np.ndarray]
    explained: tuple[tuple[float, ...], tuple[float, ...]]
    rotated: bool


def side_by_side(z_a, z_b, n_a: int, n_b: int, space: str = LatentSpace.LOGITS) -> SideBySide:
    """Two models' latents of the same images (`z_a` [2·n_a, D_a]: natural rows first, then their
    perturbed copies; the same for `z_b`; the widths may differ) on maps that read side by side
    (module docstring). The alignment uses the natural points of the first min(n_a, n_b) images."""
    from scipy.linalg import orthogonal_procrustes

    coords, explained = [], []
    for z, n in ((z_a, n_a), (z_b, n_b)):
        z = map_input(z, space)
        mean, basis, shares = pca_axes(z[:n])
        xy = (z - mean) @ basis
        spread = float(np.sqrt((xy[:n] ** 2).sum(axis=1).mean()))
        coords.append(xy / spread if spread > 0 else xy)
        explained.append(shares)
    m = min(n_a, n_b)
    rotation, _ = orthogonal_procrustes(coords[1][:m], coords[0][:m])
    rotated = not np.allclose(rotation, np.eye(2), atol=1e-6)
    return SideBySide((coords[0], coords[1] @ rotation), (explained[0], explained[1]), rotated)
