"""Trajectories: how chosen points move through latent space as the attack radius ε grows
("star trails", as in Emblaze).

Every ε uses the same random start direction (the generator is re-seeded per ε), so a trail
changes only because ε changes, not because the noise does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from atld.attacks.gradient import AttackConfig
from atld.config.vocab import AttackKind, LatentSpace, parse
from atld.errors import DataError, check_finite_range, check_int_at_least, require
from atld.latent.embed import Embedder
from atld.latent.extract import extract_latents


@dataclass(frozen=True)
class Trajectories:
    """Latents of N points at E radii; CPU tensors.

    epsilons: float [E] ([0, 1] pixel units, ε = 0 is the natural image); logits [E, N, K];
    features [E, N, F]; preds int64 [E, N]; d_scores [E, N] (D's natural probability) or None;
    labels int64 [N]; images float [E, N, C, H, W] in [0, 1]."""
    epsilons: torch.Tensor
    logits: torch.Tensor
    features: torch.Tensor
    preds: torch.Tensor
    d_scores: torch.Tensor | None
    labels: torch.Tensor
    images: torch.Tensor

    def latents(self, space: LatentSpace = LatentSpace.LOGITS) -> np.ndarray:
        """[E, N, D] float32 numpy array of the chosen space."""
        return (self.logits if parse(LatentSpace, space, "latent space") is LatentSpace.LOGITS
                else self.features).numpy()


def trajectories(run, x: torch.Tensor, y: torch.Tensor, epsilons, attack_kind: str = "pgd", steps: int = 20,
                 batch_size: int = 256, device: str | torch.device = "cpu", seed: int = 0) -> Trajectories:
    """Attack the N points x [N, C, H, W] (labels y [N]) at every ε in `epsilons` ([0, 1] pixel
    units, ascending or not) with `attack_kind` ("fgsm" | "pgd" | "cw", step ε/4, `steps` steps)
    and collect their latents. Use few points (a selection): cost is E attacks of N images."""
    attack_kind = parse(AttackKind, attack_kind, "attack")
    check_int_at_least("attack steps", steps, 1)
    eps = [check_finite_range("epsilon", float(e), 0.0, 1.0, "([0, 1] pixel units)") for e in epsilons]
    require(len(eps) >= 1, "give at least one epsilon", DataError)
    device = torch.device(device)
    sets = []
    for e in eps:
        attack = AttackConfig(attack_kind, e, steps=steps) if e > 0 else None
        generator = torch.Generator(device=device).manual_seed(seed)
        sets.append(extract_latents(run, x, y, attack, batch_size, device, generator))
    d = None if sets[0].d_pert is None else torch.stack([s.d_pert for s in sets])
    return Trajectories(torch.tensor(eps), torch.stack([s.logits_pert for s in sets]),
                        torch.stack([s.features_pert for s in sets]), torch.stack([s.pred_pert for s in sets]),
                        d, sets[0].labels, torch.stack([s.images_pert for s in sets]))


def embed_trajectories(traj: Trajectories, embedder: Embedder | None = None, space: LatentSpace = LatentSpace.LOGITS,
                       background: np.ndarray | None = None) -> np.ndarray:
    """Project every point of every trail on one map -> [E, N, n_components].

    The map is fit with `embedder` (default PCA) on the latents of the first radius (put ε = 0
    first) as "natural" and the others as "perturbed" (in fit_on="natural" mode, on the first
    radius only). Pass
    `background` natural latents [B, D] (e.g. the test set) to fit the map on them as well, so
    the trails are drawn on the usual picture; they are not returned."""
    embedder = embedder or Embedder("pca")
    z = traj.latents(space)
    e, n, dim = z.shape
    first, rest = z[0], z[1:].reshape(-1, dim)
    nat = first if background is None else np.concatenate([first, np.asarray(background, np.float64)])
    embedder.fit(nat, rest)
    emb = embedder.embedding_
    return np.concatenate([emb[:n], emb[len(nat):]]).reshape(e, n, -1)
