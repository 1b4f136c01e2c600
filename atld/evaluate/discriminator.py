"""What ATLD's discriminator D really separates, and whether IMT's step follows anything
(docs/evaluation.md, "The discriminator").

IMT steps towards what D calls natural; ATLD+ halves the step where D is unsure. Both need D to
tell a *single* natural latent from a perturbed one, with D in eval mode. The released recipe
trains D in train mode on an all-natural and an all-perturbed batch in separate calls, so its
BatchNorm's per-call statistics can carry the label: D can then tell batches apart without
telling images apart. This module measures both, as pure functions over latents and images:

- `separation`: D's AUC natural vs perturbed latents three ways: **per batch** (train mode,
  separate all-natural / all-perturbed calls of the training batch size, as the released recipe
  trains D), **per image** (eval mode, as IMT uses it) and **mixed** (train mode, one shuffled
  call on natural + perturbed). `separation_sentence` says in one sentence which kind it is.
- `batch_context_scores`, `share_curve`: the same images scored in separate vs one mixed batch,
  and D's mean score for batches with a given share of perturbed images.
- `step_comparison`: IMT's step against the reversed step and a random signed step of the same
  size (paired right/wrong outcomes, exact McNemar test), in words.
- `perturbation_diagnostic`: is D's training perturbation adversarial for the classifier at
  all (accuracy drop against a random signed step and an FGSM step from the same start, and the
  share of pixels whose step sign agrees with FGSM's)?
- `discriminator_check`: all of it on a run's evaluation images (CLI eval, the card, the app);
  `what_d_learned`: the same plus the per-image scores and the share curve, as plain data (the
  lesson's step).

Train-mode scores are taken on a copy of D, so no BatchNorm statistic of the model changes.
The thresholds and the wording live in `atld.evaluate.dwords` (torch-free).
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from atld.attacks.gradient import AttackConfig, attack_batched, project_linf, run_attack
from atld.attacks.progress import BatchProgress, notify
from atld.errors import require
from atld.evaluate.dwords import (ADVERSARIAL_SHARE, CHANCE_BAND, INVERTED, NOISE_SHARE, SEPARATION_AUC,  # noqa: F401
                                  SIGNIFICANCE, WINDOW_SHARE, auc_words, d_score_caption, inverted_note,
                                  separation_kind, separation_sentence)
from atld.evaluate.stats import mcnemar_exact, p_value_text
from atld.inference import imt_direction, imt_step
from atld.methods.atld import atld_start, lmae_direction, score_pair
from atld.vocab import AttackKind, DBatch, DPerturbation
from atld.models.common import eval_mode
from atld.train.metrics import auc

COST = (("PGD-20", 20.0), ("D scores", 8.0))  # per image, for the progress estimate
STEP_NAMES = {"imt": "IMT's step", "reversed": "the reversed step", "random": "a random signed step"}


# ----------------------------------------------------------------------------- separation

def scores(discriminator, z: torch.Tensor, train: bool = False) -> torch.Tensor:
    """D's P(natural) of latents z [N, K], [N] float on z's device; eval mode, or train mode
    (one call on all of z) on a copy of D when `train`."""
    d = copy.deepcopy(discriminator).train() if train else discriminator
    with torch.no_grad(), torch.autocast(z.device.type, enabled=False):
        if train:
            return torch.sigmoid(d(z.float())[0].float())
        with eval_mode(d):
            return torch.sigmoid(d(z.float())[0].float())


def _chunks(n: int, batch_size: int) -> list[slice]:
    """Consecutive slices of about `batch_size` (sizes differ by at most one, none below 2)."""
    k = max(1, min(n // 2, -(-n // batch_size)))
    edges = [round(i * n / k) for i in range(k + 1)]
    return [slice(a, b) for a, b in zip(edges, edges[1:])]


def batch_context_scores(discriminator, z_nat: torch.Tensor, z_pert: torch.Tensor, batch_size: int,
                         generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """The same latents scored three ways (P(natural), [N] each on the CPU): "separate_*" in
    train mode, an all-natural and an all-perturbed batch of `batch_size` in separate calls (the
    released recipe); "mixed_*" in train mode, one shuffled call on both; "eval_*" in eval mode.
    z_nat, z_pert: [N, K] with N >= 2 (row i of each may be the same image, clean and perturbed)."""
    require(len(z_nat) == len(z_pert) and len(z_nat) >= 2, "give at least two natural and as many perturbed latents")
    d = copy.deepcopy(discriminator).train()
    out = {k: [] for k in ("separate_natural", "separate_perturbed", "mixed_natural", "mixed_perturbed")}
    with torch.no_grad(), torch.autocast(z_nat.device.type, enabled=False):
        for part in _chunks(len(z_nat), batch_size):
            zn, zp = z_nat[part].float(), z_pert[part].float()
            (dn, _), (dp, _) = score_pair(d, zn, zp, DBatch.SEPARATE)
            (mn, _), (mp, _) = score_pair(d, zn, zp, DBatch.MIXED, generator)
            for key, value in zip(out, (dn, dp, mn, mp)):
                out[key].append(torch.sigmoid(value.float()).cpu())
    result = {k: torch.cat(v) for k, v in out.items()}
    result["eval_natural"] = scores(discriminator, z_nat).cpu()
    result["eval_perturbed"] = scores(discriminator, z_pert).cpu()
    return result


@dataclass(frozen=True)
class Separation:
    """D's AUC natural vs perturbed (1 = natural always scored higher, 0.5 = chance): per_batch
    (train mode, separate calls), per_image (eval mode), mixed (train mode, one shuffled call);
    n latents of each kind, batch_size of the separate calls."""
    per_batch: float
    per_image: float
    mixed: float
    n: int
    batch_size: int

    @property
    def kind(self) -> str:
        return separation_kind(self.per_batch, self.per_image)

    def to_dict(self) -> dict:
        return {**asdict(self), "kind": self.kind}


def separation(discriminator, z_nat: torch.Tensor, z_pert: torch.Tensor, batch_size: int,
               generator: torch.Generator | None = None) -> Separation:
    """`Separation` of natural latents z_nat [N, K] from perturbed z_pert [N, K] (see the module
    docstring); `batch_size`: the size of D's training batches."""
    s = batch_context_scores(discriminator, z_nat, z_pert, batch_size, generator)
    return Separation(auc(s["separate_natural"], s["separate_perturbed"]), auc(s["eval_natural"], s["eval_perturbed"]),
                      auc(s["mixed_natural"], s["mixed_perturbed"]), len(z_nat), batch_size)


def share_curve(discriminator, z_nat: torch.Tensor, z_pert: torch.Tensor, shares=(0.0, 0.25, 0.5, 0.75, 1.0),
                batch_size: int = 100, generator: torch.Generator | None = None) -> list[dict]:
    """D's mean P(natural) (train mode, one call per batch) for batches of `batch_size` in which a
    share of the images is perturbed: image i enters as z_pert[i] or z_nat[i]. One dict per share:
    {"share", "mean", "mean_natural", "mean_perturbed", "eval_mean_natural", "eval_mean_perturbed"}
    (None where the batch has no image of that kind). A D that follows the batch moves every
    score with the share; a D that judges images keeps the two kinds apart at every share."""
    require(len(z_nat) == len(z_pert) and len(z_nat) >= 2, "give at least two natural and as many perturbed latents")
    n = min(batch_size, len(z_nat))
    d = copy.deepcopy(discriminator).train()
    e_nat, e_pert = scores(discriminator, z_nat[:n]), scores(discriminator, z_pert[:n])
    out = []
    for share in shares:
        require(0.0 <= float(share) <= 1.0, f"shares must be in [0, 1], got {share!r}")
        k = round(float(share) * n)
        perturbed = torch.zeros(n, dtype=torch.bool)
        perturbed[torch.randperm(n, generator=_cpu(generator))[:k]] = True
        mask = perturbed.to(z_nat.device)
        z = torch.where(mask[:, None], z_pert[:n], z_nat[:n]).float()
        with torch.no_grad(), torch.autocast(z.device.type, enabled=False):
            p = torch.sigmoid(d(z)[0].float()).cpu()
        mean = lambda v: float(v.mean()) if len(v) else None  # noqa: E731
        out.append({"share": k / n, "mean": mean(p), "mean_natural": mean(p[~perturbed]),
                    "mean_perturbed": mean(p[perturbed]), "eval_mean_natural": mean(e_nat.cpu()[~perturbed]),
                    "eval_mean_perturbed": mean(e_pert.cpu()[perturbed])})
    return out


def _cpu(generator: torch.Generator | None) -> torch.Generator | None:
    """A CPU generator seeded from `generator` (randperm on the CPU), or None."""
    if generator is None:
        return None
    return torch.Generator().manual_seed(int(torch.randint(0, 2**31, (1,), generator=generator,
                                                           device=generator.device)))


# ----------------------------------------------------------------------------- IMT's step

@dataclass(frozen=True)
class StepComparison:
    """One step of IMT's size ε from the same inputs, three directions: IMT's (towards what D
    calls natural), its reverse, and a random sign per pixel. correct: images right after each
    step (and with no step, "none"); b_*/c_*: discordant pairs, IMT right and the other wrong /
    the other way; p_*: exact McNemar p-values of IMT vs each."""
    inputs: str
    n: int
    epsilon: float
    correct: dict[str, int]
    b_reversed: int
    c_reversed: int
    b_random: int
    c_random: int
    b_none: int = 0
    c_none: int = 0

    @property
    def p_reversed(self) -> float:
        return mcnemar_exact(self.b_reversed, self.c_reversed)

    @property
    def p_random(self) -> float:
        return mcnemar_exact(self.b_random, self.c_random)

    @property
    def informative(self) -> bool:
        """IMT's step beats its reverse significantly and does no worse than a random step."""
        return (self.b_reversed > self.c_reversed and self.p_reversed < SIGNIFICANCE
                and not (self.b_random < self.c_random and self.p_random < SIGNIFICANCE))

    @property
    def p_none(self) -> float:
        return mcnemar_exact(self.b_none, self.c_none)

    def to_dict(self) -> dict:
        return {**asdict(self), "p_reversed": self.p_reversed, "p_random": self.p_random, "p_none": self.p_none,
                "informative": self.informative, "sentence": self.sentence()}

    def sentence(self) -> str:
        c = self.correct

        def versus(other: str, b: int, cc: int, p: float) -> str:
            if p >= SIGNIFICANCE:
                how = "no significant difference"
            else:
                how = "IMT better" if b > cc else "IMT worse"
            return f"IMT vs {STEP_NAMES[other]}: {how} (McNemar {p_value_text(p)}, {b} vs {cc} discordant)"

        head = (f"On {self.n} {self.inputs} images, {c['imt']} are right after IMT's step, {c['reversed']} after the "
                f"reversed step and {c['random']} after a random signed step of the same size ({c['none']} with no "
                f"step); {versus('reversed', self.b_reversed, self.c_reversed, self.p_reversed)}; "
                f"{versus('random', self.b_random, self.c_random, self.p_random)}")
        return f"{head}: {self.conclusion()}{self._against_no_step()}"

    def _against_no_step(self) -> str:
        """A clause when IMT's step loses to (or beats) no step at all, significantly."""
        if self.p_none >= SIGNIFICANCE or self.b_none == self.c_none:
            return ""
        if self.b_none < self.c_none:
            return (f" Yet no step at all leaves more right ({self.correct['none']} vs {self.correct['imt']}, McNemar "
                    f"{p_value_text(self.p_none)}): IMT's step costs accuracy here.")
        return (f" IMT's step also beats no step at all ({self.correct['imt']} vs {self.correct['none']}, McNemar "
                f"{p_value_text(self.p_none)}).")

    def conclusion(self) -> str:
        """What the paired tests say about IMT's direction, in words."""
        significant = lambda b, c: mcnemar_exact(b, c) < SIGNIFICANCE  # noqa: E731
        beats_random = self.b_random > self.c_random and significant(self.b_random, self.c_random)
        loses_random = self.b_random < self.c_random and significant(self.b_random, self.c_random)
        if self.b_reversed > self.c_reversed and significant(self.b_reversed, self.c_reversed):
            return ("IMT's step carries information: it beats its reverse" +
                    (" and a random step." if beats_random else
                     ", though not a random step." if not loses_random else ", but a random step does better."))
        if self.b_reversed < self.c_reversed and significant(self.b_reversed, self.c_reversed):
            return "IMT's step points the wrong way: its reverse does better."
        return ("IMT's direction is no better than its reverse, so D's gradient does not say which way is natural" +
                (" (it beats a random step only as any step back along the attack's gradient line would)."
                 if beats_random else "; it is even worse than a random step." if loses_random else "."))


def step_comparison(classifier, discriminator, x: torch.Tensor, y: torch.Tensor, epsilon: float, *,
                    inputs: str = "clean", generator: torch.Generator | None = None,
                    batch_size: int = 256) -> StepComparison:
    """IMT's step vs the reversed and a random signed step of size ε on images x [N, C, H, W] in
    [0, 1] (clean or attacked; `inputs` names them in the sentence) with labels y [N], on the
    models' device. Models run in eval mode (restored after)."""
    device = next(classifier.parameters()).device
    right = {k: [] for k in ("none", "imt", "reversed", "random")}
    with eval_mode(classifier, discriminator), torch.autocast(device.type, enabled=False):
        for xb, yb in zip(x.split(batch_size), y.split(batch_size)):
            xb, yb = xb.to(device).float(), yb.to(device)
            step = imt_direction(classifier, discriminator, xb)
            noise = torch.randint(0, 2, xb.shape, generator=generator, device=device).float() * 2 - 1
            candidates = {"none": xb, "imt": (xb - epsilon * step).clamp(0, 1),
                          "reversed": (xb + epsilon * step).clamp(0, 1), "random": (xb - epsilon * noise).clamp(0, 1)}
            with torch.no_grad():
                for k, xs in candidates.items():
                    right[k].append((classifier(xs).argmax(1) == yb).cpu())
    ok = {k: torch.cat(v) for k, v in right.items()}
    pair = lambda other: (int((ok["imt"] & ~ok[other]).sum()), int((~ok["imt"] & ok[other]).sum()))  # noqa: E731
    (br, cr), (bn, cn), (b0, c0) = pair("reversed"), pair("random"), pair("none")
    return StepComparison(inputs, len(y), float(epsilon), {k: int(v.sum()) for k, v in ok.items()}, br, cr, bn, cn,
                          b0, c0)


# ----------------------------------------------------------------------------- the training perturbation

@dataclass(frozen=True)
class PerturbationDiagnostic:
    """D's training perturbation seen by the classifier: accuracy (fractions) on clean images,
    after the perturbation, after a random signed step and after an FGSM step of the same size
    from the same random start; sign_agreement: share of pixels whose step sign equals FGSM's
    (0.5 = chance)."""
    perturbation: str
    n: int
    epsilon: float
    clean: float
    perturbed: float
    random: float
    fgsm: float
    sign_agreement: float

    @property
    def adversarial_share(self) -> float:
        """The perturbation's extra accuracy drop over a random step, as a share of FGSM's."""
        room = self.random - self.fgsm
        return (self.random - self.perturbed) / room if room > 1e-9 else 0.0

    @property
    def kind(self) -> str:
        share = self.adversarial_share
        return "adversarial" if share >= ADVERSARIAL_SHARE else "weakly adversarial" if share >= NOISE_SHARE \
            else "close to noise"

    def to_dict(self) -> dict:
        return {**asdict(self), "adversarial_share": self.adversarial_share, "kind": self.kind,
                "sentence": self.sentence()}

    def sentence(self) -> str:
        pts = lambda a: f"{100 * (self.clean - a):.1f}"  # noqa: E731
        what = ("D's training perturbation (one label-free step against D)" if self.perturbation == DPerturbation.LMAE
                else "D's training perturbation (PGD on the classifier's loss)")
        return (f"{what} costs the classifier {pts(self.perturbed)} points of accuracy on {self.n} test images "
                f"({100 * self.clean:.1f} → {100 * self.perturbed:.1f} %), where a random signed step of the "
                f"same size from the same start costs {pts(self.random)} and an FGSM step {pts(self.fgsm)}; "
                f"its pixel signs agree with FGSM's on {100 * self.sign_agreement:.0f} % of pixels (chance 50 %): "
                f"for the classifier it is {self.kind}.")


def training_perturbation(classifier, discriminator, config, x: torch.Tensor, y: torch.Tensor, x0: torch.Tensor,
                          generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """D's training perturbation of x (the way `config` trains: f in eval mode, D in train mode on
    a copy, D seeing the batch as config.d_batch says) from the random start x0: (x_pert, the
    signed step direction it took from x0). For PGD the direction is sign(x_pert − x0)."""
    eps = config.resolved_epsilon
    if config.d_perturbation is DPerturbation.PGD:
        attack = AttackConfig(AttackKind.PGD, eps, steps=config.pgd_steps, step_size=config.resolved_pgd_step_size)
        x_pert = run_attack(classifier, x, y, attack, generator)
        return x_pert, (x_pert - x0).sign()
    d = copy.deepcopy(discriminator).train()
    with torch.no_grad():
        z_nat = classifier(x).float()
    direction = -lmae_direction(classifier, d, x0, z_nat, None, config.d_batch, generator)
    return project_linf(x0 + eps * direction, x, eps), direction


def perturbation_diagnostic(classifier, discriminator, config, x: torch.Tensor, y: torch.Tensor, *,
                            generator: torch.Generator | None = None,
                            batch_size: int = 256) -> PerturbationDiagnostic:
    """`PerturbationDiagnostic` on images x [N, C, H, W] in [0, 1], labels y [N], for a run
    trained with `config` (a TrainConfig), at its training ε; batches of the training size."""
    device = next(classifier.parameters()).device
    eps = config.resolved_epsilon
    bs = min(batch_size, config.resolved_batch_size)
    right = {k: 0 for k in ("clean", "perturbed", "random", "fgsm")}
    agree = total = 0
    with eval_mode(classifier, discriminator), torch.autocast(device.type, enabled=False):
        for part in _chunks(len(y), bs):
            xb, yb = x[part].to(device).float(), y[part].to(device)
            x0 = atld_start(xb, eps, generator)
            x_pert, direction = training_perturbation(classifier, discriminator, config, xb, yb, x0, generator)
            g0 = x0.detach().clone().requires_grad_(True)
            with torch.enable_grad():
                (grad,) = torch.autograd.grad(F.cross_entropy(classifier(g0), yb), g0)
            fgsm_dir = grad.sign()
            noise = torch.randint(0, 2, xb.shape, generator=generator, device=device).float() * 2 - 1
            both = (fgsm_dir != 0) & (direction != 0)
            agree += int(((fgsm_dir == direction) & both).sum())
            total += int(both.sum())
            with torch.no_grad():
                for k, xs in (("clean", xb), ("perturbed", x_pert), ("random", project_linf(x0 + eps * noise, xb, eps)),
                              ("fgsm", project_linf(x0 + eps * fgsm_dir, xb, eps))):
                    right[k] += int((classifier(xs).argmax(1) == yb).sum())
    n = len(y)
    return PerturbationDiagnostic(str(config.d_perturbation), n, eps, *(right[k] / n for k in right),
                                  agree / total if total else 0.5)


# ----------------------------------------------------------------------------- the whole check

@dataclass(frozen=True)
class DiscriminatorCheck:
    """D's check on n evaluation images (shares and probabilities in [0, 1]). auc_pgd / auc_own:
    the per-image (eval-mode) AUCs natural vs PGD-20 and vs D's own training perturbation;
    sep_pgd / sep_own: all three AUCs (`Separation`); train_auc: the card's last-epoch d_auc
    (None when the card has none); steps_clean / steps_pgd: `StepComparison` on clean and PGD-20
    inputs; perturbation: `PerturbationDiagnostic`."""
    n: int
    epsilon: float
    auc_pgd: float
    auc_own: float
    train_auc: float | None
    window: tuple[float, float]
    in_window_natural: float
    in_window_pgd: float
    p_natural: tuple[float, float, float]  # min, mean, max of P(natural) on clean inputs
    p_pgd: tuple[float, float, float]  # the same on PGD-20 inputs
    p_pgd_after_imt: float  # mean P(natural) on PGD-20 inputs after one IMT step (m = 1)
    sep_pgd: Separation | None = None
    sep_own: Separation | None = None
    steps_clean: StepComparison | None = None
    steps_pgd: StepComparison | None = None
    perturbation: PerturbationDiagnostic | None = None

    @property
    def separates(self) -> bool:
        return self.auc_pgd >= SEPARATION_AUC

    @property
    def uniform_half_step(self) -> bool:
        return min(self.in_window_natural, self.in_window_pgd) > WINDOW_SHARE

    @property
    def kind(self) -> str | None:
        """"images", "own-images" (its own perturbation only), "batches" or "neither", as
        `separation_sentence` says (None without the per-batch measurement)."""
        if self.sep_pgd is None:
            return None
        if self.sep_pgd.per_image < SEPARATION_AUC and self.sep_own and self.sep_own.per_image >= SEPARATION_AUC:
            return "own-images"  # single images of its own perturbation, not PGD-20 ones
        per_batch = max(self.sep_pgd.per_batch, self.sep_own.per_batch if self.sep_own else 0.0)
        return separation_kind(per_batch, self.sep_pgd.per_image)

    def messages(self) -> list[tuple[str, str]]:
        """(level, sentence) pairs, "warning" where the line says D or IMT does not do its job."""
        out = [("info", self._auc_line())]
        out.append(("warning" if self.uniform_half_step else "info", self._window_line()))
        out.append(("info" if self.separates else "warning", self._separation_line()))
        for steps in (self.steps_clean, self.steps_pgd):
            if steps is not None:
                out.append(("info" if steps.informative else "warning", steps.sentence()))
        if self.perturbation is not None:
            out.append(("info" if self.perturbation.kind == "adversarial" else "warning",
                        self.perturbation.sentence()))
        return out

    def sentences(self) -> list[str]:
        """The check in plain words, one sentence per line."""
        return [text for _, text in self.messages()]

    def to_dict(self) -> dict:
        plain = {k: v for k, v in asdict(self).items()
                 if k not in ("sep_pgd", "sep_own", "steps_clean", "steps_pgd", "perturbation")}
        nested = {k: getattr(self, k).to_dict() if getattr(self, k) is not None else None
                  for k in ("sep_pgd", "sep_own", "steps_clean", "steps_pgd", "perturbation")}
        messages = self.messages()
        return {**plain, **nested, "separates": self.separates, "uniform_half_step": self.uniform_half_step,
                "separation_auc": SEPARATION_AUC, "window_share": WINDOW_SHARE,
                "kind": self.kind,
                "sentences": [t for _, t in messages], "levels": [level for level, _ in messages]}

    def _auc_line(self) -> str:
        train = (f" The card's {self.train_auc:.2f} is a training metric: D in train mode, on its own perturbations "
                 "of training batches, last epoch." if self.train_auc is not None else "")
        if self.sep_pgd is None:
            return (f"D's AUC on these {self.n} test images, in eval mode as IMT uses it: {auc_words(self.auc_pgd)} "
                    f"natural vs PGD-20, {auc_words(self.auc_own)} natural vs its own training perturbation "
                    "(0.5 = chance)." + inverted_note(self.auc_pgd, self.auc_own) + train)
        return (f"D's AUC on these {self.n} test images, natural vs PGD-20: {auc_words(self.sep_pgd.per_batch)} per "
                f"batch, {auc_words(self.auc_pgd)} per image in eval mode as IMT uses it; natural vs its own training "
                f"perturbation: {auc_words(self.sep_own.per_batch)} per batch, {auc_words(self.auc_own)} per image "
                "(0.5 = chance)." + inverted_note(self.auc_pgd, self.auc_own) + train)

    def _window_line(self) -> str:
        low, high = self.window
        window = (f"{100 * self.in_window_natural:.1f} % of clean and {100 * self.in_window_pgd:.1f} % of PGD-20 "
                  f"inputs have D's P(natural) inside ATLD+'s window {low:g}-{high:g} (clean {self.p_natural[0]:.2f}-"
                  f"{self.p_natural[2]:.2f}, PGD-20 {self.p_pgd[0]:.2f}-{self.p_pgd[2]:.2f})")
        return window + (": ATLD+ halves the step almost everywhere, a uniform half step rather than a decision."
                         if self.uniform_half_step else ".")

    def _separation_line(self) -> str:
        move = (f"one IMT step moves D's mean P(natural) on PGD-20 inputs from {self.p_pgd[1]:.3f} to "
                f"{self.p_pgd_after_imt:.3f}")
        if self.sep_pgd is not None:
            return f"{separation_sentence(self.sep_pgd, self.sep_own)} {move[0].upper()}{move[1:]}."
        if self.separates:
            return f"D separates natural from adversarial latents (AUC >= {SEPARATION_AUC}); {move}."
        return (f"D cannot separate natural from adversarial latents here (AUC {self.auc_pgd:.2f} < "
                f"{SEPARATION_AUC}): IMT's direction carries little information; {move}.")


def _d_probability(run, x: torch.Tensor, batch_size: int, device) -> torch.Tensor:
    """D's P(natural) of f's logits, [N] on the CPU, eval mode."""
    out = []
    with torch.no_grad():
        for xb in x.split(batch_size):
            logit, _ = run.discriminator(run.classifier(xb.to(device)).float())
            out.append(torch.sigmoid(logit.float()).flatten().cpu())
    return torch.cat(out)


def latents_of(classifier, x: torch.Tensor, batch_size: int = 256, device=None) -> torch.Tensor:
    """f's logits of images x [N, C, H, W] in [0, 1], [N, K] float on `device` (default: the
    classifier's), eval mode (restored after), no gradient."""
    device = device or next(classifier.parameters()).device
    with torch.no_grad(), eval_mode(classifier):
        return torch.cat([classifier(xb.to(device)).float() for xb in x.split(batch_size)])


def what_d_learned(run, x: torch.Tensor, y: torch.Tensor, epsilon: float | None = None, *, seed: int = 0,
                   shares=(0.0, 0.25, 0.5, 0.75, 1.0), batch_size: int = 256) -> dict:
    """Everything the lesson "What D really learned" shows, as plain data (lists and numbers),
    for a run with a discriminator on images x [N, C, H, W] in [0, 1] (N >= 2), labels y [N]:
    PGD-20 at `epsilon` (default: the dataset's) against the bare classifier, then
    "separation" / "separation_own" (`Separation.to_dict()`), "sentence" (`separation_sentence`),
    "scores" (`batch_context_scores` natural vs PGD-20, as lists), "share_curve" (`share_curve`,
    batches of the training size), "steps_clean" / "steps_pgd" (`StepComparison.to_dict()`),
    "perturbation" (`PerturbationDiagnostic.to_dict()`), and "n", "epsilon", "batch_size"."""
    require(run.discriminator is not None, "this checkpoint has no discriminator")
    f, d = run.classifier, run.discriminator
    device = next(f.parameters()).device
    eps = run.spec.epsilon_or_default(epsilon)
    model_eps, d_batch = run.config.resolved_epsilon, run.config.resolved_batch_size
    gen = torch.Generator(device).manual_seed(seed)
    with eval_mode(f, d), torch.autocast(device.type, enabled=False):
        x_pgd = attack_batched(f, x, y, AttackConfig(AttackKind.PGD, eps, steps=20), batch_size, gen)
        own = torch.cat([training_perturbation(f, d, run.config, x[p].to(device), y[p].to(device),
                                               atld_start(x[p].to(device), model_eps, gen), gen)[0].cpu()
                         for p in _chunks(len(y), min(batch_size, d_batch))])
        z_nat, z_pgd, z_own = (latents_of(f, v, batch_size, device) for v in (x, x_pgd, own))
        sep, sep_own = separation(d, z_nat, z_pgd, d_batch, gen), separation(d, z_nat, z_own, d_batch, gen)
        scores_ = batch_context_scores(d, z_nat, z_pgd, d_batch, gen)
        curve = share_curve(d, z_nat, z_pgd, shares, d_batch, gen)
        steps_clean = step_comparison(f, d, x, y, model_eps, inputs="clean", generator=gen, batch_size=batch_size)
        steps_pgd = step_comparison(f, d, x_pgd, y, model_eps, inputs="PGD-20", generator=gen, batch_size=batch_size)
        diag = perturbation_diagnostic(f, d, run.config, x, y, generator=gen, batch_size=batch_size)
    return {"n": len(y), "epsilon": eps, "batch_size": d_batch, "separation": sep.to_dict(),
            "separation_own": sep_own.to_dict(), "sentence": separation_sentence(sep, sep_own),
            "scores": {k: v.tolist() for k, v in scores_.items()}, "share_curve": curve,
            "steps_clean": steps_clean.to_dict(), "steps_pgd": steps_pgd.to_dict(), "perturbation": diag.to_dict()}


def discriminator_check(run, x: torch.Tensor, y: torch.Tensor, epsilon: float, *, batch_size: int = 256,
                        device: torch.device | None = None, seed: int = 0,
                        progress: BatchProgress | None = None) -> DiscriminatorCheck:
    """The check of the module docstring for a run with a discriminator. x float [N, C, H, W] in
    [0, 1] (N >= 2), y int64 [N]; epsilon: the PGD-20 radius ([0, 1] pixel units). D's own
    training perturbation and IMT use the model's training ε."""
    device = device or torch.device("cpu")
    f, d = run.classifier, run.discriminator
    model_eps = run.config.resolved_epsilon
    d_batch = run.config.resolved_batch_size
    window = tuple(run.spec.imt_window)
    gen = torch.Generator(device).manual_seed(seed)
    with eval_mode(f, d), torch.autocast(device.type, enabled=False):
        x_pgd = attack_batched(f, x, y, AttackConfig(AttackKind.PGD, epsilon, steps=20), batch_size, gen, progress)
        parts = _chunks(len(y), min(batch_size, d_batch))
        notify(progress, "D scores", 0, len(parts), len(y))
        own, after = [], []
        for i, part in enumerate(parts):
            xb, yb, xp = x[part].to(device), y[part].to(device), x_pgd[part].to(device)
            own.append(training_perturbation(f, d, run.config, xb, yb, atld_start(xb, model_eps, gen), gen)[0].cpu())
            after.append(imt_step(f, d, xp, model_eps).cpu())
            notify(progress, "D scores", i + 1, len(parts), len(y))
        x_own = torch.cat(own)
        z_nat, z_pgd, z_own = (latents_of(f, v, batch_size, device) for v in (x, x_pgd, x_own))
        sep_pgd = separation(d, z_nat, z_pgd, d_batch, gen)
        sep_own = separation(d, z_nat, z_own, d_batch, gen)
        p_nat, p_pgd = scores(d, z_nat).cpu(), scores(d, z_pgd).cpu()
        p_after = _d_probability(run, torch.cat(after), batch_size, device)
        steps_clean = step_comparison(f, d, x, y, model_eps, inputs="clean", generator=gen, batch_size=batch_size)
        steps_pgd = step_comparison(f, d, x_pgd, y, model_eps, inputs="PGD-20", generator=gen, batch_size=batch_size)
        diag = perturbation_diagnostic(f, d, run.config, x, y, generator=gen, batch_size=batch_size)
    inside = lambda p: ((p > window[0]) & (p < window[1])).float().mean().item()  # noqa: E731
    spread = lambda p: (p.min().item(), p.mean().item(), p.max().item())  # noqa: E731
    train_auc = next((m["d_auc"] for m in reversed(run.card.get("metrics") or []) if "d_auc" in m), None)
    return DiscriminatorCheck(n=len(y), epsilon=epsilon, auc_pgd=sep_pgd.per_image, auc_own=sep_own.per_image,
                              train_auc=train_auc, window=window, in_window_natural=inside(p_nat),
                              in_window_pgd=inside(p_pgd), p_natural=spread(p_nat), p_pgd=spread(p_pgd),
                              p_pgd_after_imt=p_after.mean().item(), sep_pgd=sep_pgd, sep_own=sep_own,
                              steps_clean=steps_clean, steps_pgd=steps_pgd, perturbation=diag)
