"""Extraction: where natural and perturbed images land in a classifier's latent space.

Two latent spaces are kept for every image: the logits (what ATLD's discriminator D sees,
docs/method.md §1) and the penultimate features. The attack always targets the bare classifier
(as the official evaluation does, docs/method.md §5); D only scores the latents it produces.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from atld.attacks.gradient import AttackConfig, run_attack
from atld.vocab import LatentSpace, parse
from atld.data.loaders import as_float01
from atld.data.registry import DatasetSpec
from atld.errors import ConfigError, DataError, check_int_at_least, require
from atld.models.common import eval_mode
from atld.progress import report


@dataclass(frozen=True)
class LatentSet:
    """Latents of N images before and after an attack; every tensor is on the CPU.

    images_*: float32 [N, C, H, W] in [0, 1]; logits_*: float32 [N, K]; features_*: float32 [N, F];
    labels, pred_*: int64 [N]; d_*: float32 [N], D's probability that the latent is natural
    (natural = 1), or None when the run has no discriminator. With `attack` None the perturbed
    fields are copies of the natural ones."""
    images_nat: torch.Tensor
    images_pert: torch.Tensor
    logits_nat: torch.Tensor
    logits_pert: torch.Tensor
    features_nat: torch.Tensor
    features_pert: torch.Tensor
    labels: torch.Tensor
    pred_nat: torch.Tensor
    pred_pert: torch.Tensor
    d_nat: torch.Tensor | None
    d_pert: torch.Tensor | None
    attack: AttackConfig | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def latents(self, space: LatentSpace = LatentSpace.LOGITS) -> tuple[np.ndarray, np.ndarray]:
        """(z_nat, z_pert) as float32 numpy arrays [N, D] of the chosen space."""
        space = parse(LatentSpace, space, "latent space")
        nat, pert = ((self.logits_nat, self.logits_pert) if space is LatentSpace.LOGITS
                     else (self.features_nat, self.features_pert))
        return nat.numpy(), pert.numpy()

    @property
    def accuracy_nat(self) -> float:
        return float((self.pred_nat == self.labels).float().mean()) if len(self) else float("nan")

    @property
    def accuracy_pert(self) -> float:
        return float((self.pred_pert == self.labels).float().mean()) if len(self) else float("nan")

    def arrays(self) -> dict[str, np.ndarray]:
        """Every tensor as a numpy array (for the .npz cache; D scores omitted when absent)."""
        out = {k: getattr(self, k).numpy() for k in _TENSOR_FIELDS if getattr(self, k) is not None}
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], attack: AttackConfig | None) -> LatentSet:
        get = {k: (torch.from_numpy(np.array(arrays[k])) if k in arrays else None) for k in _TENSOR_FIELDS}
        return cls(**get, attack=attack)


_TENSOR_FIELDS = ("images_nat", "images_pert", "logits_nat", "logits_pert", "features_nat", "features_pert",
                  "labels", "pred_nat", "pred_pert", "d_nat", "d_pert")


def _check_inputs(x: torch.Tensor, y: torch.Tensor, spec: DatasetSpec | None) -> None:
    require(isinstance(x, torch.Tensor) and x.dim() == 4,
            f"images must be a tensor [N, C, H, W], got {getattr(x, 'shape', type(x).__name__)}", DataError)
    require(isinstance(y, torch.Tensor) and y.shape == x.shape[:1],
            f"labels must be [N] = [{x.shape[0]}], got {tuple(getattr(y, 'shape', ()))}", DataError)
    if spec is not None:
        require(tuple(x.shape[1:]) == tuple(spec.input_shape),
                f"images are {tuple(x.shape[1:])} but the model expects {spec.name} images "
                f"{tuple(spec.input_shape)}", DataError)
        if len(y):
            require(int(y.min()) >= 0 and int(y.max()) < spec.num_classes,
                    f"labels must be in 0..{spec.num_classes - 1}", DataError)


@torch.no_grad()
def _forward(classifier, discriminator, xb: torch.Tensor):
    logits, feats = classifier.forward_with_features(xb)
    d = discriminator.natural_probability(logits).float().cpu() if discriminator is not None else None
    return logits.float().cpu(), feats.float().cpu(), d


def extract_latents(run, x: torch.Tensor, y: torch.Tensor, attack: AttackConfig | None, batch_size: int = 256,
                    device: str | torch.device = "cpu", generator: torch.Generator | None = None) -> LatentSet:
    """Latents of `x` and of its attacked copy under `run`'s classifier (and D's scores).

    run: a `LoadedRun` (or anything with `.classifier` and `.discriminator`); its models are moved to
    `device` (in place) and put in eval mode for the call, their previous mode is restored after.
    x: [N, C, H, W] uint8 (0..255) or float in [0, 1], any device; y: int64 [N].
    attack: None keeps the natural images. `generator` (on `device`) seeds the random starts.
    Returns a `LatentSet` on the CPU."""
    check_int_at_least("batch size", batch_size, 1)
    classifier = run.classifier
    discriminator = getattr(run, "discriminator", None)
    _check_inputs(x, y, getattr(run, "spec", None))
    require(len(x) > 0, "no images to extract latents from", DataError)
    if attack is not None and not isinstance(attack, AttackConfig):
        raise ConfigError(f"attack must be an AttackConfig or None, got {type(attack).__name__}")
    device = torch.device(device)
    models = [m.to(device) for m in (classifier, discriminator) if m is not None]
    parts: dict[str, list[torch.Tensor]] = {k: [] for k in _TENSOR_FIELDS}
    done = 0
    with eval_mode(*models):
        for xb, yb in zip(x.split(batch_size), y.split(batch_size)):
            report(done / len(x), f"{'attacking and ' if attack is not None else ''}reading latents: "
                                  f"{done}/{len(x)} images")
            done += len(xb)
            xb = as_float01(xb.to(device))
            require(bool(torch.isfinite(xb).all()) and float(xb.min()) >= 0 and float(xb.max()) <= 1,
                    "images must be finite and in [0, 1]", DataError)
            yb = yb.to(device).long()
            xa = xb if attack is None else run_attack(classifier, xb, yb, attack, generator)
            ln, fn, dn = _forward(classifier, discriminator, xb)
            lp, fp, dp = (ln, fn, dn) if attack is None else _forward(classifier, discriminator, xa)
            for key, value in (("images_nat", xb.cpu()), ("images_pert", xa.cpu()), ("logits_nat", ln),
                               ("logits_pert", lp), ("features_nat", fn), ("features_pert", fp),
                               ("labels", yb.cpu()), ("pred_nat", ln.argmax(1)), ("pred_pert", lp.argmax(1)),
                               ("d_nat", dn), ("d_pert", dp)):
                if value is not None:
                    parts[key].append(value)
    # torch.cat allocates: every field is its own copy (even with attack None, where the natural
    # and perturbed parts are the same tensors), so editing one never changes another.
    return LatentSet(**{k: (torch.cat(v) if v else None) for k, v in parts.items()}, attack=attack)
