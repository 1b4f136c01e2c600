"""What an evaluation runs: the closed vocabularies (attacks, inference modes, protocols) and the
frozen, validated `EvalConfig`."""

from __future__ import annotations

from dataclasses import dataclass, field

from atld.attacks import APGD_STEPS, NAMED_ATTACKS, SQUARE_QUERIES
from atld.device import DEVICE_CHOICES
from atld.errors import check_choice, check_finite_range, check_int_at_least, require
from atld.inference import INFERENCE_MODES

# natural: no attack; fgsm .. cw100: the method doc §5 table (step ε/4, random start);
# autoattack: standard AutoAttack on the bare classifier; adaptive: APGD-CE + APGD-T through IMT
# (BPDA); square: the black-box Square attack on the whole defense (a masking diagnostic).
ATTACK_NAMES = ("natural", *NAMED_ATTACKS, "autoattack", "adaptive", "square")
DEFAULT_ATTACKS = ("natural", "fgsm", "pgd20", "cw20", "autoattack", "adaptive")

PROTOCOL_DIRECT = "direct"
PROTOCOL_NON_ADAPTIVE = "non-adaptive: attack the bare classifier, then IMT"
PROTOCOL_ADAPTIVE = "adaptive through IMT"
PROTOCOLS = (PROTOCOL_DIRECT, PROTOCOL_NON_ADAPTIVE, PROTOCOL_ADAPTIVE)


def _f(default, help: str):
    return field(default=default, metadata={"help": help})


def _names(value, what: str, choices: tuple[str, ...]) -> tuple[str, ...]:
    if isinstance(value, str):
        value = tuple(v.strip() for v in value.split(",") if v.strip())
    require(isinstance(value, (tuple, list)) and len(value) > 0, f"give at least one {what} name")
    out = []
    for name in value:
        require(isinstance(name, str), f"{what} names must be strings, got {name!r}")
        check_choice(what, name, choices)
        if name not in out:
            out.append(name)
    return tuple(out)


@dataclass(frozen=True)
class EvalConfig:
    attacks: tuple[str, ...] = _f(DEFAULT_ATTACKS, "attacks, from: " + ", ".join(ATTACK_NAMES))
    inferences: tuple[str, ...] | None = _f(
        None, "inference modes (atld-, atld, atld+); default: all the checkpoint supports")
    limit: int | None = _f(None, "evaluate the first N test images (default: the whole test set)")
    batch_size: int = _f(256, "images per attack batch")
    epsilon: float | None = _f(None, "ℓ∞ attack radius, [0, 1] pixel units; default: the dataset's ε")
    seed: int = _f(0, "seed of the random starts and of the AutoAttack package")
    device: str = _f("auto", "auto | cpu | cuda | cuda:N")
    apgd_steps: int = _f(APGD_STEPS, "adaptive attack: iterations of APGD-CE and APGD-T (AutoAttack: 100)")
    square_queries: int = _f(SQUARE_QUERIES, "square: query budget (AutoAttack: 5000)")

    def __post_init__(self):
        object.__setattr__(self, "attacks", _names(self.attacks, "attack", ATTACK_NAMES))
        if self.inferences is not None:
            object.__setattr__(self, "inferences", _names(self.inferences, "inference", INFERENCE_MODES))
        if self.limit is not None:
            check_int_at_least("limit", self.limit, 1)
        check_int_at_least("batch size", self.batch_size, 1)
        require(self.batch_size <= 100_000, f"batch size is absurdly large: {self.batch_size}")
        if self.epsilon is not None:
            check_finite_range("epsilon", self.epsilon, 0.0, 1.0, "([0, 1] pixel units)")
        require(isinstance(self.seed, int) and not isinstance(self.seed, bool) and 0 <= self.seed < 2**31,
                f"seed must be an integer in [0, 2^31), got {self.seed!r}")
        require(isinstance(self.device, str), f"device must be a string, got {self.device!r}")
        check_choice("device", "cuda" if self.device.startswith("cuda:") else self.device, DEVICE_CHOICES)
        check_int_at_least("APGD steps", self.apgd_steps, 1)
        require(self.apgd_steps <= 10_000, f"APGD steps must be <= 10000, got {self.apgd_steps}")
        check_int_at_least("Square queries", self.square_queries, 1)
        require(self.square_queries <= 1_000_000, f"Square queries must be <= 1000000, got {self.square_queries}")

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}
