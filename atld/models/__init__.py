"""Model registry: architecture name -> constructor. Names are a closed vocabulary:
"small-cnn" (with BatchNorm), "small-cnn-nobn", "preact-resnet18" and "wrn-<depth>-<widen>"
(e.g. "wrn-28-10", the CIFAR default)."""

from __future__ import annotations

import re

from atld.data.registry import DatasetSpec
from atld.errors import ConfigError
from atld.models.common import Classifier, Normalize
from atld.models.discriminator import (OFFICIAL_DISCRIMINATOR, SMALL_DISCRIMINATOR, Discriminator,
                                       DiscriminatorSpec)
from atld.models.preact_resnet import PreActResNet18
from atld.models.small_cnn import SmallCNN
from atld.models.wide_resnet import WideResNet

ARCH_EXAMPLES = ("small-cnn", "small-cnn-nobn", "preact-resnet18", "wrn-28-10", "wrn-34-10", "wrn-16-4")
_WRN = re.compile(r"^wrn-(\d{1,3})-(\d{1,2})$")


def check_arch(arch: str, spec: DatasetSpec) -> str:
    """Check that `arch` names a known architecture that fits the dataset's input shape."""
    if arch in ("small-cnn", "small-cnn-nobn"):
        if spec.input_shape[1] % 4 or spec.input_shape[2] % 4:
            raise ConfigError(f"{arch} needs inputs divisible by 4, {spec.name} is {spec.input_shape}")
        return arch
    if arch == "preact-resnet18":
        return arch
    m = _WRN.match(arch)
    if m:
        depth, widen = int(m.group(1)), int(m.group(2))
        if depth < 10 or (depth - 4) % 6 or not 1 <= widen <= 20:
            raise ConfigError(f"bad WideResNet {arch!r}: depth must be 6n+4 (>= 10), widen 1..20")
        return arch
    raise ConfigError(f"unknown architecture {arch!r}; choose small-cnn, small-cnn-nobn, preact-resnet18 or wrn-<depth>-<widen> "
                      f"(e.g. {', '.join(ARCH_EXAMPLES)})")


def build_classifier(arch: str, spec: DatasetSpec) -> Classifier:
    """A freshly initialised classifier for `spec` (seed the global RNG before for reproducibility)."""
    check_arch(arch, spec)
    args = (spec.input_shape, spec.num_classes, spec.mean, spec.std)
    if arch in ("small-cnn", "small-cnn-nobn"):
        return SmallCNN(*args, batch_norm=arch == "small-cnn")
    if arch == "preact-resnet18":
        return PreActResNet18(*args)
    depth, widen = map(int, _WRN.match(arch).groups())
    return WideResNet(*args, depth=depth, widen=widen)


def default_discriminator_spec(arch: str) -> DiscriminatorSpec:
    """Official size for the ResNet/WRN runs; a small one for the small CNN."""
    return SMALL_DISCRIMINATOR if arch.startswith("small-cnn") else OFFICIAL_DISCRIMINATOR


__all__ = ["ARCH_EXAMPLES", "Classifier", "Discriminator", "DiscriminatorSpec", "Normalize",
           "OFFICIAL_DISCRIMINATOR", "SMALL_DISCRIMINATOR", "build_classifier", "check_arch",
           "default_discriminator_spec"]
