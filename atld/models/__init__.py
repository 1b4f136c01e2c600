"""Classifiers and the discriminator. Every classifier takes float images in [0, 1] (its input
normalization lives inside it) and returns logits; `registry` is the table of architectures."""

from atld.models.common import Classifier, Normalize, eval_mode
from atld.models.discriminator import (
                                       OFFICIAL_DISCRIMINATOR,
                                       SMALL_DISCRIMINATOR,
                                       Discriminator,
                                       DiscriminatorSpec,
                                       discriminator_params,
)
from atld.models.registry import (
                                       ARCHITECTURES,
                                       build_classifier,
                                       build_discriminator,
                                       check_arch,
                                       classifier_params,
                                       default_discriminator_spec,
                                       model_params,
)

__all__ = ["ARCHITECTURES", "OFFICIAL_DISCRIMINATOR", "SMALL_DISCRIMINATOR", "Classifier", "Discriminator",
           "DiscriminatorSpec", "Normalize", "build_classifier", "build_discriminator", "check_arch",
           "classifier_params", "default_discriminator_spec", "discriminator_params", "eval_mode", "model_params"]
