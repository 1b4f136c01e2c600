"""Trajectories: how chosen points move through latent space as the attack radius ε grows
("star trails", as in Emblaze).

Every ε uses the same random start direction (the generator is re-seeded per ε), so a trail
changes only because ε changes, not because the noise does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from atld.attacks.gradient import AttackConfig, run_attack
from atld.vocab import AttackKind, LatentSpace, parse
from atld.errors import DataError, check_finite_range, check_int_at_least, require
from atld.latent.axes import drop_logit_offset, map_input
from atld.latent.embed import Embedder
from atld.latent.extract import extract_latents
from atld.progress import report


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
    z = map_input(z.reshape(-1, z.shape[-1]), space).reshape(z.shape)
    e, n, dim = z.shape
    first, rest = z[0], z[1:].reshape(-1, dim)
    nat = first if background is None else np.concatenate([first, np.asarray(background, np.float64)])
    embedder.fit(nat, rest)
    emb = embedder.embedding_
    return np.concatenate([emb[:n], emb[len(nat):]]).reshape(e, n, -1)


# ---------------------------------------------------------------------- the path of one attack, step by step

@dataclass(frozen=True)
class AttackPath:
    """Where N images go in latent space along the iterations of one attack, and (for a run with
    a discriminator) where one IMT step from the final adversarial image brings them back.

    logits [S+1, N, K]: step 0 is the natural image, step k the attack's k-th iterate (S steps);
    preds int64 [S+1, N]; labels int64 [N]; d_scores [S+1, N] (D's natural probability) or None;
    imt_logits [N, K] / imt_preds [N] / imt_d [N]: after one IMT step (m = 1, the model's own ε)
    on the last iterate, or None without a discriminator. CPU tensors."""
    attack: AttackConfig
    logits: torch.Tensor
    preds: torch.Tensor
    labels: torch.Tensor
    d_scores: torch.Tensor | None
    imt_logits: torch.Tensor | None
    imt_preds: torch.Tensor | None
    imt_d: torch.Tensor | None
    # float16 [S+1, N, C, H, W] in [0, 1]: the image at every step (the explorer's player shows it),
    # then, with a discriminator, after the IMT step back as one more frame; None where not kept
    images: torch.Tensor | None = None

    @property
    def steps(self) -> int:
        return len(self.logits) - 1

    def accuracy(self) -> np.ndarray:
        """float [S+1]: accuracy at every step (step 0: natural)."""
        return (self.preds == self.labels).float().mean(1).numpy()

    @property
    def imt_accuracy(self) -> float | None:
        return None if self.imt_preds is None else float((self.imt_preds == self.labels).float().mean())


def attack_path(run, x: torch.Tensor, y: torch.Tensor, attack: AttackConfig, seed: int = 0) -> AttackPath:
    """Attack x (float [N, C, H, W] in [0, 1], labels y [N]; a few images, one batch, on the
    run's device) with `attack` against the bare classifier, recording the latents of every
    iterate; then, with a discriminator, one IMT step back (`atld.inference`)."""
    from atld.inference import apply_inference
    from atld.models.common import eval_mode

    require(x.dim() == 4 and len(x) == len(y) and len(y) >= 1, "attack_path needs images [N, C, H, W] and labels [N]")
    f, d = run.classifier, run.discriminator
    device = next(f.parameters()).device
    x, y = x.to(device), y.to(device)
    iterates = [x]
    with eval_mode(*([f] if d is None else [f, d])):
        generator = torch.Generator(device=device).manual_seed(seed)
        def step(k: int, xk: torch.Tensor) -> None:
            iterates.append(xk)
            report(k / attack.num_steps, f"{attack.label}: step {k}/{attack.num_steps}")

        last = run_attack(f, x, y, attack, generator, on_step=step)
        while len(iterates) < attack.num_steps + 1:  # ε = 0: the attack returns at once
            iterates.append(last)
        with torch.no_grad():
            logits = torch.stack([f(xk).float() for xk in iterates])
            d_scores = None if d is None else torch.stack([d.natural_probability(z) for z in logits])
        imt_logits = imt_preds = imt_d = None
        if d is not None:
            x_imt = apply_inference(run, last, "atld")
            with torch.no_grad():
                imt_logits = f(x_imt).float()
                imt_d = d.natural_probability(imt_logits).cpu()
            imt_preds = imt_logits.argmax(1).cpu()
            imt_logits = imt_logits.cpu()
            iterates = iterates + [x_imt]
    images = torch.stack([xk.detach().cpu().to(torch.float16) for xk in iterates])
    return AttackPath(attack, logits.cpu(), logits.argmax(2).cpu(), y.cpu(),
                      None if d_scores is None else d_scores.cpu(), imt_logits, imt_preds, imt_d, images)


def embed_path(path: AttackPath, background: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None,
                                                                                 np.ndarray | None]:
    """A PCA map fitted on natural logits only (the path's step 0, plus `background` natural
    logits [B, K] if given; logits without their offset, `atld.latent.axes`), with every step
    projected onto it: the natural picture stays fixed while the points move. Returns (coords
    [S+1, N, 2], IMT coords [N, 2] or None, background coords [B, 2] or None)."""
    z = path.logits.numpy().astype(np.float64)
    s, n, k = z.shape
    z = drop_logit_offset(z.reshape(-1, k)).reshape(s, n, k)  # the map's axes: atld.latent.axes
    nat = z[0] if background is None else np.concatenate([z[0], drop_logit_offset(background)])
    embedder = Embedder("pca", fit_on="natural")
    rest = z[1:].reshape(-1, k)
    if path.imt_logits is not None:
        rest = np.concatenate([rest, drop_logit_offset(path.imt_logits.numpy())])
    embedder.fit(nat, rest)
    emb = embedder.embedding_
    moved = emb[len(nat):]
    coords = np.concatenate([emb[:n], moved[:(s - 1) * n]]).reshape(s, n, -1)[..., :2]
    imt = moved[(s - 1) * n:][:, :2] if path.imt_logits is not None else None
    back = emb[n:len(nat)][:, :2] if background is not None else None
    return coords, imt, back


PATH_COLUMNS = ("index", "step", "label", "label_name", "pred", "pred_name", "flipped", "d_natural", "x", "y")


@dataclass(frozen=True)
class PathMap:
    """An attack path and its map: `attack_path`'s result, `embed_path`'s coordinates and the
    test indices of the N images; background: natural points of more test images ([B, 2] and
    their labels [B]) drawn behind the paths, or None."""
    path: AttackPath
    coords: np.ndarray
    imt_coords: np.ndarray | None
    background: np.ndarray | None
    background_labels: np.ndarray | None
    indices: np.ndarray


def path_map(run, x: torch.Tensor, y: torch.Tensor, attack: AttackConfig, indices, seed: int = 0,
             background_x: torch.Tensor | None = None, background_y: torch.Tensor | None = None) -> PathMap:
    """`attack_path` of x, y (test images `indices`) on a PCA map of natural logits (those of x and
    of `background_x`, float [B, C, H, W] in [0, 1], labels `background_y`)."""
    path = attack_path(run, x, y, attack, seed)
    back_logits = None
    if background_x is not None:
        device = next(run.classifier.parameters()).device
        with torch.no_grad():
            back_logits = torch.cat([run.classifier(b.to(device)).float().cpu() for b in background_x.split(256)])
    coords, imt, back = embed_path(path, None if back_logits is None else back_logits.numpy())
    return PathMap(path, coords, imt, back, None if background_y is None else background_y.numpy(),
                   np.asarray(indices))


def path_rows(pm: PathMap, class_names) -> list[dict]:
    """One row per image and step (`PATH_COLUMNS`; step "imt" for the IMT step back)."""
    p = pm.path
    labels = p.labels.numpy()
    frames = [(str(k), pm.coords[k], p.preds[k].numpy(), None if p.d_scores is None else p.d_scores[k].numpy())
              for k in range(p.steps + 1)]
    if pm.imt_coords is not None:
        frames.append(("imt", pm.imt_coords, p.imt_preds.numpy(), p.imt_d.numpy()))
    rows = []
    for step, xy, pred, d in frames:
        for i in range(len(labels)):
            rows.append({"index": int(pm.indices[i]), "step": step, "label": int(labels[i]),
                         "label_name": class_names[labels[i]], "pred": int(pred[i]),
                         "pred_name": class_names[pred[i]], "flipped": bool(pred[i] != labels[i]),
                         "d_natural": None if d is None else round(float(d[i]), 6),
                         "x": round(float(xy[i, 0]), 6), "y": round(float(xy[i, 1]), 6)})
    return rows
