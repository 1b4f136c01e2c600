"""The named attacks: one row per name the CLI, the app and the evaluation accept.

Each row says what the attack targets, and how it perturbs a set of images:
- `Target.NONE`: no attack ("natural").
- `Target.CLASSIFIER`: the bare classifier; under IMT inference this is the official,
  non-adaptive protocol (one attack serves every inference row).
- `Target.DEFENSE`: the whole defense, IMT included (an adaptive attack).
`perturb(model, x, y, ε, budget)` returns one or more (label, x_adv) candidates; an image counts
as robust only if it survives all of them. Rows with a `preset` are the gradient attacks of
`atld.attacks.gradient` (step ε/4, random start), usable wherever a single `AttackConfig` is
needed (latents, curves, the Attack page). Adding an attack is one row here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

import torch

from atld.attacks.gradient import AttackConfig, attack_batched
from atld.attacks.library import APGD_STEPS, SQUARE_QUERIES, apgd, autoattack, square
from atld.config.vocab import AttackKind
from atld.errors import check_choice


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


Candidates = list[tuple[str, torch.Tensor]]


@dataclass(frozen=True)
class NamedAttack:
    name: str
    help: str
    target: Target
    perturb: Callable[..., Candidates]  # (model, x, y, epsilon, budget) -> [(label, x_adv), ...]
    preset: tuple[AttackKind, int] | None = None  # a gradient attack: (kind, steps)
    note: Callable[[AttackBudget, bool], str] = lambda budget, bare: ""  # bare: against the bare classifier

    def config(self, epsilon: float, random_start: bool = True) -> AttackConfig:
        """The preset as an `AttackConfig` at radius ε (step ε/4; FGSM one step of ε)."""
        kind, steps = self.preset
        return AttackConfig(kind, epsilon, steps=steps, random_start=random_start)


def _preset(name: str, kind: AttackKind, steps: int, help: str) -> NamedAttack:
    def perturb(model, x, y, epsilon, budget):
        generator = torch.Generator(budget.device).manual_seed(budget.seed)
        return [(name, attack_batched(model, x, y, ATTACKS[name].config(epsilon), budget.batch_size, generator))]
    return NamedAttack(name, help, Target.CLASSIFIER, perturb, preset=(kind, steps))


def _autoattack(model, x, y, epsilon, budget):
    return [("AutoAttack", autoattack(model, x, y, epsilon, device=budget.device, seed=budget.seed,
                                      batch_size=budget.batch_size))]


def _adaptive(model, x, y, epsilon, budget):
    common = dict(device=budget.device, seed=budget.seed, batch_size=budget.batch_size, steps=budget.apgd_steps)
    return [("APGD-CE", apgd(model, x, y, epsilon, loss="ce", **common)),
            ("APGD-T", apgd(model, x, y, epsilon, loss="targeted", **common))]


def _square(model, x, y, epsilon, budget):
    return [("Square", square(model, x, y, epsilon, device=budget.device, seed=budget.seed,
                              queries=budget.square_queries, batch_size=budget.batch_size))]


ATTACKS: dict[str, NamedAttack] = {a.name: a for a in (
    NamedAttack("natural", "no attack", Target.NONE, lambda model, x, y, epsilon, budget: [("natural", x)]),
    _preset("fgsm", AttackKind.FGSM, 1, "one signed step of ε on cross-entropy from a random start"),
    _preset("pgd20", AttackKind.PGD, 20, "20 signed steps of ε/4 on cross-entropy, random start"),
    _preset("pgd100", AttackKind.PGD, 100, "100 signed steps of ε/4 on cross-entropy, random start"),
    _preset("cw20", AttackKind.CW, 20, "20 signed steps of ε/4 on the CW margin (κ = 50), random start"),
    _preset("cw100", AttackKind.CW, 100, "100 signed steps of ε/4 on the CW margin (κ = 50), random start"),
    NamedAttack("autoattack", "standard AutoAttack (APGD-CE, APGD-T, FAB-T, Square), official code",
                Target.CLASSIFIER, _autoattack),
    NamedAttack("adaptive", "APGD-CE and APGD-T through IMT with a straight-through (BPDA) gradient",
                Target.DEFENSE, _adaptive,
                note=lambda budget, bare: f"{budget.apgd_steps} steps each, " + (
                    "on the bare classifier" if bare else "through IMT with a straight-through (BPDA) gradient")),
    NamedAttack("square", "black-box Square attack on the whole defense (a masking diagnostic)", Target.DEFENSE,
                _square, note=lambda budget, bare: f"black-box Square ({budget.square_queries} queries) on "
                                                   + ("the bare classifier" if bare else "the whole defense")),
)}

ATTACK_NAMES = tuple(ATTACKS)  # every named attack (evaluation)
PRESET_NAMES = tuple(name for name, a in ATTACKS.items() if a.preset is not None)  # the gradient presets
PERTURBATION_NAMES = ("natural", *PRESET_NAMES)  # what the latent views and the Attack page offer
DEFAULT_EVAL_ATTACKS = ("natural", "fgsm", "pgd20", "cw20", "autoattack", "adaptive")


def attack_from_name(name: str, epsilon: float, random_start: bool = True) -> AttackConfig | None:
    """The preset `name` (one of PERTURBATION_NAMES) at radius ε ([0, 1] units); "natural" gives None."""
    check_choice("attack", name, PERTURBATION_NAMES)
    return None if name == "natural" else ATTACKS[name].config(epsilon, random_start)
