"""What the Attack page shows for a few images: natural, adversarial and IMT-corrected inputs,
predictions, confidences and discriminator scores before and after. Streamlit-free.

The attack targets the bare classifier (as the official evaluation does, docs/method.md §5); IMT is
then applied to the adversarial image with the run's own training ε (atld.inference). Importing
this module imports no torch (the page draws an `AttackResult`, plain NumPy, in the server)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

    from atld.attacks.gradient import AttackConfig
from atld.vocab import AttackKind, InferenceMode
from atld.errors import require


@dataclass(frozen=True)
class AttackDefaults:
    """What the Attack page shows first (its first view, computed ahead at start-up); ε is the
    dataset's."""
    kind: AttackKind = AttackKind.PGD
    steps: int = 20
    imt_mode: InferenceMode = InferenceMode.IMT
    first: int = 0  # first test image
    count: int = 6  # images shown


ATTACK_DEFAULTS = AttackDefaults()


@dataclass(frozen=True)
class AttackResult:
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
    probs_nat: np.ndarray | None = None  # float32 [N, K]: softmax probabilities of every class
    probs_adv: np.ndarray | None = None
    probs_imt: np.ndarray | None = None  # None without D

    @property
    def delta(self) -> np.ndarray:
        return self.x_adv - self.x


def _scores(run, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]:
    """(predictions, confidence of the prediction, D's natural probability or None, all class
    probabilities [N, K]) for x."""
    import torch

    with torch.no_grad():
        logits = run.classifier(x)
        prob = logits.softmax(1)
        conf, pred = prob.max(1)
        d = run.discriminator.natural_probability(logits) if run.discriminator is not None else None
    return pred.numpy(), conf.numpy(), (d.numpy() if d is not None else None), prob.float().numpy()


def attack_result(run, x: torch.Tensor, y: torch.Tensor, config: AttackConfig, seed: int = 0,
                imt_mode: str = "atld") -> AttackResult:
    """Attack `x` (float [N, C, H, W] in [0, 1], CPU) with labels `y` ([N] int64) against the run's
    classifier, then apply IMT (`imt_mode` "atld" or "atld+") when the run has a discriminator."""
    import torch

    from atld.attacks.gradient import run_attack
    from atld.inference import apply_inference
    from atld.progress import report

    require(x.dim() == 4 and len(x) == len(y), "attack_result needs images [N, C, H, W] and labels [N]")
    run.classifier.eval()
    generator = torch.Generator().manual_seed(int(seed))
    steps = config.num_steps
    x_adv = run_attack(run.classifier, x, y, config, generator=generator,  # each step may stop at a Cancel
                       on_step=lambda k, _: report(k / steps, f"{config.label}: step {k}/{steps}"))
    pred_nat, conf_nat, d_nat, probs_nat = _scores(run, x)
    pred_adv, conf_adv, d_adv, probs_adv = _scores(run, x_adv)
    x_imt = pred_imt = conf_imt = d_imt = probs_imt = None
    mode = None
    if run.discriminator is not None:
        mode = imt_mode
        x_imt_t = apply_inference(run, x_adv, imt_mode)
        pred_imt, conf_imt, d_imt, probs_imt = _scores(run, x_imt_t)
        x_imt = x_imt_t.numpy()
    linf = (x_adv - x).abs().flatten(1).amax(1).numpy()
    return AttackResult(x.numpy(), x_adv.numpy(), x_imt, y.numpy(), pred_nat, pred_adv, pred_imt, conf_nat,
                      conf_adv, conf_imt, d_nat, d_adv, d_imt, linf, float(config.epsilon), mode,
                      probs_nat, probs_adv, probs_imt)


def summary_rows(result: AttackResult, class_names: tuple[str, ...]) -> list[dict]:
    """One row per image for the page's table: label, predictions and D scores before/after."""
    rows = []
    for i in range(len(result.labels)):
        row = {"label": class_names[result.labels[i]],
               "natural → pred": class_names[result.pred_nat[i]], "conf nat": round(float(result.conf_nat[i]), 3),
               "adversarial → pred": class_names[result.pred_adv[i]], "conf adv": round(float(result.conf_adv[i]), 3),
               "‖δ‖∞": round(float(result.linf[i]), 4)}
        if result.d_nat is not None:
            row["D(nat)"] = round(float(result.d_nat[i]), 3)
            row["D(adv)"] = round(float(result.d_adv[i]), 3)
        if result.pred_imt is not None:
            row[f"{result.imt_mode.upper()} (IMT) → pred"] = class_names[result.pred_imt[i]]
            row["D(IMT)"] = round(float(result.d_imt[i]), 3)
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------- what the page says

TOP_K = 3  # classes per probability bar chart


def top_k(probs: np.ndarray, k: int = TOP_K) -> list[tuple[int, float]]:
    """The k most probable classes of one probability vector [K], as (class, probability), largest first."""
    order = np.argsort(-np.asarray(probs, dtype=np.float64), kind="stable")[:k]
    return [(int(c), float(probs[c])) for c in order]


def probability_bars(probs: np.ndarray, label: int, class_names: tuple[str, ...], k: int = TOP_K,
                     width: int = 12) -> str:
    """Markdown: one line per top-k class, a bar of `width` blocks scaled to probability 1, green
    for the true class and red for a wrong class ranked first (readable without colour too: the
    true class is marked ✓)."""
    lines = []
    for rank, (c, p) in enumerate(top_k(probs, k)):
        full = int(round(p * width))
        bar = "█" * full + "░" * (width - full)
        name = class_names[c]
        if c == label:
            text = f":green[`{bar}` **{name}** ✓ {p:.2f}]"
        elif rank == 0:
            text = f":red[`{bar}` **{name}** {p:.2f}]"
        else:
            text = f"`{bar}` {name} {p:.2f}"
        lines.append(text)
    return "  \n".join(lines)


def outcome_mark(label: int, pred: int, class_names: tuple[str, ...], *, attacked: bool = True) -> str:
    """Markdown: the prediction with a mark that reads without colour too: "fooled" in red when
    the label flipped, "not fooled" in green when it held (for the natural image: right / wrong)."""
    name = class_names[pred]
    if pred == label:
        return f":green[**→ {name}** ✓ {'not fooled' if attacked else 'right'}]"
    return f":red[**→ {name}** ✗ {'fooled' if attacked else 'wrong'}]"


# Where the true class may stop being what the image shows. The datasets' ε are the radii the
# benchmarks assume keep the class unambiguous; Tramèr et al. (ICML 2020, "Fundamental tradeoffs
# between invariance and sensitivity to adversarial perturbations") had people relabel ℓ∞-bounded
# MNIST edits and found label-changing ones at ε = 0.4, i.e. 4/3 of MNIST's 0.3. Past that
# multiple of the dataset's ε, an "adversarial" image may simply be an image of another class.
CLASS_CHANGE_FACTOR = 4 / 3


def epsilon_note(epsilon: float, dataset_epsilon: float) -> tuple[str, str] | None:
    """(level, text) about the attack's ε relative to the dataset's, or None inside the threat model."""
    if epsilon <= dataset_epsilon * (1 + 1e-6):
        return None
    ratio = epsilon / dataset_epsilon
    if ratio >= CLASS_CHANGE_FACTOR - 1e-6:
        return ("warning", f"ε = {epsilon:.4g} is {ratio:.2f}× the dataset's ε ({dataset_epsilon:.4g}). From "
                f"{CLASS_CHANGE_FACTOR:.2f}× on, ℓ∞ edits can change what the image shows (people relabel such "
                "MNIST edits at 4/3 of its ε): a \"fooled\" model may be right about a changed image, so these "
                "flips do not measure robustness.")
    return ("info", f"ε = {epsilon:.4g} is past the dataset's ε ({dataset_epsilon:.4g}), the radius robust accuracy "
            "is measured at: the model was not trained to resist this.")


def confidence_note(label_smoothing: float | None, num_classes: int, method: str) -> str:
    """What the probabilities mean for this model, with its own label smoothing."""
    if label_smoothing and method in ("atld", "feature-scatter"):
        top = 1 - label_smoothing
        return (f"Probabilities: this {method} model was trained with label smoothing δ = {label_smoothing:g}: its "
                f"target gives the true class {top:.2f} and each of the other {num_classes - 1} classes "
                f"{label_smoothing / (num_classes - 1):.3f}. So a sure prediction shows about {top:.2f}, not 1: read "
                "the ranking and the margin to the second class, not the size of the top bar.")
    return "Probabilities: the classifier's softmax; bars are drawn to the scale of 1."


D_MEANING = ("D = the discriminator's probability that the image's latent (the classifier's logits) is natural: "
             "near 1 looks natural, near 0 looks attacked; IMT moves the input toward a higher D.")


def discriminator_lines(check: dict | None) -> list[tuple[str, str]]:
    """(level, sentence) lines under the Attack page's D scores, from D's measured check: what D's
    score is, D's AUC per batch and per image with the sentence saying which kind of separation D
    has, and a warning where D does not judge single images (so the per-image scores shown say
    little). An AUC below 0.5 is called inverted, never chance (`atld.evaluate.dwords`)."""
    from atld.ui.latent import d_colour_lines

    if not check:
        return []
    return [("caption", D_MEANING)] + d_colour_lines(check)


def imt_note(result: AttackResult) -> str | None:
    """A computed sentence on what IMT did to these images (helped, hurt or changed nothing)."""
    if result.pred_imt is None:
        return None
    adv_ok = result.pred_adv == result.labels
    imt_ok = result.pred_imt == result.labels
    fixed, broke, n = int((imt_ok & ~adv_ok).sum()), int((adv_ok & ~imt_ok).sum()), len(result.labels)
    mode = result.imt_mode.upper()
    if fixed == broke == 0:
        return f"{mode} (IMT) changed no prediction's correctness on these {n} images."
    text = f"{mode} (IMT) corrected {fixed} of the {int((~adv_ok).sum())} fooled images"
    if broke:
        text += (f" and broke {broke} that the attack had not fooled: IMT's step follows D, and where D cannot "
                 "tell natural from adversarial it can move an image the wrong way")
    return text + "."
