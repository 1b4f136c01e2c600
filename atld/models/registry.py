"""The table of classifier architectures: one row per family, with its constructor, its number of
parameters computed from a formula (so a card or a flag asking for a huge model is refused before
anything is built), the discriminator size that goes with it and the inputs it accepts.

Names: "small-cnn" (with BatchNorm), "small-cnn-nobn", "fast-cnn", "fast-cnn-2x", "fast-cnn-bn" (the
MNIST default), "convnet-<width>" (e.g. "convnet-32", the CIFAR-10 default), "preact-resnet18" and
"wrn-<depth>-<widen>" (e.g. "wrn-28-10", the CIFAR-100 and SVHN default), and RobustBench's layouts
(`atld.models.robustbench`: "rb-wrn-<depth>-<widen>", "dm-wrn-<depth>-<widen>[-swish]", "rb-resnet18",
"rb-preact-resnet18[-bn]", "dm-preact-resnet18[-swish]") for imported checkpoints. Adding an architecture is one row
here (and its module).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from atld.data.registry import DatasetSpec
from atld.errors import ConfigError
from atld.models.cifar_convnet import MIN_SIDE, WIDTHS, ConvNet, convnet_params
from atld.models.common import Classifier
from atld.models.fast_cnn import FastCNN, fast_cnn_params
from atld.models.discriminator import (OFFICIAL_DISCRIMINATOR, SMALL_DISCRIMINATOR, Discriminator, DiscriminatorSpec,
                                       discriminator_params)
from atld.models.preact_resnet import PreActResNet18, preact_resnet18_params
from atld.models.robustbench import (DMPreActResNet18, DMWideResNet, RBResNet18, RBWideResNet, resnet18_params,
                                     wrn_params)
from atld.models.small_cnn import SmallCNN, small_cnn_params
from atld.models.wide_resnet import WideResNet, wide_resnet_params


def _divisible_by_4(spec: DatasetSpec, name: str) -> None:
    if spec.input_shape[1] % 4 or spec.input_shape[2] % 4:
        raise ConfigError(f"{name} needs inputs divisible by 4, {spec.name} is {spec.input_shape}")


def _convnet_shape(spec: DatasetSpec, name: str, width: int) -> None:
    if width not in WIDTHS:
        raise ConfigError(f"bad {name!r}: width must be {WIDTHS.start}..{WIDTHS.stop - 1}")
    if min(spec.input_shape[1:]) < MIN_SIDE:
        raise ConfigError(f"{name} needs inputs of at least {MIN_SIDE}x{MIN_SIDE}, {spec.name} is {spec.input_shape}")


def _wrn_shape(spec: DatasetSpec, name: str, depth: int, widen: int) -> None:
    if depth < 10 or (depth - 4) % 6 or not 1 <= widen <= 20:
        raise ConfigError(f"bad WideResNet {name!r}: depth must be 6n+4 (>= 10), widen 1..20")


@dataclass(frozen=True)
class Architecture:
    """One family of classifiers. `pattern` is the name, or a regex whose named groups are integer
    arguments of `build`, `params` and `check` (each also receives the dataset spec)."""
    pattern: str
    build: Callable[..., Classifier]
    params: Callable[..., int]  # learnable parameters, from a formula (never by building)
    discriminator: DiscriminatorSpec  # ATLD's default D for this classifier
    check: Callable[..., None] = field(default=lambda spec, name, **args: None)
    example: str = ""  # a valid name, for messages

    def match(self, name: str) -> dict[str, int] | None:
        m = re.fullmatch(self.pattern, name)
        return None if m is None else {k: int(v) for k, v in m.groupdict().items()}


def _common(spec: DatasetSpec) -> dict:
    return {"input_shape": spec.input_shape, "num_classes": spec.num_classes, "mean": spec.mean, "std": spec.std}


ARCHITECTURES: tuple[Architecture, ...] = (
    Architecture("small-cnn", lambda spec: SmallCNN(**_common(spec), batch_norm=True),
                 lambda spec: small_cnn_params(spec.input_shape, spec.num_classes, batch_norm=True),
                 SMALL_DISCRIMINATOR, check=lambda spec, name: _divisible_by_4(spec, name)),
    Architecture("small-cnn-nobn", lambda spec: SmallCNN(**_common(spec), batch_norm=False),
                 lambda spec: small_cnn_params(spec.input_shape, spec.num_classes, batch_norm=False),
                 SMALL_DISCRIMINATOR, check=lambda spec, name: _divisible_by_4(spec, name)),
    *(Architecture(name, lambda spec, w=width, bn=bn: FastCNN(**_common(spec), width=w, batch_norm=bn),
                   lambda spec, w=width, bn=bn: fast_cnn_params(spec.input_shape, spec.num_classes, w, bn),
                   SMALL_DISCRIMINATOR, check=lambda spec, name: _divisible_by_4(spec, name))
      for name, width, bn in (("fast-cnn", 1, False), ("fast-cnn-2x", 2, False), ("fast-cnn-bn", 1, True))),
    Architecture(r"convnet-(?P<width>\d{1,3})", lambda spec, width: ConvNet(**_common(spec), width=width),
                 lambda spec, width: convnet_params(spec.input_shape[0], spec.num_classes, width),
                 SMALL_DISCRIMINATOR, check=lambda spec, name, width: _convnet_shape(spec, name, width),
                 example="convnet-32"),
    Architecture("preact-resnet18", lambda spec: PreActResNet18(**_common(spec)),
                 lambda spec: preact_resnet18_params(spec.input_shape[0], spec.num_classes), OFFICIAL_DISCRIMINATOR),
    Architecture(r"wrn-(?P<depth>\d{1,3})-(?P<widen>\d{1,2})",
                 lambda spec, depth, widen: WideResNet(**_common(spec), depth=depth, widen=widen),
                 lambda spec, depth, widen: wide_resnet_params(spec.input_shape[0], spec.num_classes, depth, widen),
                 OFFICIAL_DISCRIMINATOR, check=lambda spec, name, depth, widen: _wrn_shape(spec, name, depth, widen),
                 example="wrn-28-10"),
    # RobustBench's parameter names and shapes (atld.models.robustbench), for imported checkpoints
    Architecture(r"rb-wrn-(?P<depth>\d{1,3})-(?P<widen>\d{1,2})",
                 lambda spec, depth, widen: RBWideResNet(**_common(spec), depth=depth, widen=widen),
                 lambda spec, depth, widen: wrn_params(spec.input_shape[0], spec.num_classes, depth, widen),
                 OFFICIAL_DISCRIMINATOR, check=lambda spec, name, depth, widen: _wrn_shape(spec, name, depth, widen),
                 example="rb-wrn-28-10"),
    *(Architecture(rf"dm-wrn-(?P<depth>\d{{1,3}})-(?P<widen>\d{{1,2}}){suffix}",
                   lambda spec, depth, widen, s=swish: DMWideResNet(**_common(spec), depth=depth, widen=widen, swish=s),
                   lambda spec, depth, widen: wrn_params(spec.input_shape[0], spec.num_classes, depth, widen),
                   OFFICIAL_DISCRIMINATOR, check=lambda spec, name, depth, widen: _wrn_shape(spec, name, depth, widen),
                   example=f"dm-wrn-70-16{suffix}")
      for suffix, swish in (("", False), ("-swish", True))),
    *(Architecture(name, build, lambda spec, k=kind: resnet18_params(spec.input_shape[0], spec.num_classes, k),
                   OFFICIAL_DISCRIMINATOR)
      for name, kind, build in (
          ("rb-resnet18", "basic", lambda spec: RBResNet18(**_common(spec))),
          ("rb-preact-resnet18", "preact", lambda spec: RBResNet18(**_common(spec), preact=True)),
          ("rb-preact-resnet18-bn", "preact-v2", lambda spec: RBResNet18(**_common(spec), preact=True, v2=True)),
          ("dm-preact-resnet18", "dm", lambda spec: DMPreActResNet18(**_common(spec))),
          ("dm-preact-resnet18-swish", "dm", lambda spec: DMPreActResNet18(**_common(spec), swish=True)))),
)


def resolve(arch: str, spec: DatasetSpec) -> tuple[Architecture, dict[str, int]]:
    """The row and arguments of `arch`, checked against the dataset; ConfigError for anything else."""
    if isinstance(arch, str):
        for row in ARCHITECTURES:
            args = row.match(arch)
            if args is not None:
                row.check(spec, arch, **args)
                return row, args
    names = ", ".join(row.example or row.pattern for row in ARCHITECTURES)
    raise ConfigError(f"unknown architecture {str(arch)[:60]!r}; choose one of: {names} (convnet-<width>, "
                      "wrn-<depth>-<widen>, rb-wrn-<depth>-<widen>, dm-wrn-<depth>-<widen>[-swish])")


def check_arch(arch: str, spec: DatasetSpec) -> str:
    """Check that `arch` names a known architecture that fits the dataset's input shape."""
    resolve(arch, spec)
    return arch


def classifier_params(arch: str, spec: DatasetSpec) -> int:
    """Learnable parameters of `arch` for `spec`, from its formula (nothing is built)."""
    row, args = resolve(arch, spec)
    return row.params(spec, **args)


def build_classifier(arch: str, spec: DatasetSpec) -> Classifier:
    """A freshly initialised classifier (seed the global RNG first for reproducibility; build
    under `torch.device("meta")` to get its layout without allocating)."""
    row, args = resolve(arch, spec)
    return row.build(spec, **args)


def default_discriminator_spec(arch: str) -> DiscriminatorSpec:
    """The discriminator that goes with a classifier: small for the small CNNs (the official D alone
    is about 4.5 MB of float32, more than such a classifier), official otherwise."""
    for row in ARCHITECTURES:
        if row.match(arch) is not None:
            return row.discriminator
    return OFFICIAL_DISCRIMINATOR


def build_discriminator(spec: DatasetSpec, dspec: DiscriminatorSpec) -> Discriminator:
    return Discriminator(spec.num_classes, dspec)


def model_params(arch: str, spec: DatasetSpec, dspec: DiscriminatorSpec | None) -> int:
    """Parameters of the classifier plus, when given, its discriminator (the budget's measure)."""
    return classifier_params(arch, spec) + (0 if dspec is None else discriminator_params(spec.num_classes, dspec))
