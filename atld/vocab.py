"""Every fixed closed vocabulary of the lab, as string enums (torch-free).

A `StrEnum` member is its own string value: it compares equal to the plain string, prints as
it, and is written to JSON as it, so cards, CSV files and flags keep plain strings while the
code gets a closed set. `parse(EnumClass, value, what)` turns user or file input into a member
or a one-line `ConfigError`.

The training methods are a closed vocabulary too (`Method`, with their traits and the titles
the app shows); their step functions are the table `atld.methods.METHODS`. Open-ended
vocabularies are the keys of their registries, each defined once beside what it names: datasets
(`atld.data.registry.DATASETS`), architectures (`atld.models.registry`) and named attacks
(`atld.attacks.registry.ATTACKS`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

from atld.errors import ConfigError, shown


class InferenceMode(StrEnum):
    """How a prediction is made (docs/method.md §4)."""
    BARE = "atld-"  # the classifier alone
    IMT = "atld"  # one IMT step of the training ε
    IMT_PLUS = "atld+"  # half a step where D is unsure


class Protocol(StrEnum):
    """How an evaluation row's attack relates to what it evaluates (docs/evaluation.md)."""
    DIRECT = "direct"
    NON_ADAPTIVE = "non-adaptive: attack the bare classifier, then IMT"
    ADAPTIVE = "adaptive through IMT"


class VerdictKind(StrEnum):
    """How much an inference mode's verdict can be trusted (atld.evaluate.verdict)."""
    MEASURED = "measured"  # a strong attack on exactly what is evaluated (AutoAttack, adaptive APGD)
    UPPER_BOUND = "upper bound"  # only fixed-step (PGD, CW, FGSM) or black-box attacks
    UNVERIFIED = "unverified"  # IMT without an adaptive attack: the non-adaptive numbers do not count
    NOT_ATTACKED = "not attacked"


class AttackKind(StrEnum):
    """The gradient attacks of `atld.attacks.gradient` (docs/method.md §5)."""
    FGSM = "fgsm"
    PGD = "pgd"
    CW = "cw"


class LatentSpace(StrEnum):
    LOGITS = "logits"  # what ATLD's discriminator sees
    FEATURES = "features"  # the penultimate layer


class Projection(StrEnum):
    PCA = "pca"
    UMAP = "umap"
    TSNE = "tsne"


class FitMode(StrEnum):
    JOINT = "joint"  # the map is fit on both clouds
    NATURAL = "natural"  # fit on natural latents; perturbed ones are projected onto it


class PointSet(StrEnum):
    """Which cloud a latent point belongs to."""
    NATURAL = "natural"
    PERTURBED = "perturbed"


class ColorBy(StrEnum):
    """How the Latent explorer colours its points."""
    CLASS = "class × natural/perturbed"
    PREDICTED = "predicted class"
    D_SCORE = "D score"
    CORRECT = "correct / wrong"


class Variant(StrEnum):
    """ATLD's classifier loss (docs/method.md §2.3)."""
    CODE = "code"  # the released code: D never sends a gradient to f
    PAPER = "paper"  # f also minimizes D's divergence estimate


class DNorm(StrEnum):
    """The discriminator's normalisation layers (docs/method.md §3.1)."""
    BATCH = "batch"  # BatchNorm, as released: in train mode a score depends on the rest of the call
    NONE = "none"  # no normalisation: a score depends on its own latent only
    LAYER = "layer"  # LayerNorm, per latent
    GROUP = "group"  # GroupNorm (8 groups), per latent


class DBatch(StrEnum):
    """How the discriminator sees a training batch (docs/method.md §3.1)."""
    SEPARATE = "separate"  # as released: one call on the natural batch, one on the perturbed batch
    MIXED = "mixed"  # one call on the shuffled concatenation of both


class DPerturbation(StrEnum):
    """The perturbation ATLD trains on (docs/method.md §3.1)."""
    LMAE = "lmae"  # as released: one label-free signed step that makes the latents easier for D to tell apart
    PGD = "pgd"  # PGD on the classifier's cross-entropy (pgd_steps, pgd_step_size), as PGD-AT


class Amp(StrEnum):
    AUTO = "auto"  # bf16 on CUDA, off on the CPU
    OFF = "off"
    BF16 = "bf16"


class DeviceChoice(StrEnum):
    """What a user may ask for; "cuda:N" picks a GPU by index (see `atld.device`)."""
    AUTO = "auto"
    CPU = "cpu"
    CUDA = "cuda"


class Augmentation(StrEnum):
    NONE = "none"
    CROP_FLIP = "crop-flip"  # zero-pad 4, random crop, random horizontal flip


class Split(StrEnum):
    TRAIN = "train"
    TEST = "test"


class Optimizer(StrEnum):
    """The classifier's optimizer (`atld.train.optim`)."""
    SGD = "sgd"  # with momentum (TrainConfig.momentum), L2 weight decay added to the gradient
    ADAM = "adam"  # betas (0.9, 0.999), L2 weight decay added to the gradient


class LrSchedule(StrEnum):
    """How the classifier's learning rate moves during a run (`atld.train.optim.learning_rate`)."""
    STEP = "step"  # per epoch: lr × lr_gamma at each fraction in lr_milestones
    CONSTANT = "constant"  # lr throughout
    COSINE = "cosine"  # per step: linear warm-up over lr_warmup_epochs, then lr · (1 + cos πt) / 2 down to 0
    ONE_CYCLE = "one-cycle"  # per step: linear 0 → lr over lr_warmup_epochs, then linear down to 0


class RunStatus(StrEnum):
    """A run's status in its card (and a training job's)."""
    RUNNING = "running"
    FINISHED = "finished"
    STOPPED = "stopped"  # by the user, a signal, or the unwatched-job time limit; resumable
    DIVERGED = "diverged"  # a loss became NaN or infinite; the last good epoch is kept
    FAILED = "failed"  # an error (e.g. a save that could not be written); the last good epoch is kept
    COLLAPSED = "collapsed"  # predictions or loss collapsed to one class / chance; the last good epoch is kept


@dataclass(frozen=True)
class MethodTraits:
    help: str  # one line, shown by `--help` and the app
    title: str  # the app's plain name for it
    short: str  # its name inside a sentence ("PGD-AT shrinks the gap ...")
    pick_when: str  # one line for the app: what it is for, when to pick it
    discriminator: bool = False  # trains ATLD's discriminator D (and so allows IMT inference)
    robust: bool = True  # trains on perturbed images


class Method(StrEnum):
    """The training methods (docs/method.md); each one's step function is in `atld.methods.METHODS`."""
    NATURAL = "natural"
    PGD_AT = "pgd-at"
    FEATURE_SCATTER = "feature-scatter"
    ATLD = "atld"

    @property
    def traits(self) -> MethodTraits:
        return _METHOD_TRAITS[self]

    @property
    def help(self) -> str:
        return self.traits.help

    @property
    def title(self) -> str:
        return self.traits.title

    @property
    def discriminator(self) -> bool:
        return self.traits.discriminator

    @property
    def min_batch_size(self) -> int:
        """D's BatchNorm needs at least two latents per batch in training mode."""
        return 2 if self.discriminator else 1

    @classmethod
    def help_line(cls) -> str:
        """One line naming every method and what it does (the config's help text)."""
        return "; ".join(f"{m.value} = {m.help}" for m in cls)


_METHOD_TRAITS = {
    Method.NATURAL: MethodTraits(
        "clean cross-entropy", "Natural (no defence)", "the natural model",
        "Plain training on clean images: the fast baseline, and the model attacks fool.", robust=False),
    Method.PGD_AT: MethodTraits(
        "Madry's PGD adversarial training", "PGD adversarial training", "PGD-AT",
        "Trains on PGD attacks with labels: the standard robust baseline, about k+1 times slower."),
    Method.FEATURE_SCATTER: MethodTraits(
        "Feature Scattering, label-free optimal-transport perturbations", "Feature Scattering", "Feature Scattering",
        "Label-free perturbations that scatter the batch's features: ATLD's closest relative."),
    Method.ATLD: MethodTraits(
        "ATLD, label-free perturbations against a latent discriminator", "ATLD (latent discriminator)", "ATLD",
        "Label-free perturbations against a discriminator on the logits; the only method whose model has D, so "
        "IMT (atld / atld+) can correct inputs at test time.", discriminator=True),
}
METHOD_NAMES = tuple(m.value for m in Method)


class OutputFormat(StrEnum):
    TABLE = "table"
    CSV = "csv"
    JSON = "json"


E = TypeVar("E", bound=StrEnum)


def parse(enum: type[E], value: object, what: str) -> E:
    """`value` as a member of `enum`, or a one-line ConfigError naming the choices."""
    try:
        return enum(value)
    except (ValueError, TypeError):
        raise ConfigError(f"unknown {what} {shown(value)}; choose one of: {', '.join(m.value for m in enum)}") from None


def device_name(value: object) -> str:
    """A device a user may ask for: "auto" | "cpu" | "cuda" | "cuda:N" (`atld.device` resolves it)."""
    if isinstance(value, str) and re.fullmatch(r"cuda:\d{1,3}", value):
        return value
    return parse(DeviceChoice, value, "device")
