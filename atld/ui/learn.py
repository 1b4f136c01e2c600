"""The Learn page's lesson, Streamlit-free: the steps, which checkpoint plays which part, and
every sentence the lesson says about a model, computed from the numbers on screen.

No statement here is a fixed claim: each function takes the measured numbers and words what
they show, including when they contradict the story (a robust model whose gap is larger, a
discriminator that cannot separate the clouds, an IMT defense that the adaptive attack breaks).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from atld.evaluate.dwords import (CHANCE_BAND, INVERTED, SEPARATION_AUC, auc_words, inverted_note,
                                  separation_kind)
from atld.ui.runs import RunEntry
from atld.vocab import METHOD_NAMES, InferenceMode, Method

STEPS = (
    ("1 · The hypothesis", "The *manifold argument*, stated so that the numbers can refute it: (a) adversarial "
     "inputs leave the natural latent distribution; (b) training that matches the perturbed distribution to the "
     "natural one (adversarial training, ATLD) buys robustness; (c) pulling an input back towards the natural "
     "distribution at test time (ATLD's IMT, guided by a discriminator D) buys more."),
    ("2 · Natural clouds", "A classifier maps each image to a point in its latent space (its logits). Natural "
     "images of one class gather in one region: a cloud per class, the *data manifold* as the classifier sees it."),
    ("3 · A small perturbation", "An adversarial perturbation changes every pixel by at most ε. Below are test "
     "images the attack actually flips, with the model's prediction before and after."),
    ("4 · The attack's path", "Watch the attack move the same images step by step: each PGD iteration pushes "
     "their latents further, out of their cloud and into another class's region."),
    ("5 · Robust models: the gap", "Adversarial training (PGD-AT, ATLD) trains on perturbed images. Part (b) is "
     "measured, not assumed: do the perturbed latents stay closer to the natural clouds, and does a smaller gap "
     "go with more robustness?"),
    ("6 · ATLD's D and IMT", "ATLD trains a discriminator D to tell natural latents from perturbed ones. At test "
     "time IMT moves an input one step towards what D calls natural. That only helps if D can tell them apart."),
    ("7 · What D really learned", "D was trained on an all-natural and an all-perturbed batch in separate calls. "
     "Does it judge an image, or the batch the image came in? The same images, scored in different batches."),
    ("8 · The adaptive attack", "The official evaluation attacks the bare classifier and applies IMT afterwards. "
     "An adaptive attacker attacks the whole defense, IMT included. Same images, both attacks, side by side."),
    ("9 · What the numbers showed", "The hypothesis again, part by part, against the numbers this lesson "
     "measured, model by model, and the accuracy a reader can trust (AutoAttack, the adaptive attack)."),
)

# Which steps test which part of the hypothesis (0-based step indices, in STEPS).
HYPOTHESIS_PARTS = (
    ("a", "adversarial inputs leave the natural latent distribution", (1, 3)),
    ("b", "matching the distributions in training buys robustness", (4,)),
    ("c", "pulling inputs back at test time buys robustness", (5, 6, 7)),
)


def hypothesis_lines() -> list[str]:
    """Which steps test which part of the hypothesis, one line per part (from `HYPOTHESIS_PARTS`)."""
    out = []
    for key, claim, steps in HYPOTHESIS_PARTS:
        names = ", ".join(f"step {STEPS[k][0].split(' · ')[0]} ({STEPS[k][0].split(' · ')[1]})" for k in steps)
        out.append(f"({key}) {claim}: tested by {names}.")
    out.append(f"Step {len(STEPS)} sums up what the numbers showed for each part.")
    return out


ROBUST_METHODS = ("pgd-at", "atld", "feature-scatter")  # methods that train on perturbed images, in lesson order
CLEAR_GAP = 0.6  # two-sample accuracy from which the perturbed latents are at least partly off the natural ones
MIXED = 0.35  # kNN mixing above which the neighbourhoods are mixed (50 % = fully mixed)
APART_TWO_SAMPLE = 0.9  # "clearly apart" needs a two-sample accuracy of at least this ...
APART_MIXING = 0.1  # ... and a kNN mixing of at most this


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

def cloud_words(two_sample: float, mixing: float) -> str:
    """How far apart natural and perturbed clouds are, in words that follow both measures:
    "clearly apart" only when a fresh classifier tells them apart almost always (two-sample
    accuracy ≥ APART_TWO_SAMPLE) *and* almost no perturbed point has natural neighbours (kNN mixing
    ≤ APART_MIXING); "hard to tell apart" when the two-sample test is near chance and the
    neighbourhoods are mixed; "partly apart" otherwise."""
    if two_sample >= APART_TWO_SAMPLE and mixing <= APART_MIXING:
        return "clearly apart"
    if two_sample < CLEAR_GAP and mixing > MIXED:
        return "hard to tell apart"
    return "partly apart, partly overlapping"


def clouds_statement(gap: dict, accuracy_nat: float, accuracy_pert: float, n: int, attack: str = "PGD-20") -> str:
    """What the natural model's map shows: how many perturbed points crossed into another class's
    region (their prediction changed class) and how far the two clouds are apart."""
    crossed = round((accuracy_nat - accuracy_pert) * n)
    two = gap["two_sample_accuracy"]
    mixing = gap["knn_mixing"]
    out = (f"Of {n} test images, {round(accuracy_nat * n)} are classified correctly; under {attack}, "
           f"{round(accuracy_pert * n)} still are. ")
    if crossed > 0:
        out += (f"{crossed} perturbed points ({pct(crossed / n)}) crossed from their class's region into another "
                f"class's region. ")
    else:
        out += "No perturbed point crossed into another class's region here. "
    out += (f"The natural and perturbed clouds are {cloud_words(two, mixing)}: a fresh classifier separates them "
            f"with {pct(two)} accuracy (50 % = no gap, 100 % = fully apart), and {pct(mixing)} of a perturbed "
            f"point's nearest neighbours are natural (kNN mixing; 50 % = fully mixed, 0 % = fully apart).")
    return out


def clouds_apart(gap: dict) -> bool:
    """Whether a map's clouds are at least partly apart (part (a) of the hypothesis holds there)."""
    return cloud_words(gap["two_sample_accuracy"], gap["knn_mixing"]) != "hard to tell apart"


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
    out = f"Accuracy on these images goes from {pct(accuracy[0])} (natural) to {pct(accuracy[-1])} after {steps} steps"
    out += (f"; it is halved after step {below[0]}." if len(below) and below[0] > 0 else ".")
    if imt_accuracy is not None:
        out += f" One IMT step from the last iterate {change_words(accuracy[-1], imt_accuracy, pct)}"
        out += " (this attacker ignored IMT; step 8 shows one that does not)."
    return out


def change_words(before, after, show=str) -> str:
    """"raises it from 4 to 6", "lowers it from 25.0 % to 8.3 %", "leaves it at 4": a change in
    words that name both numbers (one when nothing changed)."""
    if after == before:
        return f"leaves it at {show(before)}"
    return f"{'raises' if after > before else 'lowers'} it from {show(before)} to {show(after)}"


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


LOGIT_REGIONS = ("In logit space a class's region is where that class's logit is the largest, so a point that "
                 "\"crossed into another class's region\" is a misclassified image by definition: the crossings "
                 "are the errors counted again, not a second finding. What the maps add is *where* the perturbed "
                 "points go and how far they stay from the natural ones.")


def gap_rank_statements(models: dict[str, tuple[float, float]], n: int, attack: str = "PGD-20") -> list[str]:
    """Whether the gap ranks robustness among the models on screen: `models` is method ->
    (two-sample accuracy natural vs perturbed, accuracy under `attack`), both fractions on the
    same `n` images. Each pair whose larger gap goes with the higher accuracy is said in words;
    when none does, that the gaps rank the models as their accuracy does (and that a few models
    make a weak test)."""
    out = []
    names = list(models)
    for a in names:
        for b in names:
            gap_a, acc_a = models[a]
            gap_b, acc_b = models[b]
            if a != b and gap_a > gap_b and acc_a > acc_b:
                out.append(f"{method_name(a)} keeps {pct(acc_a)} of {n} images under {attack} with a larger gap "
                           f"(two-sample accuracy {pct(gap_a)}) than {method_name(b)}'s ({pct(gap_b)}), which keeps "
                           f"{pct(acc_b)}: here the gap does not rank robustness.")
    if not out and len(models) >= 2:
        order = sorted(names, key=lambda m: models[m][0])
        out.append(f"Here the gaps rank the models as their {attack} accuracy does (smallest gap first: "
                   + ", ".join(f"{method_name(m)} {pct(models[m][0])} / {pct(models[m][1])}" for m in order)
                   + f"); with {len(models)} models that is a weak test, and {attack} is only an upper bound.")
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

def d_auc_words(auc: float) -> str:
    """What D's eval-mode AUC natural vs PGD-20 means for IMT, in words (inverted below the chance band)."""
    if auc >= SEPARATION_AUC:
        return f"D separates natural from PGD-20 latents (AUC {auc:.2f} ≥ {SEPARATION_AUC}): IMT's step has a " \
               "direction worth following."
    if auc < 0.5 - CHANCE_BAND:
        return (f"D's AUC natural vs PGD-20 is {auc_words(auc)}: {INVERTED} IMT's step towards \"natural\" then "
                "has no reason to point back to the clean image.")
    if auc <= 0.5 + CHANCE_BAND:
        return (f"D cannot separate natural from PGD-20 latents: its AUC is {auc_words(auc)}. IMT's step then "
                "follows noise, not the manifold.")
    return (f"D separates natural from PGD-20 latents only weakly (AUC {auc:.2f} < {SEPARATION_AUC}): IMT's "
            "direction carries little information.")


def discriminator_statement(learned: dict | None, name: str) -> str:
    """What D shows one image at a time (eval mode, as IMT uses it), from `what_d_learned`'s dict."""
    if learned is None:
        return f"{name} has no discriminator, so there is no D to look at and no IMT."
    return (f"{d_auc_words(learned['separation']['per_image'])} Measured on {learned['n']} test images and their "
            "PGD-20 copies, D in eval mode.")


def d_separates(learned: dict) -> bool:
    return learned["separation"]["per_image"] >= SEPARATION_AUC


def imt_counts_statement(steps: dict) -> str:
    """One IMT step on attacked images (`StepComparison.to_dict()`), the counts in words."""
    c = steps["correct"]
    return (f"On these {steps['n']} {steps['inputs']} images, {c['none']} are classified correctly; one IMT step "
            f"(ε = {steps['epsilon']:.3g}) {change_words(c['none'], c['imt'])}.")


# ---------------------------------------------------------------------- step 7: what D really learned

FOLLOWS = 0.1  # a mean P(natural) difference from which D's score is said to follow something


def _mean(values) -> float:
    return float(np.mean(values)) if len(values) else float("nan")


def batch_context_statement(learned: dict) -> str:
    """The same images scored three ways (`what_d_learned`: separate batches as D was trained, one
    mixed batch, one at a time), their mean scores and AUCs, in words."""
    sc, sep = learned["scores"], learned["separation"]
    two = lambda a, b: f"natural images average P(natural) {_mean(sc[a]):.2f}, adversarial {_mean(sc[b]):.2f}"  # noqa: E731
    out = (f"In separate all-natural and all-adversarial batches of {learned['batch_size']} (train mode, the way D "
           f"was trained): {two('separate_natural', 'separate_perturbed')}, AUC {auc_words(sep['per_batch'])}. "
           f"The same {learned['n']} images in one shuffled mixed batch: {two('mixed_natural', 'mixed_perturbed')}, "
           f"AUC {auc_words(sep['mixed'])}. One at a time (eval mode, as IMT sees them): "
           f"{two('eval_natural', 'eval_perturbed')}, AUC {auc_words(sep['per_image'])}.")
    kind = separation_kind(sep["per_batch"], sep["per_image"])
    head = {"images": "D judges single images.",
            "batches": "D tells batches apart, not images: the label travels in the batch's statistics.",
            "neither": "D separates neither batches nor images well."}[kind]
    return f"{head} {out}{inverted_note(sep['per_batch'], sep['mixed'], sep['per_image'])}"


def share_point(curve: list[dict], share: float) -> dict:
    """The share curve's entry nearest `share` (a fraction)."""
    return min(curve, key=lambda e: abs(e["share"] - share))


def share_statement(curve: list[dict], share: float, batch_size: int) -> tuple[str, str]:
    """(what D's mean score is at `share` adversarial images in a batch, whether the score follows
    the batch or the image across the whole curve), from `share_curve`'s entries."""
    e = share_point(curve, share)
    parts = [f"natural images in it {e['mean_natural']:.3f}" if e["mean_natural"] is not None else None,
             f"adversarial images {e['mean_perturbed']:.3f}" if e["mean_perturbed"] is not None else None]
    now = (f"A batch of {batch_size} with {pct(e['share'])} adversarial images: D's mean P(natural) is "
           f"{e['mean']:.3f} (" + ", ".join(p for p in parts if p) + ").")
    first, last = curve[0], curve[-1]
    swing = abs(last["mean"] - first["mean"])
    inside = [abs(c["mean_natural"] - c["mean_perturbed"]) for c in curve
              if c["mean_natural"] is not None and c["mean_perturbed"] is not None]
    image_gap = max(inside, default=0.0)
    span = (f"from {first['mean']:.3f} at {pct(first['share'])} adversarial to {last['mean']:.3f} at "
            f"{pct(last['share'])}")
    if swing >= FOLLOWS and swing > 2 * image_gap:
        whole = (f"D's mean score follows the batch rather than the image: it moves {span}, while inside one batch "
                 f"natural and adversarial images differ by at most {image_gap:.3f}.")
    elif image_gap >= FOLLOWS:
        whole = (f"D's score follows the image: inside one batch natural and adversarial images differ by up to "
                 f"{image_gap:.3f}, and the batch's mean moves {span}.")
    else:
        whole = (f"D's score barely moves with the batch ({span}) or with the image (at most {image_gap:.3f} apart "
                 "inside one batch).")
    return now, whole


def follows_batch(curve: list[dict]) -> bool:
    """Whether `share_statement` says the score follows the batch rather than the image."""
    return share_statement(curve, 0.0, 1)[1].startswith("D's mean score follows the batch")


def imt_statement(labels, pred_adv, pred_imt) -> str:
    """What one IMT step does to attacked images (non-adaptive: the attacker ignored IMT)."""
    labels, pred_adv, pred_imt = (np.asarray(a) for a in (labels, pred_adv, pred_imt))
    n = len(labels)
    before, after = int((pred_adv == labels).sum()), int((pred_imt == labels).sum())
    rescued = int(((pred_adv != labels) & (pred_imt == labels)).sum())
    broken = int(((pred_adv == labels) & (pred_imt != labels)).sum())
    return (f"On these {n} attacked images, the number classified correctly is {before}; one IMT step "
            f"{change_words(before, after)} ({rescued} rescued, {broken} that were right turned wrong).")


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


# ---------------------------------------------------------------------- step 9: what the numbers showed

@dataclass(frozen=True)
class ModelNumbers:
    """What the lesson measured for one model: its gap (`atld.latent.gap_numbers`, on the lesson's
    n images; None if not measured), D's separation (`Separation.to_dict()`: per_batch, per_image;
    None without D), IMT's step on PGD-20 inputs (`StepComparison.to_dict()`, or None) and its
    stored comparison row (`atld.evaluate.compare.comparison_row`: trusted accuracy with interval
    and n, AutoAttack, the adaptive attack through IMT; None without a card)."""
    label: str
    method: str
    gap: dict | None = None
    separation: dict | None = None
    steps: dict | None = None
    row: dict | None = None

    @property
    def trusted(self) -> dict | None:
        return (self.row or {}).get("trusted")


KIND_WORDS = {"images": "it judges images", "batches": "it tells batches apart, not images",
              "neither": "it separates neither"}


def model_line(m: ModelNumbers, n: int) -> str:
    """One sentence per model: its gap, D's separation per batch vs per image, its trusted accuracy."""
    from atld.evaluate.compare import cell_text

    parts = []
    if m.gap is not None:
        parts.append(f"gap: two-sample accuracy {pct(m.gap['two_sample_accuracy'])} on {n} images "
                     f"(clouds {cloud_words(m.gap['two_sample_accuracy'], m.gap['knn_mixing'])})")
    if m.separation is not None:
        sep = m.separation
        parts.append(f"D: AUC {auc_words(sep['per_batch'])} per batch, {auc_words(sep['per_image'])} per image "
                     f"({KIND_WORDS[separation_kind(sep['per_batch'], sep['per_image'])]})")
    t = m.trusted
    if t is not None:
        how = "AutoAttack on the bare classifier" if t["inference"] == InferenceMode.BARE else \
            "the adaptive attack through IMT"
        parts.append(f"trusted accuracy {cell_text(t)}, by {how}")
    else:
        parts.append("no AutoAttack or adaptive evaluation stored: only upper bounds exist")
    return f"{m.label} ({method_name(m.method)}): " + "; ".join(parts) + "."


def _acc(m: ModelNumbers) -> float:
    return m.trusted["accuracy"]


def verdict_lines(models: list[ModelNumbers]) -> list[tuple[str, str]]:
    """(outcome, sentence) per part of the hypothesis and for the whole, outcome "holds", "fails"
    or "untested", each computed from the models' numbers (`ModelNumbers`)."""
    out = []
    natural = next((m for m in models if m.method == "natural" and m.gap is not None), None)
    if natural is None:
        out.append(("untested", "(a) Untested: no natural model's gap was measured."))
    elif clouds_apart(natural.gap):
        clearly = cloud_words(natural.gap["two_sample_accuracy"], natural.gap["knn_mixing"]) == "clearly apart"
        out.append(("holds", f"(a) {'Holds' if clearly else 'Holds in part'}: on the natural model the attacked "
                             "clouds are "
                             f"{cloud_words(natural.gap['two_sample_accuracy'], natural.gap['knn_mixing'])} "
                             f"(two-sample accuracy {pct(natural.gap['two_sample_accuracy'])})."))
    else:
        out.append(("fails", f"(a) Fails here: on the natural model the attacked clouds are hard to tell apart "
                             f"(two-sample accuracy {pct(natural.gap['two_sample_accuracy'])})."))
    ranked = [m for m in models if m.gap is not None and m.trusted is not None]
    against = [(a, b) for a in ranked for b in ranked
               if a.gap["two_sample_accuracy"] > b.gap["two_sample_accuracy"] and _acc(a) > _acc(b)]
    if len(ranked) < 2:
        out.append(("untested", "(b) Untested: fewer than two models have both a measured gap and a trusted "
                                "accuracy."))
    elif against:
        a, b = against[0]
        out.append(("fails", f"(b) Not borne out: {a.label} has the larger gap ({pct(a.gap['two_sample_accuracy'])} "
                             f"vs {pct(b.gap['two_sample_accuracy'])}) and the higher trusted accuracy "
                             f"({pct(_acc(a))} vs {pct(_acc(b))} for {b.label}): a smaller gap does not buy "
                             "robustness on these models."))
    else:
        out.append(("holds", "(b) Holds on these models: the smaller the gap, the higher the trusted accuracy ("
                    + ", ".join(f"{m.label} {pct(m.gap['two_sample_accuracy'])} / {pct(_acc(m))}"
                                for m in sorted(ranked, key=lambda m: m.gap["two_sample_accuracy"])) + ")."))
    with_d = [m for m in models if m.separation is not None]
    if not with_d:
        out.append(("untested", "(c) Untested: no model with a discriminator."))
    for m in with_d:
        per_image = m.separation["per_image"]
        reasons, good = [], per_image >= SEPARATION_AUC
        reasons.append(f"D's per-image AUC is {auc_words(per_image)}"
                       + (f", though {auc_words(m.separation['per_batch'])} per batch" if not good else ""))
        if m.steps is not None:
            good = good and bool(m.steps["informative"])
            reasons.append("IMT's step carries information (it beats its reverse)" if m.steps["informative"] else
                           "IMT's step does no better than its reverse")
        cells = m.row or {}
        ada, aa = cells.get("adaptive_imt"), cells.get("autoattack")
        if ada is not None and aa is not None:
            good = good and ada["accuracy"] >= aa["accuracy"]
            reasons.append(f"through IMT the adaptive attack leaves {pct(ada['accuracy'])} where AutoAttack leaves "
                           f"the bare classifier {pct(aa['accuracy'])}"
                           + (": IMT makes the model less robust" if ada["accuracy"] < aa["accuracy"] else ""))
        out.append(("holds" if good else "fails",
                    f"(c) {'Holds' if good else 'Not borne out'} for {m.label}: " + "; ".join(reasons) + "."))
    outcomes = [o for o, _ in out]
    if outcomes and all(o == "holds" for o in outcomes):
        whole = ("holds", "Verdict: every part of the hypothesis holds on these models.")
    elif "fails" in outcomes:
        held = [line[:3] for o, line in out if o == "holds"]
        whole = ("fails", "Verdict: the hypothesis is not borne out on these models"
                 + (f"; only {', '.join(held)} held." if held else "; no part of it held."))
    else:
        whole = ("untested", "Verdict: untested here; the missing numbers are named above.")
    return out + [whole]


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


# ---------------------------------------------------------------------- the attack-path player

PLAYER_SPEEDS = {"slow": 700, "normal": 250, "fast": 80}  # milliseconds per frame


def player_at(fig, k: int, frame_ms: int):
    """The path animation (`atld.latent.path_figure.trajectory_figure`) showing frame `k` (clamped)
    and playing at `frame_ms` per frame: the moving traces take frame k's data, the step slider
    and the title follow, and ▶ Play continues from there. Returns the figure (changed in place)."""
    frames = fig.frames
    k = min(max(int(k), 0), len(frames) - 1)
    frame = frames[k]
    for index, data in zip(frame.traces, frame.data):
        fig.data[index].update(x=data.x, y=data.y, marker=data.marker)
    if frame.layout.title.text:
        fig.update_layout(title_text=frame.layout.title.text)
    fig.layout.sliders[0].active = k
    for menu in fig.layout.updatemenus:
        for button in menu.buttons:
            if "Play" in (button.label or ""):
                play = dict(button.args[1])
                play["frame"] = dict(duration=int(frame_ms), redraw=True)
                play["transition"] = dict(duration=int(frame_ms) // 2)
                button.args = [button.args[0], play]
    return fig


def class_legend(names, colour) -> str:
    """HTML: one coloured dot and name per class, for maps drawn without their own legend
    (`colour`: class index -> CSS colour; names through `md`'s escaping rules are plain text)."""
    import html

    return " ".join(f"<span style='white-space:nowrap;margin-right:10px'><span style='color:{colour(i)}'>●</span> "
                    f"{html.escape(str(n))}</span>" for i, n in enumerate(names))
