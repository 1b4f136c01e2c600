"""The named attacks: one row per name the CLI, the app and the evaluation accept.

Each row says what the attack targets, and how it perturbs a set of images:
- `Target.NONE`: no attack ("natural").
- `Target.CLASSIFIER`: the bare classifier; under IMT inference this is the official,
  non-adaptive protocol (one attack serves every inference row).
- `Target.DEFENSE`: the whole defense, IMT included (an adaptive attack).
`perturb(model, x, y, ε, budget, progress)` returns one or more (label, x_adv) candidates; an
image counts as robust only if it survives all of them; `progress` receives its batch events
(`atld.attacks.progress`). `title` and `strength` say how tables name it and how far its number
can be trusted; `cost` weighs its parts for the time estimate. Rows with a `preset` are the
gradient attacks of `atld.attacks.gradient` (step ε/4, random start), usable wherever a single
`AttackConfig` is needed (latents, curves, the Attack page). Adding an attack is one row here.
The table itself is torch-free (the attacks import what they run when they run), so the app's
torch-free pages can name attacks and read verdicts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from atld.attacks.standard import APGD_STEPS, SQUARE_QUERIES
from atld.vocab import AttackKind
from atld.errors import check_choice

if TYPE_CHECKING:
    import torch

    from atld.attacks.gradient import AttackConfig


class Target(StrEnum):
    NONE = "none"
    CLASSIFIER = "classifier"
    DEFENSE = "defense"


@dataclass(frozen=True)
class AttackBudget:
    """What the library attacks need beside ε: where, which seed, how much."""
    device: torch.device
    seed: int = 0
    batch_size: int = 256
    apgd_steps: int = APGD_STEPS
    square_queries: int = SQUARE_QUERIES


Candidates = list  # [(label, x_adv tensor), ...]


class Strength(StrEnum):
    """How far an attack's robust accuracy can be trusted (docs/evaluation.md, "Reading the numbers")."""
    NONE = "no attack"
    WEAK = "upper bound"  # a fixed-step gradient attack (FGSM, PGD, CW): failing proves little
    STRONG = "reliable"  # AutoAttack and APGD: the community's standard white-box ensemble
    BLACK_BOX = "black-box"  # Square: no gradients, a check on the white-box attacks


@dataclass(frozen=True)
class NamedAttack:
    name: str
    help: str
    target: Target
    perturb: Callable[..., Candidates]  # (model, x, y, epsilon, budget, progress) -> [(label, x_adv), ...]
    title: str  # how tables name it
    strength: Strength
    # (part, cost per image in gradient evaluations of the model: a forward pass about 1/3): what
    # the progress estimate weighs; AutoAttack's later parts only see the points still robust
    cost: tuple[tuple[str, float], ...]
    preset: tuple[AttackKind, int] | None = None  # a gradient attack: (kind, steps)
    note: Callable[[AttackBudget, bool], str] = lambda budget, bare: ""  # bare: against the bare classifier
    bare_title: str | None = None  # the title against the bare classifier, where it differs

    def config(self, epsilon: float, random_start: bool = True) -> AttackConfig:
        """The preset as an `AttackConfig` at radius ε (step ε/4; FGSM one step of ε)."""
        from atld.attacks.gradient import AttackConfig

        kind, steps = self.preset
        return AttackConfig(kind, epsilon, steps=steps, random_start=random_start)

    def label(self, bare: bool) -> str:
        """What the attack is, in a table: against the bare classifier (bare) or the whole defense."""
        return self.bare_title if bare and self.bare_title else self.title


def _preset(name: str, kind: AttackKind, steps: int, help: str) -> NamedAttack:
    def perturb(model, x, y, epsilon, budget, progress=None):
        import torch

        from atld.attacks.gradient import attack_batched

        generator = torch.Generator(budget.device).manual_seed(budget.seed)
        return [(name, attack_batched(model, x, y, ATTACKS[name].config(epsilon), budget.batch_size, generator,
                                      progress))]
    title = "FGSM" if kind is AttackKind.FGSM else f"{kind.upper()}-{steps}"
    return NamedAttack(name, help, Target.CLASSIFIER, perturb, title, Strength.WEAK, ((title, float(steps)),),
                       preset=(kind, steps))


def _autoattack(model, x, y, epsilon, budget, progress=None):
    from atld.attacks.library import autoattack

    return [("AutoAttack", autoattack(model, x, y, epsilon, device=budget.device, seed=budget.seed,
                                      batch_size=budget.batch_size, progress=progress))]


def _adaptive(model, x, y, epsilon, budget, progress=None):
    from atld.attacks.library import apgd

    common = dict(device=budget.device, seed=budget.seed, batch_size=budget.batch_size, steps=budget.apgd_steps,
                  progress=progress)
    return [("APGD-CE", apgd(model, x, y, epsilon, loss="ce", **common)),
            ("APGD-T", apgd(model, x, y, epsilon, loss="targeted", **common))]


def _square(model, x, y, epsilon, budget, progress=None):
    from atld.attacks.library import square

    return [("Square", square(model, x, y, epsilon, device=budget.device, seed=budget.seed,
                              queries=budget.square_queries, batch_size=budget.batch_size, progress=progress))]


ATTACKS: dict[str, NamedAttack] = {a.name: a for a in (
    NamedAttack("natural", "no attack", Target.NONE, lambda model, x, y, epsilon, budget, progress=None:
                [("natural", x)], "natural (no attack)", Strength.NONE, ()),
    _preset("fgsm", AttackKind.FGSM, 1, "one signed step of ε on cross-entropy from a random start"),
    _preset("pgd20", AttackKind.PGD, 20, "20 signed steps of ε/4 on cross-entropy, random start"),
    _preset("pgd100", AttackKind.PGD, 100, "100 signed steps of ε/4 on cross-entropy, random start"),
    _preset("cw20", AttackKind.CW, 20, "20 signed steps of ε/4 on the CW margin (κ = 50), random start"),
    _preset("cw100", AttackKind.CW, 100, "100 signed steps of ε/4 on the CW margin (κ = 50), random start"),
    NamedAttack("autoattack", "standard AutoAttack (APGD-CE, APGD-T, FAB-T, Square), official code",
                Target.CLASSIFIER, _autoattack, "AutoAttack", Strength.STRONG,
                (("APGD-CE", 100.0), ("APGD-T", 900.0), ("FAB-T", 1800.0), ("Square", 1700.0))),
    NamedAttack("adaptive", "APGD-CE and APGD-T through IMT with a straight-through (BPDA) gradient",
                Target.DEFENSE, _adaptive, "adaptive attack through IMT (APGD-CE + APGD-T)", Strength.STRONG,
                (("APGD-CE", 100.0), ("APGD-T", 900.0)),
                note=lambda budget, bare: f"{budget.apgd_steps} steps each, " + (
                    "on the bare classifier" if bare else "through IMT with a straight-through (BPDA) gradient"),
                bare_title="APGD-CE + APGD-T (bare classifier)"),
    NamedAttack("square", "black-box Square attack on the whole defense (a masking diagnostic)", Target.DEFENSE,
                _square, "Square through IMT (black-box)", Strength.BLACK_BOX, (("Square", 1700.0),),
                note=lambda budget, bare: f"black-box Square ({budget.square_queries} queries) on "
                                          + ("the bare classifier" if bare else "the whole defense"),
                bare_title="Square (black-box)"),
)}

ATTACK_NAMES = tuple(ATTACKS)  # every named attack (evaluation)
PRESET_NAMES = tuple(name for name, a in ATTACKS.items() if a.preset is not None)  # the gradient presets
PERTURBATION_NAMES = ("natural", *PRESET_NAMES)  # what the latent views and the Attack page offer
DEFAULT_EVAL_ATTACKS = ("natural", "fgsm", "pgd20", "cw20", "autoattack", "adaptive")


def attack_from_name(name: str, epsilon: float, random_start: bool = True) -> AttackConfig | None:
    """The preset `name` (one of PERTURBATION_NAMES) at radius ε ([0, 1] units); "natural" gives None."""
    check_choice("attack", name, PERTURBATION_NAMES)
    return None if name == "natural" else ATTACKS[name].config(epsilon, random_start)
