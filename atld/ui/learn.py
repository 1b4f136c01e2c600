"""The Learn page's lesson, Streamlit-free: the steps, which checkpoint plays which part, and
every sentence the lesson says about a model, computed from the numbers on screen.

No statement here is a fixed claim: each function takes the measured numbers and words what
they show, including when they contradict the story (a robust model whose gap is larger, a
discriminator that cannot separate the clouds, an IMT defense that the adaptive attack breaks).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from atld.ui.runs import RunEntry
from atld.vocab import METHOD_NAMES, Method

STEPS = (
    ("1 · Natural clouds", "A classifier maps each image to a point in its latent space (its logits). Natural "
     "images of one class gather in one region: a cloud per class, the *data manifold* as the classifier sees it."),
    ("2 · A small perturbation", "An adversarial perturbation changes every pixel by at most ε. Below are test "
     "images the attack actually flips, with the model's prediction before and after."),
    ("3 · The attack's path", "Watch the attack move the same images step by step: each PGD iteration pushes "
     "their latents further, out of their cloud and into another class's region."),
    ("4 · A robust model", "Adversarial training (PGD-AT, ATLD) trains on perturbed images. The question is "
     "measured, not assumed: do the perturbed latents stay closer to the natural clouds?"),
    ("5 · ATLD's D and IMT", "ATLD trains a discriminator D to tell natural latents from perturbed ones. At test "
     "time IMT moves an input one step towards what D calls natural. That only helps if D can tell them apart."),
    ("6 · The adaptive attack", "The official evaluation attacks the bare classifier and applies IMT afterwards. "
     "An adaptive attacker attacks the whole defense, IMT included. Same images, both attacks, side by side."),
)

ROBUST_METHODS = ("pgd-at", "atld", "feature-scatter")  # methods that train on perturbed images, in lesson order
CLEAR_GAP = 0.6  # two-sample accuracy above which the perturbed latents are clearly off the natural ones
AUC_CHANCE = 0.55  # D's AUC below which it does no better than chance, in words


def method_name(method: str) -> str:
    return Method(method).traits.short if method in METHOD_NAMES else method


def pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def step_from_query(value, count: int = len(STEPS)) -> int:
    """The 0-based step an address's `step` parameter (1-based, as shown) names; 0 for anything
    that is not a step number."""
    try:
        k = int(str(value).strip())
    except (TypeError, ValueError):
        return 0
    return k - 1 if 1 <= k <= count else 0


def pick_by_method(runs: list[RunEntry], dataset: str) -> dict[str, RunEntry]:
    """One checkpoint per training method for `dataset`, shipped runs first."""
    out: dict[str, RunEntry] = {}
    for r in sorted(runs, key=lambda r: (r.source != "shipped", r.label)):
        if r.dataset == dataset and r.method not in out:
            out[r.method] = r
    return out


@dataclass(frozen=True)
class Cast:
    """Which checkpoint plays which part of the lesson (None: none of that kind for the dataset)."""
    natural: RunEntry | None
    robust: dict[str, RunEntry]  # method -> checkpoint, adversarially trained ones
    with_d: RunEntry | None  # a checkpoint with a discriminator (ATLD), for D and IMT

    def missing(self) -> list[str]:
        """One line per part no checkpoint can play."""
        out = []
        if self.natural is None:
            out.append("no naturally trained checkpoint for this dataset: steps 1-3 use the selected one instead")
        if not self.robust:
            out.append("no adversarially trained checkpoint (PGD-AT or ATLD) for this dataset: step 4 has nothing "
                       "to compare")
        if self.with_d is None:
            out.append("no checkpoint with a discriminator (ATLD) for this dataset: steps 5 and 6 need one")
        return out


def cast(runs: list[RunEntry], dataset: str, selected: RunEntry | None = None) -> Cast:
    """The lesson's checkpoints for `dataset`: the selected one plays its own method's part."""
    by = pick_by_method(runs, dataset)
    if selected is not None and selected.dataset == dataset:
        by[selected.method] = selected
    robust = {m: by[m] for m in ROBUST_METHODS if m in by}
    with_d = by.get("atld") if by.get("atld") is not None and by["atld"].has_discriminator else \
        next((r for r in by.values() if r.has_discriminator), None)
    return Cast(by.get("natural"), robust, with_d)


# ---------------------------------------------------------------------- step 1: the natural clouds

def clouds_statement(gap: dict, accuracy_nat: float, accuracy_pert: float, n: int, attack: str = "PGD-20") -> str:
    """What the natural model's map shows: how many perturbed points crossed into another class's
    region (their prediction changed class) and how far the two clouds are apart."""
    crossed = round((accuracy_nat - accuracy_pert) * n)
    two = gap["two_sample_accuracy"]
    mixing = gap["knn_mixing"]
    apart = ("clearly apart" if two >= CLEAR_GAP else "hard to tell apart")
    out = (f"Of {n} test images, {round(accuracy_nat * n)} are classified correctly; under {attack}, "
           f"{round(accuracy_pert * n)} still are. ")
    if crossed > 0:
        out += (f"{crossed} perturbed points ({pct(crossed / n)}) crossed from their class's region into another "
                f"class's region. ")
    else:
        out += "No perturbed point crossed into another class's region here. "
    out += (f"The natural and perturbed clouds are {apart}: a fresh classifier separates them with "
            f"{pct(two)} accuracy (50 % = no gap), and {pct(mixing)} of a perturbed point's nearest neighbours "
            f"are natural (kNN mixing; 50 % = fully mixed).")
    return out


# ---------------------------------------------------------------------- step 2: fooled examples

def pick_fooled(labels, pred_nat, pred_adv, k: int) -> np.ndarray:
    """Positions (into the arrays) of up to `k` images the attack fools: classified correctly when
    natural, wrongly when attacked."""
    labels, pred_nat, pred_adv = (np.asarray(a) for a in (labels, pred_nat, pred_adv))
    return np.flatnonzero((pred_nat == labels) & (pred_adv != labels))[:k]


def fooled_statement(labels, pred_nat, pred_adv, epsilon: float, pixel_levels: int | None = None) -> str:
    """How many of the searched images the attack fools, and how large ε is in pixel terms."""
    labels, pred_nat, pred_adv = (np.asarray(a) for a in (labels, pred_nat, pred_adv))
    n = len(labels)
    right = int((pred_nat == labels).sum())
    fooled = int(((pred_nat == labels) & (pred_adv != labels)).sum())
    size = f"ε = {epsilon:.3g} ({pct(epsilon)} of the pixel range"
    size += f", about {epsilon * pixel_levels:.1f} of {pixel_levels} grey levels)" if pixel_levels else ")"
    if fooled == 0:
        return (f"The attack fooled none of the {right} correctly classified images among the first {n} at {size}: "
                "this model resists it here; pick the natural checkpoint to see the effect.")
    return (f"The attack fooled {fooled} of the {right} correctly classified images among the first {n} "
            f"({pct(fooled / max(right, 1))}) at {size}. Compare each natural image with its adversarial "
            "one: do you still read the same class? The model does not.")


# ---------------------------------------------------------------------- step 3: the path

def path_statement(accuracy: np.ndarray, imt_accuracy: float | None) -> str:
    """How accuracy falls along the attack's steps, and what the IMT step back does."""
    accuracy = np.asarray(accuracy, float)
    steps = len(accuracy) - 1
    below = np.flatnonzero(accuracy <= accuracy[0] / 2)
    out = f"Accuracy on these images falls from {pct(accuracy[0])} (natural) to {pct(accuracy[-1])} after {steps} steps"
    out += (f"; it is halved after step {below[0]}." if len(below) and below[0] > 0 else ".")
    if imt_accuracy is not None:
        verb = ("brings back" if imt_accuracy > accuracy[-1] else "does not bring back")
        out += (f" One IMT step from the last iterate {verb} images: {pct(imt_accuracy)} after IMT "
                f"(this attacker ignored IMT; step 6 shows one that does not).")
    return out


# ---------------------------------------------------------------------- step 4: a robust model

@dataclass(frozen=True)
class Measure:
    key: str  # in a gap dict (`atld.latent.gap_numbers`)
    name: str
    smaller_gap: str  # "lower" or "higher": which direction means the clouds are closer

    def closer(self, a: float, b: float) -> bool:
        """Whether value a means a smaller gap than value b."""
        return a < b if self.smaller_gap == "lower" else a > b

    def show(self, value: float) -> str:
        return f"{value:.4f}" if self.key == "mmd2" else pct(value)


GAP_MEASURES = (Measure("two_sample_accuracy", "two-sample test accuracy", "lower"),
                Measure("mmd2", "MMD²", "lower"),
                Measure("knn_mixing", "kNN mixing", "higher"))


def gap_leaders(gaps: dict[str, dict]) -> dict[str, str]:
    """Per measure key: the method whose gap is smallest by that measure."""
    out = {}
    for m in GAP_MEASURES:
        best = None
        for method, gap in gaps.items():
            if best is None or m.closer(gap[m.key], gaps[best][m.key]):
                best = method
        out[m.key] = best
    return out


def robust_statements(gaps: dict[str, dict]) -> list[str]:
    """What the comparison of the gap numbers (method -> gap dict) shows, one sentence per line:
    for each robust method whether its gap is smaller than the natural model's by each measure,
    then which method has the smallest gap, by which measures. A method is said to close the gap
    more than the others only where the numbers say so."""
    out = []
    natural = gaps.get("natural")
    for method, gap in gaps.items():
        if method == "natural" or natural is None:
            continue
        smaller = [m for m in GAP_MEASURES if m.closer(gap[m.key], natural[m.key])]
        larger = [m for m in GAP_MEASURES if m not in smaller]
        detail = lambda ms, gap=gap: ", ".join(f"{m.name} {m.show(gap[m.key])} vs {m.show(natural[m.key])}" for m in ms)
        if not larger:
            out.append(f"{method_name(method)} shrinks the gap by every measure ({detail(smaller)}).")
        elif not smaller:
            out.append(f"{method_name(method)} does not shrink the gap by any measure ({detail(larger)}).")
        else:
            out.append(f"{method_name(method)} shrinks the gap by {detail(smaller)}, but not by {detail(larger)}.")
    if len(gaps) < 2:
        return out
    leaders = gap_leaders(gaps)
    winners = {}
    for m in GAP_MEASURES:
        winners.setdefault(leaders[m.key], []).append(m.name)
    ranked = sorted(winners.items(), key=lambda kv: -len(kv[1]))
    best, measures = ranked[0]
    if len(winners) == 1:
        out.append(f"The smallest gap by every measure: {method_name(best)}.")
    else:
        rest = "; ".join(f"{method_name(meth)} by {', '.join(ms)}" for meth, ms in ranked[1:])
        out.append(f"The smallest gap: {method_name(best)} by {', '.join(measures)}; {rest}. "
                   "The measures disagree, so no method closes the gap best on every count.")
    if "atld" in gaps and best != "atld":
        others = ", ".join(method_name(m) for m, _ in ranked if m != "atld")
        out.append(f"Here ATLD does not close the gap more than {others}: ATLD's claim is not borne out by these "
                   "checkpoints.")
    return out


def comparison_rows(entries: dict[str, RunEntry], maps: dict) -> list[dict]:
    """Per method: accuracy natural / perturbed and the gap numbers (from `atld.latent.LatentMap`s),
    for the step-4 table."""
    rows = []
    for method, entry in entries.items():
        m = maps[method]
        rows.append({"checkpoint": entry.label, "method": method,
                     "clean acc %": round(100 * m.latents.accuracy_nat, 1),
                     "attacked acc %": round(100 * m.latents.accuracy_pert, 1),
                     "two-sample acc % (lower: smaller gap)": round(100 * m.gap["two_sample_accuracy"], 1),
                     "MMD² (lower: smaller gap)": round(m.gap["mmd2"], 4),
                     "kNN mixing % (higher: smaller gap)": round(100 * m.gap["knn_mixing"], 1)})
    return rows


# ---------------------------------------------------------------------- step 5: D and IMT

def discriminator_statement(check: dict | None, name: str) -> str:
    """What D's eval-mode check (`atld.evaluate.discriminator.DiscriminatorCheck.to_dict`) says, in
    the lesson's words."""
    if check is None:
        return f"{name} has no discriminator, so there is no D to look at and no IMT."
    auc = check["auc_pgd"]
    if check["separates"]:
        verdict = (f"D separates natural from PGD-20 latents (AUC {auc:.2f} ≥ {check['separation_auc']}): IMT's "
                   "step has a direction worth following.")
    elif auc < AUC_CHANCE:
        verdict = (f"D cannot separate natural from PGD-20 latents: its AUC is {auc:.2f}, about chance (0.5). "
                   "IMT's step then follows noise, not the manifold.")
    else:
        verdict = (f"D separates natural from PGD-20 latents only weakly (AUC {auc:.2f} < {check['separation_auc']}): "
                   "IMT's direction carries little information.")
    return (f"{verdict} Measured on {check['n']} test images with D in eval mode, as IMT uses it. One IMT step moves "
            f"D's mean P(natural) on PGD-20 inputs from {check['p_pgd'][1]:.3f} to {check['p_pgd_after_imt']:.3f}.")


def imt_statement(labels, pred_adv, pred_imt) -> str:
    """What one IMT step does to attacked images (non-adaptive: the attacker ignored IMT)."""
    labels, pred_adv, pred_imt = (np.asarray(a) for a in (labels, pred_adv, pred_imt))
    n = len(labels)
    before, after = int((pred_adv == labels).sum()), int((pred_imt == labels).sum())
    rescued = int(((pred_adv != labels) & (pred_imt == labels)).sum())
    broken = int(((pred_adv == labels) & (pred_imt != labels)).sum())
    change = ("raises" if after > before else "lowers" if after < before else "leaves")
    return (f"On these {n} attacked images IMT {change} the correct count from {before} to {after} "
            f"({rescued} rescued, {broken} that were right turned wrong).")


# ---------------------------------------------------------------------- step 6: the adaptive attack

def adaptive_statement(n: int, clean: int, non_adaptive: int, adaptive: int, mode: str = "atld") -> str:
    """The adaptive-attack lesson in numbers: correct counts after IMT (`mode`) on clean images,
    under the non-adaptive attack (PGD-20 on the bare classifier, then IMT) and under the adaptive
    attack through IMT."""
    out = (f"With {mode.upper()} inference, {clean} of {n} clean images are correct; {non_adaptive} of {n} survive "
           f"the non-adaptive attack, {adaptive} of {n} the adaptive attack through IMT. ")
    drop = non_adaptive - adaptive
    if drop > 0:
        out += (f"The adaptive attack fools {drop} more: the non-adaptive number overstates the defense. "
                "Trust the adaptive one (itself an upper bound).")
    elif drop < 0:
        out += ("Here the non-adaptive attack did better on these few images: both are upper bounds; the "
                "lower one is the number to trust.")
    else:
        out += "Both attacks reach the same count on these images; both remain upper bounds."
    return out


def d_histogram(d_nat: np.ndarray, d_pert: np.ndarray, bins: int = 20):
    """A plotly histogram of D's natural probability for natural and perturbed latents."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for name, values, colour in (("natural", d_nat, "#1f77b4"), ("perturbed", d_pert, "#d62728")):
        fig.add_trace(go.Histogram(x=values, name=name, xbins=dict(start=0, end=1, size=1 / bins), opacity=0.6,
                                   marker_color=colour))
    fig.update_layout(barmode="overlay", height=300, margin=dict(l=10, r=10, t=10, b=10),
                      xaxis_title="D: P(natural)", yaxis_title="images")
    return fig


# ---------------------------------------------------------------------- step 6's computation

@dataclass(frozen=True)
class AdaptiveLesson:
    """The same N images under the non-adaptive attack (PGD-20 on the bare classifier, then IMT)
    and under the adaptive attack through IMT (APGD-CE and APGD-T with a straight-through
    gradient; per image the candidate that fools it, else APGD-CE's). NumPy arrays: images float
    [N, C, H, W] in [0, 1]; predictions int64 [N], all after IMT (`mode`)."""
    mode: str
    epsilon: float
    apgd_steps: int
    x: np.ndarray
    x_non_adaptive: np.ndarray
    x_adaptive: np.ndarray
    labels: np.ndarray
    pred_clean: np.ndarray
    pred_non_adaptive: np.ndarray
    pred_adaptive: np.ndarray

    def counts(self) -> tuple[int, int, int, int]:
        """(n, correct clean, correct non-adaptive, correct adaptive)."""
        ok = lambda p: int((p == self.labels).sum())
        return len(self.labels), ok(self.pred_clean), ok(self.pred_non_adaptive), ok(self.pred_adaptive)


def adaptive_lesson(run, x, y, epsilon: float, *, mode: str = "atld", seed: int = 0,
                    apgd_steps: int = 50) -> AdaptiveLesson:
    """Compute `AdaptiveLesson` for a run with a discriminator (x float [N, C, H, W] in [0, 1] on
    the CPU, labels y [N]); few images and a short APGD (`apgd_steps`) keep it interactive."""
    import torch

    from atld.attacks.registry import ATTACKS, AttackBudget
    from atld.inference import IMTPipeline, predict
    from atld.models.common import eval_mode

    budget = AttackBudget(torch.device("cpu"), seed, 256, apgd_steps)
    with eval_mode(run.classifier, run.discriminator):
        pred = lambda xs: predict(run, xs, mode).argmax(1).cpu()
        [(_, x_non)] = ATTACKS["pgd20"].perturb(run.classifier, x, y, epsilon, budget)
        pipeline = IMTPipeline(run, mode, straight_through=True).eval()
        candidates = [xa for _, xa in ATTACKS["adaptive"].perturb(pipeline, x, y, epsilon, budget)]
        preds = [pred(xa) for xa in candidates]
        x_ada, p_ada = candidates[0].clone(), preds[0].clone()
        for xa, p in zip(candidates[1:], preds[1:]):
            take = (p_ada == y) & (p != y)
            x_ada[take], p_ada[take] = xa[take], p[take]
        return AdaptiveLesson(mode, float(epsilon), apgd_steps, x.numpy(), x_non.numpy(), x_ada.numpy(), y.numpy(),
                              pred(x).numpy(), pred(x_non).numpy(), p_ada.numpy())
