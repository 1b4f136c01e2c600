"""What the Attack page shows for a few images: natural, adversarial and IMT-corrected inputs,
predictions, confidences and discriminator scores before and after. Streamlit-free.

The attack targets the bare classifier (as the official evaluation does, docs/method.md §5); IMT is
then applied to the adversarial image with the run's own training ε (atld.inference)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from atld.attacks.gradient import AttackConfig, run_attack
from atld.config.vocab import AttackKind, InferenceMode
from atld.errors import require


@dataclass(frozen=True)
class AttackDefaults:
    """What the Attack page shows first (the default view, computed ahead at start-up); ε is the
    dataset's."""
    kind: AttackKind = AttackKind.PGD
    steps: int = 20
    imt_mode: InferenceMode = InferenceMode.IMT
    first: int = 0  # first test image
    count: int = 6  # images shown


ATTACK_DEFAULTS = AttackDefaults()


@dataclass(frozen=True)
class AttackView:
    """N images; arrays are NumPy on the CPU (picklable, so `st.cache_data` can keep them).

    x, x_adv, x_imt: float32 [N, C, H, W] in [0, 1] (x_imt: IMT applied to x_adv; None without D).
    labels, pred_*: int64 [N]; conf_*: float32 [N], softmax probability of the predicted class;
    d_*: float32 [N], D's P(natural) of the latent (None without a discriminator);
    linf: float32 [N], ‖x_adv − x‖∞ (≤ epsilon)."""
    x: np.ndarray
    x_adv: np.ndarray
    x_imt: np.ndarray | None
    labels: np.ndarray
    pred_nat: np.ndarray
    pred_adv: np.ndarray
    pred_imt: np.ndarray | None
    conf_nat: np.ndarray
    conf_adv: np.ndarray
    conf_imt: np.ndarray | None
    d_nat: np.ndarray | None
    d_adv: np.ndarray | None
    d_imt: np.ndarray | None
    linf: np.ndarray
    epsilon: float  # the attack's ε, [0, 1] pixel units
    imt_mode: str | None  # "atld" | "atld+" | None

    @property
    def delta(self) -> np.ndarray:
        return self.x_adv - self.x


def _scores(run, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(predictions, confidence of the prediction, D's natural probability or None) for x."""
    with torch.no_grad():
        logits = run.classifier(x)
        prob = logits.softmax(1)
        conf, pred = prob.max(1)
        d = run.discriminator.natural_probability(logits) if run.discriminator is not None else None
    return pred.numpy(), conf.numpy(), (d.numpy() if d is not None else None)


def attack_view(run, x: torch.Tensor, y: torch.Tensor, config: AttackConfig, seed: int = 0,
                imt_mode: str = "atld") -> AttackView:
    """Attack `x` (float [N, C, H, W] in [0, 1], CPU) with labels `y` ([N] int64) against the run's
    classifier, then apply IMT (`imt_mode` "atld" or "atld+") when the run has a discriminator."""
    from atld.inference import apply_inference

    require(x.dim() == 4 and len(x) == len(y), "attack_view needs images [N, C, H, W] and labels [N]")
    run.classifier.eval()
    generator = torch.Generator().manual_seed(int(seed))
    x_adv = run_attack(run.classifier, x, y, config, generator=generator)
    pred_nat, conf_nat, d_nat = _scores(run, x)
    pred_adv, conf_adv, d_adv = _scores(run, x_adv)
    x_imt = pred_imt = conf_imt = d_imt = None
    mode = None
    if run.discriminator is not None:
        mode = imt_mode
        x_imt_t = apply_inference(run, x_adv, imt_mode)
        pred_imt, conf_imt, d_imt = _scores(run, x_imt_t)
        x_imt = x_imt_t.numpy()
    linf = (x_adv - x).abs().flatten(1).amax(1).numpy()
    return AttackView(x.numpy(), x_adv.numpy(), x_imt, y.numpy(), pred_nat, pred_adv, pred_imt, conf_nat,
                      conf_adv, conf_imt, d_nat, d_adv, d_imt, linf, float(config.epsilon), mode)


def summary_rows(view: AttackView, class_names: tuple[str, ...]) -> list[dict]:
    """One row per image for the page's table: label, predictions and D scores before/after."""
    rows = []
    for i in range(len(view.labels)):
        row = {"label": class_names[view.labels[i]],
               "natural → pred": class_names[view.pred_nat[i]], "conf nat": round(float(view.conf_nat[i]), 3),
               "adversarial → pred": class_names[view.pred_adv[i]], "conf adv": round(float(view.conf_adv[i]), 3),
               "‖δ‖∞": round(float(view.linf[i]), 4)}
        if view.d_nat is not None:
            row["D(nat)"] = round(float(view.d_nat[i]), 3)
            row["D(adv)"] = round(float(view.d_adv[i]), 3)
        if view.pred_imt is not None:
            row[f"{view.imt_mode.upper()} (IMT) → pred"] = class_names[view.pred_imt[i]]
            row["D(IMT)"] = round(float(view.d_imt[i]), 3)
        rows.append(row)
    return rows
