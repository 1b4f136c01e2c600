"""Training configuration: one frozen dataclass, the single source of truth for the CLI, the app
and the run card. Every field states its unit; `None` means "the dataset's default"
(`atld.data.registry`). Validation lives here, once, in `__post_init__`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from atld.data.registry import DATASET_NAMES, get_spec
from atld.device import DEVICE_CHOICES
from atld.errors import (ConfigError, check_choice, check_finite_range, check_int_at_least, require)
from atld.models import check_arch, default_discriminator_spec

METHODS = ("natural", "pgd-at", "feature-scatter", "atld")
VARIANTS = ("code", "paper")
AMP_CHOICES = ("auto", "off", "bf16")
MAX_EPOCHS = 10_000


def _f(default, help: str):
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class TrainConfig:
    dataset: str = _f("digits", "dataset name")
    method: str = _f("atld", "training method: natural | pgd-at | feature-scatter | atld")
    arch: str | None = _f(None, "classifier: small-cnn | small-cnn-nobn | preact-resnet18 | wrn-<depth>-<widen>; default per dataset")
    epochs: int = _f(30, "number of passes over the training set")
    batch_size: int = _f(50, "images per step (official ATLD: 50)")
    lr: float = _f(0.1, "classifier SGD learning rate (official: 0.1)")
    momentum: float = _f(0.9, "classifier SGD momentum")
    weight_decay: float = _f(2e-4, "classifier SGD weight decay (L2 coefficient)")
    lr_milestones: tuple[float, ...] = _f((0.5, 0.75), "fractions of the epochs at which lr is multiplied by lr_gamma")
    lr_gamma: float = _f(0.1, "learning-rate decay factor at each milestone")
    epsilon: float | None = _f(None, "ℓ∞ radius of training perturbations, [0, 1] pixel units; default per dataset")
    pgd_steps: int = _f(10, "PGD-AT: attack steps per training batch (Madry: 10)")
    pgd_step_size: float | None = _f(None, "PGD-AT step, [0, 1] pixel units; default ε/4")
    label_smoothing: float = _f(0.5, "ATLD and Feature Scattering: δ; the true class gets 1 − δ (method doc §1)")
    gap_weight_scale: float | None = _f(None, "ATLD: L = L_ce + s·scale·L_gap; default 0.5 (CIFAR-100: 0.1)")
    s_max: float = _f(10.0, "ATLD: cap on the ratio s (a documented deviation from the released code)")
    variant: str = _f("code", "ATLD: 'code' = released code (D never trains f); 'paper' = f also minimizes D's divergence estimate")
    paper_d_weight: float = _f(1.0, "ATLD paper variant: weight of the term −log D(f(x_adv)) in f's loss")
    d_lr: float = _f(1e-3, "discriminator SGD learning rate (official: 1e-3)")
    d_momentum: float = _f(0.9, "discriminator SGD momentum")
    d_weight_decay: float = _f(2e-4, "discriminator SGD weight decay")
    d_updates: int = _f(2, "discriminator SGD steps per batch (official: 2)")
    d_widths: tuple[int, ...] | None = _f(None, "discriminator widths; default: official (16,80,160,320) or small (16,32,64) for small-cnn")
    d_blocks: int | None = _f(None, "discriminator residual blocks per width; default 4 (official) or 1 (small-cnn)")
    seed: int = _f(0, "seed for initialisation, shuffling, random starts and augmentation")
    device: str = _f("auto", "auto | cpu | cuda | cuda:N")
    eval_limit: int = _f(450, "test images used for the per-epoch clean and PGD-20 accuracy (0: skip)")
    amp: str = _f("auto", "mixed precision for training: auto (bf16 on CUDA, off on CPU) | off | bf16")
    channels_last: bool = _f(True, "use channels_last memory format for image models (CUDA and CPU)")
    compile: bool = _f(False, "torch.compile the classifier (CUDA; slower start, faster steps)")

    def __post_init__(self):
        check_choice("dataset", self.dataset, DATASET_NAMES)
        check_choice("method", self.method, METHODS)
        # Cards come from strangers: check types before any string method is called on them.
        for name in ("arch", "device"):
            value = getattr(self, name)
            require(value is None and name == "arch" or isinstance(value, str),
                    f"{name} must be a string, got {value!r}")
        for name in ("channels_last", "compile"):
            require(isinstance(getattr(self, name), bool), f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.arch is not None:
            check_arch(self.arch, get_spec(self.dataset))
        check_int_at_least("epochs", self.epochs, 1)
        require(self.epochs <= MAX_EPOCHS, f"epochs must be <= {MAX_EPOCHS}, got {self.epochs}")
        check_int_at_least("batch size", self.batch_size, 1)
        require(self.batch_size <= 1_000_000, f"batch size is absurdly large: {self.batch_size}")
        check_finite_range("lr", self.lr, 0.0, 10.0)
        require(self.lr > 0, "lr must be > 0")
        check_finite_range("momentum", self.momentum, 0.0, 0.999)
        check_finite_range("weight decay", self.weight_decay, 0.0, 1.0)
        require(isinstance(self.lr_milestones, tuple), "lr milestones must be a tuple of fractions")
        for m in self.lr_milestones:
            check_finite_range("lr milestone", m, 0.0, 1.0, "(fraction of the epochs)")
        check_finite_range("lr gamma", self.lr_gamma, 0.0, 1.0)
        if self.epsilon is not None:
            check_finite_range("epsilon", self.epsilon, 0.0, 1.0, "([0, 1] pixel units)")
        check_int_at_least("pgd steps", self.pgd_steps, 1)
        require(self.pgd_steps <= 1000, f"pgd steps must be <= 1000, got {self.pgd_steps}")
        if self.pgd_step_size is not None:
            check_finite_range("pgd step size", self.pgd_step_size, 0.0, 1.0, "([0, 1] pixel units)")
        check_finite_range("label smoothing", self.label_smoothing, 0.0, 1.0)
        require(self.label_smoothing < 1.0, "label smoothing must be < 1 (the true class needs weight > 0)")
        if self.gap_weight_scale is not None:
            check_finite_range("gap weight scale", self.gap_weight_scale, 0.0, 1e3)
        check_finite_range("s_max", self.s_max, 0.0, 1e6)
        require(self.s_max > 0, "s_max must be > 0")
        check_choice("variant", self.variant, VARIANTS)
        check_finite_range("paper d weight", self.paper_d_weight, 0.0, 1e3)
        check_finite_range("d lr", self.d_lr, 0.0, 10.0)
        check_finite_range("d momentum", self.d_momentum, 0.0, 0.999)
        check_finite_range("d weight decay", self.d_weight_decay, 0.0, 1.0)
        check_int_at_least("d updates", self.d_updates, 1)
        require(self.d_updates <= 100, f"d updates must be <= 100, got {self.d_updates}")
        require(self.d_widths is None or isinstance(self.d_widths, tuple),
                f"d widths must be a tuple of integers, got {self.d_widths!r}")
        if self.d_widths is not None or self.d_blocks is not None:
            self.discriminator_spec()  # validates
        require(isinstance(self.seed, int) and not isinstance(self.seed, bool) and 0 <= self.seed < 2**63,
                f"seed must be an integer in [0, 2^63), got {self.seed!r}")
        check_choice("device", self.device if not self.device.startswith("cuda:") else "cuda", DEVICE_CHOICES)
        check_int_at_least("eval limit", self.eval_limit, 0)
        check_choice("amp", self.amp, AMP_CHOICES)

    # --- derived values (the dataset's defaults filled in) ---
    @property
    def spec(self):
        return get_spec(self.dataset)

    @property
    def resolved_arch(self) -> str:
        return self.arch or self.spec.default_arch

    @property
    def resolved_epsilon(self) -> float:
        return self.spec.epsilon if self.epsilon is None else self.epsilon

    @property
    def resolved_pgd_step_size(self) -> float:
        return self.resolved_epsilon / 4 if self.pgd_step_size is None else self.pgd_step_size

    @property
    def resolved_gap_weight_scale(self) -> float:
        return self.spec.gap_weight_scale if self.gap_weight_scale is None else self.gap_weight_scale

    @property
    def uses_discriminator(self) -> bool:
        return self.method == "atld"

    def discriminator_spec(self):
        from atld.models.discriminator import DiscriminatorSpec

        base = default_discriminator_spec(self.resolved_arch)
        return DiscriminatorSpec(widths=tuple(self.d_widths) if self.d_widths is not None else base.widths,
                                 blocks_per_group=self.d_blocks if self.d_blocks is not None else base.blocks_per_group)

    def resolved(self) -> "TrainConfig":
        """A copy with every dataset default written out (what the run card stores)."""
        d_spec = self.discriminator_spec()
        return dataclasses.replace(
            self, arch=self.resolved_arch, epsilon=self.resolved_epsilon,
            pgd_step_size=self.resolved_pgd_step_size, gap_weight_scale=self.resolved_gap_weight_scale,
            d_widths=d_spec.widths, d_blocks=d_spec.blocks_per_group)

    def to_dict(self) -> dict:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v)
                for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        """Build from a (card's) dict; unknown keys or wrong types give a ConfigError."""
        if not isinstance(data, dict):
            raise ConfigError("config must be a JSON object")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(repr(k)[:40] for k in set(data) - names)  # repr: keys are untrusted text
        require(not unknown, f"unknown config field(s): {', '.join(unknown[:5])}")
        kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items()}
        try:
            return cls(**kwargs)
        except TypeError as exc:
            raise ConfigError(f"bad config: {exc}") from None

    def with_overrides(self, **changes) -> "TrainConfig":
        return dataclasses.replace(self, **changes)
