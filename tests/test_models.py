"""Classifiers and the discriminator: shapes, the features/logits split, inputs in [0, 1], and their
sizes computed without building them (the budget every card and flag is checked against)."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from atld.data import get_spec
from atld.errors import ConfigError
from atld.models import (OFFICIAL_DISCRIMINATOR, Discriminator, DiscriminatorSpec, build_classifier, check_arch,
                         classifier_params, discriminator_params)


@pytest.mark.parametrize("arch,dataset", [("small-cnn", "digits"), ("small-cnn", "mnist"),
                                          ("preact-resnet18", "cifar10"), ("wrn-10-2", "cifar100")])
def test_classifier_returns_logits_and_penultimate_features(arch, dataset):
    spec = get_spec(dataset)
    torch.manual_seed(0)
    model = build_classifier(arch, spec).eval()
    x = torch.rand(3, *spec.input_shape)
    logits, feats = model.forward_with_features(x)
    assert logits.shape == (3, spec.num_classes) and feats.shape == (3, model.feature_dim)
    assert torch.allclose(model(x), logits)
    assert torch.allclose(model.head(feats), logits)


def test_normalization_lives_inside_the_model():
    spec = get_spec("cifar10")
    model = build_classifier("wrn-10-1", spec).eval()
    x = torch.rand(2, 3, 32, 32)
    normalized = model.normalize(x)
    mean = torch.tensor(spec.mean).view(1, 3, 1, 1)
    std = torch.tensor(spec.std).view(1, 3, 1, 1)
    assert torch.allclose(normalized, (x - mean) / std)
    assert "normalize.mean" not in model.state_dict()  # constants, not learned or saved


def test_wrn_28_10_is_the_paper_cifar_default_with_the_published_size():
    spec = get_spec("cifar10")
    assert get_spec("cifar100").default_arch == "wrn-28-10" and spec.default_arch == "convnet-32"
    model = build_classifier("wrn-28-10", spec)
    assert 36.4e6 < sum(p.numel() for p in model.parameters()) < 36.6e6  # WRN-28-10: 36.5 M


@pytest.mark.parametrize("arch", ["resnet50", "wrn-27-10", "wrn-28-0", "wrn-4-1", "small-cnn; rm -rf /"])
def test_bad_architecture_names_are_refused(arch):
    with pytest.raises(ConfigError):
        check_arch(arch, get_spec("cifar10"))


def test_discriminator_heads_and_official_size():
    torch.manual_seed(0)
    d = Discriminator(10, OFFICIAL_DISCRIMINATOR)
    # the official WRN-28-5 D on a 1x1 map is a ~1.1 M-parameter residual MLP (docs/method.md §3)
    assert 1.0e6 < sum(p.numel() for p in d.parameters()) < 1.2e6
    z = torch.randn(8, 10)
    natural, classes = d(z)
    assert natural.shape == (8,) and classes.shape == (8, 10)
    d.eval()
    p = d.natural_probability(z)
    assert torch.all((p >= 0) & (p <= 1))


def test_discriminator_spec_validation():
    with pytest.raises(ConfigError):
        DiscriminatorSpec(widths=(16,))
    with pytest.raises(ConfigError):
        DiscriminatorSpec(widths=(16, 32), blocks_per_group=0)
    with pytest.raises(ConfigError):
        DiscriminatorSpec(widths=(16, 10**7))


# ----------------------------------------------------------------------------- sizes without building

@pytest.mark.parametrize("arch,dataset", [("small-cnn", "digits"), ("small-cnn-nobn", "mnist"),
                                          ("preact-resnet18", "cifar10"), ("wrn-10-2", "cifar100"),
                                          ("wrn-16-4", "svhn"), ("wrn-28-10", "cifar10")])
def test_parameter_formula_equals_the_built_model(arch, dataset):
    spec = get_spec(dataset)
    with torch.device("meta"):  # the layout, without allocating it
        model = build_classifier(arch, spec)
    assert classifier_params(arch, spec) == sum(p.numel() for p in model.parameters())


@settings(max_examples=60, deadline=None)
@given(widths=st.lists(st.integers(1, 64), min_size=2, max_size=6), blocks=st.integers(1, 4),
       classes=st.sampled_from([10, 100]))
def test_discriminator_formula_equals_the_built_model(widths, blocks, classes):
    spec = DiscriminatorSpec(widths=tuple(widths), blocks_per_group=blocks)
    with torch.device("meta"):
        d = Discriminator(classes, spec)
    assert discriminator_params(classes, spec) == sum(p.numel() for p in d.parameters())


def test_every_dataset_default_fits_its_budget_and_huge_models_do_not():
    from atld.config.train import TrainConfig
    from atld.data.registry import DATASET_NAMES

    for name in DATASET_NAMES:
        config = TrainConfig(dataset=name)
        assert config.check_budget(True) <= config.spec.max_params
    for kwargs in ({"dataset": "cifar10", "arch": "wrn-994-20"}, {"d_widths": (8192,) * 16, "d_blocks": 64},
                   {"dataset": "digits", "arch": "wrn-28-10"}):
        with pytest.raises(ConfigError, match="parameters, over the"):
            TrainConfig(**kwargs)


@pytest.mark.parametrize("arch", ["fast-cnn", "fast-cnn-2x", "fast-cnn-bn", "convnet-8", "convnet-32"])
@pytest.mark.parametrize("dataset", ["mnist", "cifar10"])
def test_fast_cnn_and_convnet_shapes_and_parameter_formulas(arch, dataset):
    spec = get_spec(dataset)
    model = build_classifier(arch, spec)
    logits, feats = model.forward_with_features(torch.rand(3, *spec.input_shape))
    assert logits.shape == (3, spec.num_classes) and feats.shape == (3, model.feature_dim)
    assert sum(p.numel() for p in model.parameters()) == classifier_params(arch, spec)


def test_fast_cnn_is_the_published_mnist_net():
    spec = get_spec("mnist")
    # conv 1->16 4x4, conv 16->32 4x4, FC 32·7·7 -> 100, FC 100 -> 10
    assert classifier_params("fast-cnn", spec) == (16 * 16 + 16) + (16 * 32 * 16 + 32) + (1568 + 1) * 100 + 101 * 10
    assert classifier_params("fast-cnn-bn", spec) == classifier_params("fast-cnn", spec) + 16 + 32
    assert spec.default_arch == "fast-cnn"


@pytest.mark.parametrize("bad", ["convnet-4", "convnet-999"])
def test_bad_convnet_widths_are_refused(bad):
    with pytest.raises(ConfigError):
        check_arch(bad, get_spec("cifar10"))
