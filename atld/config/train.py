"""Training configuration: one frozen dataclass, the single source of truth for the CLI, the app
and the run card. Every field states its unit; `None` means "the dataset's default"
(its `Recipe` in `atld.data.registry`). Validation lives here, once, in `__post_init__`: every value a flag, a
form or a stranger's card can carry is checked before anything is built, including the size of
the models it describes against the dataset's parameter budget.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from atld.config.fields import build, setting
from atld.attacks.step import attack_step
from atld.data.registry import DATASET_NAMES, LEGACY_TRAINING, DatasetSpec, Recipe, get_spec
from atld.vocab import (METHOD_NAMES, Amp, DBatch, DeviceChoice, DNorm, DPerturbation, LrSchedule, Method, Optimizer,
                        Variant, device_name, parse)
from atld.errors import (ConfigError, check_choice, check_finite_range, check_int_at_least, check_int_in, check_seed,
                         require, shown)
from atld.models.discriminator import DiscriminatorSpec
from atld.models.registry import check_arch, default_discriminator_spec, model_params

MAX_EPOCHS = 10_000
MAX_BATCH = 1_000_000


@dataclass(frozen=True)
class TrainConfig:
    dataset: str = setting("digits", "dataset name", choices=DATASET_NAMES, main=True)
    method: str = setting("atld", f"training method ({Method.help_line()})", choices=METHOD_NAMES, main=True)
    arch: str | None = setting(None, "classifier: small-cnn | small-cnn-nobn | fast-cnn | fast-cnn-2x | fast-cnn-bn | "
                                     "convnet-<width> | preact-resnet18 | wrn-<depth>-<widen>; default per dataset")
    epochs: int = setting(30, "number of passes over the training set", main=True, app_default=5)
    batch_size: int | None = setting(None, "images per step; default per dataset (digits 50 as in official ATLD, "
                                           "MNIST 100, CIFAR-10 32)", main=True)
    optimizer: Optimizer | None = setting(None, "classifier optimizer: sgd (with momentum) | adam (betas 0.9, 0.999); "
                                                "default per dataset")
    lr: float | None = setting(None, "classifier (peak) learning rate; default per dataset (digits: SGD 0.1 as "
                                     "official ATLD; MNIST: Adam 5e-3)", main=True)
    momentum: float = setting(0.9, "classifier SGD momentum (sgd only)")
    weight_decay: float | None = setting(None, "classifier L2 weight-decay coefficient (added to the gradient); "
                                               "default per dataset")
    lr_schedule: LrSchedule | None = setting(None, "step: lr × lr_gamma at each lr_milestones fraction (per epoch); "
                                                   "constant; cosine / one-cycle: per optimizer step, linear warm-up "
                                                   "over lr_warmup_epochs, then cosine / linear down to 0; default "
                                                   "per dataset")
    lr_warmup_epochs: float | None = setting(None, "cosine and one-cycle: epochs (fractions allowed) of linear lr "
                                                   "warm-up from 0, where one-cycle peaks; default per dataset "
                                                   "(MNIST: 0.4 × epochs)")
    lr_milestones: tuple[float, ...] = setting((0.5, 0.75), "step schedule: fractions of the epochs at which lr is "
                                                           "multiplied by lr_gamma")
    lr_gamma: float = setting(0.1, "step schedule: learning-rate decay factor at each milestone")
    epsilon: float | None = setting(None, "ℓ∞ radius of training perturbations, [0, 1] pixel units; default per "
                                          "dataset", main=True)
    epsilon_ramp_epochs: float | None = setting(None, "epochs (fractions allowed) over which the training ε grows "
                                                      "linearly, per step, from 0 to epsilon (0: off); default per "
                                                      "dataset (MNIST 2, Fashion-MNIST 1, CIFAR-10 3, digits 0)")
    pgd_steps: int = setting(10, "PGD-AT: attack steps per training batch (Madry: 10)")
    pgd_step_size: float | None = setting(None, "PGD-AT step, [0, 1] pixel units; default ε/4")
    label_smoothing: float = setting(0.5, "ATLD and Feature Scattering: δ; the true class gets 1 − δ "
                                          "(docs/method.md §1)")
    gap_weight_scale: float | None = setting(None, "ATLD: L = L_ce + s·scale·L_gap; default 0.5 (CIFAR-100: 0.1)")
    s_max: float = setting(10.0, "ATLD: cap on the ratio s (a documented deviation from the released code)")
    variant: Variant = setting(Variant.CODE, "ATLD: 'code' = released code (D never trains f); 'paper' = f also "
                                             "minimizes D's divergence estimate")
    paper_d_weight: float = setting(1.0, "ATLD paper variant: weight of the term −log D(f(x_adv)) in f's loss")
    d_lr: float = setting(1e-3, "discriminator SGD learning rate (official: 1e-3)")
    d_momentum: float = setting(0.9, "discriminator SGD momentum")
    d_weight_decay: float = setting(2e-4, "discriminator SGD weight decay")
    d_updates: int = setting(2, "discriminator SGD steps per batch (official: 2)")
    d_widths: tuple[int, ...] | None = setting(None, "discriminator widths; default: official (16,80,160,320) or "
                                                     "small (16,32,64) for small-cnn")
    d_blocks: int | None = setting(None, "discriminator residual blocks per width; default 4 (official) or 1 "
                                         "(small-cnn)")
    d_norm: DNorm = setting(DNorm.BATCH, "ATLD: the discriminator's normalisation: batch (as released) | none | "
                                         "layer | group; with none, layer or group a latent's D score never "
                                         "depends on the rest of its batch (docs/method.md §3.1)")
    d_batch: DBatch = setting(DBatch.SEPARATE, "ATLD: how D sees a training batch: separate (as released: one call "
                                               "on the natural batch, one on the perturbed batch, so BatchNorm can "
                                               "tell them apart by batch statistics) | mixed (one call on the "
                                               "shuffled concatenation)")
    d_perturbation: DPerturbation = setting(DPerturbation.LMAE, "ATLD: the training perturbation: lmae (as "
                                                                "released: one label-free step against D) | pgd "
                                                                "(PGD on the classifier's loss, pgd_steps and "
                                                                "pgd_step_size, as PGD-AT)")
    seed: int = setting(0, "seed for initialisation, shuffling, random starts and augmentation, in [0, 2^32)",
                        main=True)
    device: str = setting("auto", "auto | cpu | cuda | cuda:N", choices=tuple(DeviceChoice), app_default="cpu")
    eval_limit: int = setting(450, "test images used for the per-epoch clean and PGD-20 accuracy (0: skip)",
                              main=True, app_default=200)
    amp: Amp = setting(Amp.AUTO, "mixed precision for training: auto (bf16 on CUDA, off on CPU) | off | bf16")
    channels_last: bool = setting(True, "use channels_last memory format for image models (CUDA and CPU)")
    compile: bool = setting(False, "torch.compile the classifier (CUDA; slower start, faster steps)")
    stop_on_collapse: bool = setting(True, "stop when, after the ε ramp (and from epoch 2), an epoch predicts one "
                                           "class for >= 99 % of the test images or its loss sits at ln K; the last "
                                           "good epoch is kept")

    def __post_init__(self):
        check_choice("dataset", self.dataset, DATASET_NAMES)
        check_choice("method", self.method, METHOD_NAMES)
        # Cards come from strangers: check types before any string method is called on them.
        require(self.arch is None or isinstance(self.arch, str), f"arch must be a string, got {shown(self.arch)}")
        object.__setattr__(self, "device", device_name(self.device))
        object.__setattr__(self, "variant", parse(Variant, self.variant, "variant"))
        object.__setattr__(self, "amp", parse(Amp, self.amp, "amp"))
        object.__setattr__(self, "d_norm", parse(DNorm, self.d_norm, "discriminator normalisation"))
        object.__setattr__(self, "d_batch", parse(DBatch, self.d_batch, "discriminator batch"))
        object.__setattr__(self, "d_perturbation", parse(DPerturbation, self.d_perturbation,
                                                         "discriminator training perturbation"))
        if self.optimizer is not None:
            object.__setattr__(self, "optimizer", parse(Optimizer, self.optimizer, "optimizer"))
        if self.lr_schedule is not None:
            object.__setattr__(self, "lr_schedule", parse(LrSchedule, self.lr_schedule, "lr schedule"))
        for name in ("channels_last", "compile", "stop_on_collapse"):
            value = getattr(self, name)
            require(isinstance(value, bool), f"{name} must be true or false, got {shown(value)}")
        if self.arch is not None:
            check_arch(self.arch, self.spec)
        check_int_in("epochs", self.epochs, 1, MAX_EPOCHS)
        if self.batch_size is not None:
            check_int_in("batch size", self.batch_size, 1, MAX_BATCH)
        require(self.resolved_batch_size >= Method(self.method).min_batch_size,
                f"batch size must be >= {Method(self.method).min_batch_size} for {self.method} (its discriminator's "
                "BatchNorm needs two latents per batch)")
        if self.lr is not None:
            check_finite_range("lr", self.lr, 0.0, 10.0)
            require(self.lr > 0, "lr must be > 0")
        check_finite_range("momentum", self.momentum, 0.0, 0.999)
        if self.weight_decay is not None:
            check_finite_range("weight decay", self.weight_decay, 0.0, 1.0)
        if self.lr_warmup_epochs is not None:
            check_finite_range("lr warmup epochs", self.lr_warmup_epochs, 0.0, float(self.epochs),
                               "(epochs, at most the run's)")
        if self.epsilon_ramp_epochs is not None:
            check_finite_range("epsilon ramp epochs", self.epsilon_ramp_epochs, 0.0, float(MAX_EPOCHS), "(epochs)")
        require(isinstance(self.lr_milestones, tuple) and len(self.lr_milestones) <= 100,
                "lr milestones must be at most 100 fractions")
        for m in self.lr_milestones:
            check_finite_range("lr milestone", m, 0.0, 1.0, "(fraction of the epochs)")
        check_finite_range("lr gamma", self.lr_gamma, 0.0, 1.0)
        if self.epsilon is not None:
            check_finite_range("epsilon", self.epsilon, 0.0, 1.0, "([0, 1] pixel units)")
        check_int_in("pgd steps", self.pgd_steps, 1, 1000)
        if self.pgd_step_size is not None:
            check_finite_range("pgd step size", self.pgd_step_size, 0.0, 1.0, "([0, 1] pixel units)")
        check_finite_range("label smoothing", self.label_smoothing, 0.0, 1.0)
        require(self.label_smoothing < 1.0, "label smoothing must be < 1 (the true class needs weight > 0)")
        if self.gap_weight_scale is not None:
            check_finite_range("gap weight scale", self.gap_weight_scale, 0.0, 1e3)
        check_finite_range("s_max", self.s_max, 0.0, 1e6)
        require(self.s_max > 0, "s_max must be > 0")
        check_finite_range("paper d weight", self.paper_d_weight, 0.0, 1e3)
        check_finite_range("d lr", self.d_lr, 0.0, 10.0)
        check_finite_range("d momentum", self.d_momentum, 0.0, 0.999)
        check_finite_range("d weight decay", self.d_weight_decay, 0.0, 1.0)
        check_int_in("d updates", self.d_updates, 1, 100)
        require(self.d_widths is None or isinstance(self.d_widths, tuple),
                f"d widths must be a list of integers, got {shown(self.d_widths)}")
        dspec = self.discriminator_spec()  # validates d_widths and d_blocks
        check_seed("seed", self.seed)
        check_int_at_least("eval limit", self.eval_limit, 0)
        self.check_budget(self.uses_discriminator, dspec)

    # --- derived values (the dataset's defaults filled in) ---
    @property
    def spec(self) -> DatasetSpec:
        return get_spec(self.dataset)

    @property
    def recipe(self) -> Recipe:
        return self.spec.recipe

    @property
    def resolved_arch(self) -> str:
        return self.arch or self.recipe.arch

    @property
    def resolved_batch_size(self) -> int:
        return self.recipe.batch_size if self.batch_size is None else self.batch_size

    @property
    def resolved_optimizer(self) -> Optimizer:
        return self.optimizer or self.recipe.optimizer

    @property
    def resolved_lr(self) -> float:
        return self.recipe.lr if self.lr is None else self.lr

    @property
    def resolved_weight_decay(self) -> float:
        return self.recipe.weight_decay if self.weight_decay is None else self.weight_decay

    @property
    def resolved_lr_schedule(self) -> LrSchedule:
        return self.lr_schedule or self.recipe.lr_schedule

    @property
    def resolved_lr_warmup_epochs(self) -> float:
        """Epochs; the recipe gives a fraction of the run."""
        return self.recipe.lr_warmup_fraction * self.epochs if self.lr_warmup_epochs is None else self.lr_warmup_epochs

    @property
    def resolved_epsilon_ramp_epochs(self) -> float:
        return self.recipe.epsilon_ramp_epochs if self.epsilon_ramp_epochs is None else self.epsilon_ramp_epochs

    @property
    def resolved_epsilon(self) -> float:
        return self.spec.epsilon_or_default(self.epsilon)

    @property
    def resolved_pgd_step_size(self) -> float:
        return attack_step(self.resolved_epsilon) if self.pgd_step_size is None else self.pgd_step_size

    @property
    def resolved_gap_weight_scale(self) -> float:
        return self.spec.gap_weight_scale if self.gap_weight_scale is None else self.gap_weight_scale

    @property
    def uses_discriminator(self) -> bool:
        return Method(self.method).discriminator

    def check_budget(self, with_discriminator: bool, dspec: DiscriminatorSpec | None = None) -> int:
        """The parameters of the classifier (and the discriminator) this config describes, from the
        architectures' formulas; ConfigError when over the dataset's budget. Nothing is built, so a
        card asking for a 24 GiB WideResNet or a discriminator of a thousand layers costs nothing."""
        dspec = (dspec or self.discriminator_spec()) if with_discriminator else None
        params = model_params(self.resolved_arch, self.spec, dspec)
        require(params <= self.spec.max_params,
                f"the models would have {params:,} parameters, over the {self.spec.max_params:,} allowed for "
                f"{self.dataset}")
        return params

    def discriminator_spec(self) -> DiscriminatorSpec:
        base = default_discriminator_spec(self.resolved_arch)
        return DiscriminatorSpec(widths=self.d_widths if self.d_widths is not None else base.widths,
                                 blocks_per_group=self.d_blocks if self.d_blocks is not None else base.blocks_per_group,
                                 norm=self.d_norm)

    def resolved(self) -> TrainConfig:
        """A copy with every dataset default written out (what the run card stores)."""
        d_spec = self.discriminator_spec()
        return dataclasses.replace(
            self, arch=self.resolved_arch, epsilon=self.resolved_epsilon, batch_size=self.resolved_batch_size,
            optimizer=self.resolved_optimizer, lr=self.resolved_lr, weight_decay=self.resolved_weight_decay,
            lr_schedule=self.resolved_lr_schedule, lr_warmup_epochs=self.resolved_lr_warmup_epochs,
            epsilon_ramp_epochs=self.resolved_epsilon_ramp_epochs,
            pgd_step_size=self.resolved_pgd_step_size, gap_weight_scale=self.resolved_gap_weight_scale,
            d_widths=d_spec.widths, d_blocks=d_spec.blocks_per_group)

    def to_dict(self) -> dict:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v)
                for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        """Build from a (card's) dict; unknown keys or wrong types give a ConfigError. A card written
        before the optimizer, schedule and ε-ramp fields existed means the settings it was trained
        with (SGD, step decay, no ramp), not today's per-dataset recipe; one written before D's
        normalisation, batch and perturbation fields existed means the released recipe (their
        defaults)."""
        if not isinstance(data, dict):
            raise ConfigError("config must be a JSON object")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(repr(k)[:40] for k in set(data) - names)  # repr: keys are untrusted text
        require(not unknown, f"unknown config field(s): {', '.join(unknown[:5])}")
        data = {**LEGACY_TRAINING, **data}
        return build(cls, {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items()})

    def with_overrides(self, **changes) -> TrainConfig:
        return dataclasses.replace(self, **changes)
