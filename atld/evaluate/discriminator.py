"""How well the discriminator D does what IMT needs, measured the way IMT uses it (eval mode, on
the evaluation images), beside the training-time number the card stores.

IMT steps towards what D calls natural; ATLD+ halves the step where D is unsure. Both only help
if D can tell natural latents from perturbed ones at test time. The card's `d_auc` is measured
during training: D in train mode (BatchNorm on the batch), on D's own label-free perturbations of
training batches. This check measures, with D and f in eval mode, on the evaluation images:
- D's AUC, natural vs PGD-20 (ε of the evaluation, against the bare classifier), and natural vs
  ATLD's own training perturbation (made the training way, at the model's ε);
- the share of clean and of PGD-20 inputs whose P(natural) lies inside ATLD+'s window;
- D's mean P(natural) on PGD-20 inputs before and after one IMT step.
Below `SEPARATION_AUC` D "cannot separate the clouds"; above `WINDOW_SHARE` of inputs inside the
window, ATLD+ is in effect a uniform half step. Both thresholds are defined here only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from atld.attacks.gradient import AttackConfig, attack_batched
from atld.attacks.progress import BatchProgress, batch_count, notify
from atld.vocab import AttackKind
from atld.inference import imt_step
from atld.methods.atld import atld_perturbation
from atld.models.common import eval_mode
from atld.train.metrics import auc

SEPARATION_AUC = 0.75  # D's eval-mode AUC, natural vs PGD-20, below which D "cannot separate the clouds"
WINDOW_SHARE = 0.9  # share of inputs inside ATLD+'s window above which ATLD+ is a uniform half step
COST = (("PGD-20", 20.0), ("D scores", 3.0))  # per image, for the progress estimate


@dataclass(frozen=True)
class DiscriminatorCheck:
    """The numbers of the module docstring; shares and probabilities in [0, 1]. train_auc is the
    card's last-epoch d_auc (None when the card has none)."""
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

    @property
    def separates(self) -> bool:
        return self.auc_pgd >= SEPARATION_AUC

    @property
    def uniform_half_step(self) -> bool:
        return min(self.in_window_natural, self.in_window_pgd) > WINDOW_SHARE

    def to_dict(self) -> dict:
        return {**asdict(self), "separates": self.separates, "uniform_half_step": self.uniform_half_step,
                "separation_auc": SEPARATION_AUC, "window_share": WINDOW_SHARE, "sentences": self.sentences()}

    def sentences(self) -> list[str]:
        """The check in plain words, one sentence per line."""
        low, high = self.window
        train = (f" The card's {self.train_auc:.2f} is a training metric: D in train mode (BatchNorm on the batch), "
                 "on its own perturbations of training batches, last epoch." if self.train_auc is not None else "")
        out = [f"D's AUC on these {self.n} test images, in eval mode as IMT uses it: {self.auc_pgd:.2f} natural vs "
               f"PGD-20, {self.auc_own:.2f} natural vs its own training perturbation (0.5 = chance)." + train]
        window = (f"{100 * self.in_window_natural:.1f} % of clean and {100 * self.in_window_pgd:.1f} % of PGD-20 "
                  f"inputs have D's P(natural) inside ATLD+'s window {low:g}-{high:g} (clean {self.p_natural[0]:.2f}-"
                  f"{self.p_natural[2]:.2f}, PGD-20 {self.p_pgd[0]:.2f}-{self.p_pgd[2]:.2f})")
        out.append(window + (": ATLD+ halves the step almost everywhere, a uniform half step rather than a decision."
                             if self.uniform_half_step else "."))
        move = (f"one IMT step moves D's mean P(natural) on PGD-20 inputs from {self.p_pgd[1]:.3f} to "
                f"{self.p_pgd_after_imt:.3f}")
        if self.separates:
            out.append(f"D separates natural from adversarial latents (AUC >= {SEPARATION_AUC}); {move}.")
        else:
            out.append(f"D cannot separate natural from adversarial latents here (AUC {self.auc_pgd:.2f} < "
                       f"{SEPARATION_AUC}): IMT's direction carries little information; {move}.")
        return out


def _d_probability(run, x: torch.Tensor, batch_size: int, device) -> torch.Tensor:
    """D's P(natural) of f's logits, [N] on the CPU, eval mode."""
    out = []
    with torch.no_grad():
        for xb in x.split(batch_size):
            logit, _ = run.discriminator(run.classifier(xb.to(device)).float())
            out.append(torch.sigmoid(logit.float()).flatten().cpu())
    return torch.cat(out)


def discriminator_check(run, x: torch.Tensor, y: torch.Tensor, epsilon: float, *, batch_size: int = 256,
                        device: torch.device | None = None, seed: int = 0,
                        progress: BatchProgress | None = None) -> DiscriminatorCheck:
    """The check of the module docstring for a run with a discriminator. x float [N, C, H, W] in
    [0, 1], y int64 [N]; epsilon: the PGD-20 radius ([0, 1] pixel units)."""
    device = device or torch.device("cpu")
    f, d = run.classifier, run.discriminator
    model_eps = run.config.resolved_epsilon
    window = tuple(run.spec.imt_window)
    gen = torch.Generator(device).manual_seed(seed)
    with eval_mode(f, d), torch.autocast(device.type, enabled=False):
        x_pgd = attack_batched(f, x, y, AttackConfig(AttackKind.PGD, epsilon, steps=20), batch_size, gen, progress)
        batches = batch_count(len(y), batch_size)
        notify(progress, "D scores", 0, batches, len(y))
        own, after = [], []
        for i, (xb, xp) in enumerate(zip(x.split(batch_size), x_pgd.split(batch_size))):
            xb, xp = xb.to(device), xp.to(device)
            with torch.no_grad():
                z_nat = f(xb).float()
            own.append(atld_perturbation(f, d, xb, z_nat, model_eps, gen).cpu())
            after.append(imt_step(f, d, xp, model_eps).cpu())
            notify(progress, "D scores", i + 1, batches, len(y))
        p_nat, p_pgd = _d_probability(run, x, batch_size, device), _d_probability(run, x_pgd, batch_size, device)
        p_own = _d_probability(run, torch.cat(own), batch_size, device)
        p_after = _d_probability(run, torch.cat(after), batch_size, device)
    inside = lambda p: ((p > window[0]) & (p < window[1])).float().mean().item()
    spread = lambda p: (p.min().item(), p.mean().item(), p.max().item())
    train_auc = next((m["d_auc"] for m in reversed(run.card.get("metrics") or []) if "d_auc" in m), None)
    return DiscriminatorCheck(n=len(y), epsilon=epsilon, auc_pgd=auc(p_nat, p_pgd), auc_own=auc(p_nat, p_own),
                              train_auc=train_auc, window=window, in_window_natural=inside(p_nat),
                              in_window_pgd=inside(p_pgd), p_natural=spread(p_nat), p_pgd=spread(p_pgd),
                              p_pgd_after_imt=p_after.mean().item())
