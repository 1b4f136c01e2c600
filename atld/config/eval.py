"""What an evaluation runs: the frozen, validated `EvalConfig` (docs/evaluation.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from atld.attacks.standard import APGD_STEPS, SQUARE_QUERIES
from atld.attacks.registry import ATTACK_NAMES, DEFAULT_EVAL_ATTACKS, AttackBudget
from atld.config.fields import setting
from atld.vocab import DeviceChoice, InferenceMode, device_name, parse
from atld.errors import (check_choice, check_finite_range, check_int_at_least, check_int_in, check_seed, require,
                         shown)

if TYPE_CHECKING:  # torch-free at import: the app's server builds evaluation requests without torch
    import torch


def _names(value, what: str, check) -> tuple:
    """A tuple of distinct names (given as a tuple, a list or a comma-separated string), each checked."""
    if isinstance(value, str):
        value = tuple(v.strip() for v in value.split(",") if v.strip())
    require(isinstance(value, (tuple, list)) and 0 < len(value) <= 100, f"give at least one {what} name (at most 100)")
    out = []
    for name in value:
        require(isinstance(name, str), f"{what} names must be strings, got {shown(name, 40)}")
        name = check(name)
        if name not in out:
            out.append(name)
    return tuple(out)


@dataclass(frozen=True)
class EvalConfig:
    attacks: tuple[str, ...] = setting(DEFAULT_EVAL_ATTACKS, "attacks", choices=ATTACK_NAMES)
    inferences: tuple[InferenceMode, ...] | None = setting(
        None, "inference modes; default: all the checkpoint supports", flag="inference")
    limit: int | None = setting(None, "evaluate the first N test images (default: the whole test set)")
    batch_size: int = setting(256, "images per attack batch")
    epsilon: float | None = setting(None, "ℓ∞ attack radius, [0, 1] pixel units; default: the dataset's ε")
    seed: int = setting(0, "seed of the random starts and of the AutoAttack package, in [0, 2^32)")
    device: str = setting("auto", "auto | cpu | cuda | cuda:N", choices=tuple(DeviceChoice))
    apgd_steps: int = setting(APGD_STEPS, "adaptive attack: iterations of APGD-CE and APGD-T (AutoAttack: 100)")
    square_queries: int = setting(SQUARE_QUERIES, "square: query budget (AutoAttack: 5000)")
    restarts: int = setting(2, "diagnostics: random starts per point of the PGD steps curve (an image counts as "
                               "robust only if it survives all)")

    def __post_init__(self):
        object.__setattr__(self, "attacks", _names(self.attacks, "attack",
                                                   lambda n: check_choice("attack", n, ATTACK_NAMES)))
        if self.inferences is not None:
            object.__setattr__(self, "inferences", _names(self.inferences, "inference",
                                                          lambda n: parse(InferenceMode, n, "inference")))
        if self.limit is not None:
            check_int_at_least("limit", self.limit, 1)
        check_int_in("batch size", self.batch_size, 1, 100_000)
        if self.epsilon is not None:
            check_finite_range("epsilon", self.epsilon, 0.0, 1.0, "([0, 1] pixel units)")
        check_seed("seed", self.seed)
        object.__setattr__(self, "device", device_name(self.device))
        check_int_in("APGD steps", self.apgd_steps, 1, 10_000)
        check_int_in("Square queries", self.square_queries, 1, 1_000_000)
        check_int_in("restarts", self.restarts, 1, 100)

    def budget(self, device: torch.device) -> AttackBudget:
        """What the attacks need beside ε, on the resolved device."""
        return AttackBudget(device, self.seed, self.batch_size, self.apgd_steps, self.square_queries)

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}
