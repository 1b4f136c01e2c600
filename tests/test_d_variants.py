"""D's normalisation, how D sees a training batch and D's training perturbation (TrainConfig
d_norm / d_batch / d_perturbation): released defaults, old cards, the batch invariance of a
per-image D, and the ATLD step with each variant."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from atld.config.train import TrainConfig
from atld.vocab import DBatch, DNorm, DPerturbation
from atld.errors import ConfigError
from atld.methods import StepContext, atld_step
from atld.methods.atld import score_pair
from atld.models import Discriminator, DiscriminatorSpec, build_classifier, discriminator_params
from atld.runs.store import load_checkpoint, save_checkpoint
from atld.train.trainer import _autocast_factory

SMALL = dict(widths=(16, 32, 64), blocks_per_group=1)
PER_SAMPLE = (DNorm.NONE, DNorm.LAYER, DNorm.GROUP)


def test_defaults_are_the_released_recipe_and_old_cards_load_as_trained():
    config = TrainConfig()
    assert (config.d_norm, config.d_batch, config.d_perturbation) == (DNorm.BATCH, DBatch.SEPARATE,
                                                                      DPerturbation.LMAE)
    old = config.resolved().to_dict()
    for key in ("d_norm", "d_batch", "d_perturbation"):
        del old[key]  # a card written before the fields existed
    loaded = TrainConfig.from_dict(json.loads(json.dumps(old)))
    assert (loaded.d_norm, loaded.d_batch, loaded.d_perturbation) == ("batch", "separate", "lmae")
    assert loaded.discriminator_spec().norm is DNorm.BATCH
    variant = dataclasses.replace(config, d_norm="layer", d_batch="mixed", d_perturbation="pgd")
    back = TrainConfig.from_dict(json.loads(json.dumps(variant.resolved().to_dict())))
    assert (back.d_norm, back.d_batch, back.d_perturbation) == (DNorm.LAYER, DBatch.MIXED, DPerturbation.PGD)
    assert back.discriminator_spec() == DiscriminatorSpec(widths=(16, 32, 64), blocks_per_group=1, norm="layer")


@pytest.mark.parametrize("field,value", [("d_norm", "instance"), ("d_batch", "interleaved"),
                                         ("d_perturbation", "cw"), ("d_norm", 3), ("d_batch", None)])
def test_unknown_d_settings_are_one_clear_line(field, value):
    with pytest.raises(ConfigError, match="choose one of"):
        TrainConfig(**{field: value})


@pytest.mark.parametrize("norm", list(DNorm))
def test_parameter_formula_matches_each_normalisation(norm):
    spec = DiscriminatorSpec(**SMALL, norm=norm)
    d = Discriminator(10, spec)
    assert sum(p.numel() for p in d.parameters()) == discriminator_params(10, spec)


def test_a_variant_checkpoint_saves_and_loads_with_its_discriminator(tmp_path, digits):
    config = TrainConfig(method="atld", epochs=1, eval_limit=0, device="cpu", d_norm="layer", d_batch="mixed")
    torch.manual_seed(0)
    f = build_classifier("small-cnn", digits.spec)
    d = Discriminator(10, config.discriminator_spec())
    card = {"name": None, "method": "atld", "dataset": "digits", "arch": "small-cnn",
            "config": config.resolved().to_dict(), "seed": 0, "epochs_done": 1, "metrics": [], "status": "finished"}
    run = load_checkpoint(save_checkpoint(tmp_path / "run", card, f, d))
    assert run.config.d_norm is DNorm.LAYER and isinstance(run.discriminator.bn, torch.nn.LayerNorm)
    z = torch.randn(5, 10)
    assert torch.allclose(run.discriminator(z)[0], d.eval()(z)[0])
    # a card that claims BatchNorm for LayerNorm tensors is refused
    card_path = tmp_path / "run" / "card.json"
    bad = json.loads(card_path.read_text())
    bad["config"]["d_norm"] = "batch"
    card_path.write_text(json.dumps(bad))
    with pytest.raises(Exception, match="do not match|mismatch"):
        load_checkpoint(tmp_path / "run")


# ----------------------------------------------------------------------------- batch invariance

def _score_in(d, z: torch.Tensor, others: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """D's natural logit of z[0] when scored (train mode) inside a batch of z and `others`,
    shuffled by `order`."""
    batch = torch.cat([z, others])[order]
    with torch.no_grad():
        out = d.train()(batch)[0]
    return out[(order == 0).nonzero()[0, 0]]


@pytest.mark.parametrize("norm", PER_SAMPLE)
def test_a_per_sample_d_scores_an_image_the_same_in_any_batch(norm):
    torch.manual_seed(0)
    d = Discriminator(10, DiscriminatorSpec(**SMALL, norm=norm))
    z = torch.randn(1, 10) * 5
    natural, attacked = torch.randn(40, 10) * 5, torch.randn(40, 10) * 5 + 3
    alone = _score_in(d, z, torch.empty(0, 10), torch.arange(1))
    scores = [_score_in(d, z, others, torch.randperm(len(others) + 1, generator=torch.Generator().manual_seed(s)))
              for s, others in enumerate((natural, attacked, torch.cat([natural[:7], attacked[:30]])))]
    tol = dict(rtol=0, atol=1e-5)  # exact up to float summation order (composition and permutation)
    for s in scores:
        assert torch.allclose(s, alone, **tol)
    with torch.no_grad():
        assert torch.allclose(d.eval()(z)[0][0], alone, **tol)  # train mode = eval mode


def test_batchnorm_separate_calls_depend_on_the_batch_and_mixed_calls_do_not_on_their_order():
    torch.manual_seed(0)
    d = Discriminator(10, DiscriminatorSpec(**SMALL)).train()
    z_nat, z_adv = torch.randn(30, 10), torch.randn(30, 10) + 2
    with torch.no_grad():
        (sep_nat, _), _ = score_pair(d, z_nat, z_adv, DBatch.SEPARATE)
        (in_other, _), _ = score_pair(d, z_nat, torch.randn(30, 10) - 2, DBatch.SEPARATE)
        runs = [score_pair(d, z_nat, z_adv, DBatch.MIXED, torch.Generator().manual_seed(s)) for s in range(3)]
    assert torch.allclose(sep_nat, in_other)  # separate: the natural call never sees the other batch ...
    mixed = [r[0][0] for r in runs]
    assert not torch.allclose(mixed[0], sep_nat, atol=1e-3)  # ... mixed: it shares statistics with it
    for m in mixed[1:]:  # and the shuffle order changes nothing
        assert torch.allclose(m, mixed[0], atol=1e-5)


# ----------------------------------------------------------------------------- the ATLD step

@pytest.fixture(scope="module")
def batch(digits):
    return digits.x_train[:64], digits.y_train[:64]


def _step(batch, **changes):
    x, y = batch
    config = TrainConfig(method="atld", epochs=1, eval_limit=0, device="cpu", **changes)
    torch.manual_seed(0)
    f = build_classifier("small-cnn", config.spec)
    d = Discriminator(10, config.discriminator_spec())
    before = {k: v.clone() for k, v in d.state_dict().items()}
    d_opt = torch.optim.SGD(d.parameters(), lr=1e-3, momentum=0.9)
    ctx = StepContext(config, f, torch.optim.SGD(f.parameters(), lr=0.05), torch.Generator().manual_seed(0), d,
                      d_opt, _autocast_factory(config, torch.device("cpu")))
    out = atld_step(ctx, x, y)
    moved = any(not torch.equal(before[k], v) for k, v in d.state_dict().items() if v.is_floating_point())
    return out, moved


@pytest.mark.parametrize("norm,how,pert", [("batch", "mixed", "lmae"), ("layer", "mixed", "pgd"),
                                           ("none", "separate", "lmae"), ("group", "mixed", "lmae")])
def test_every_variant_trains_both_networks(batch, norm, how, pert):
    out, d_moved = _step(batch, d_norm=norm, d_batch=how, d_perturbation=pert)
    assert torch.isfinite(out.loss) and d_moved
    assert out.d_natural.shape == out.d_perturbed.shape == (64,)


def test_pgd_perturbation_is_adversarial_for_the_classifier_and_lmae_is_label_free(batch):
    pgd, _ = _step(batch, d_perturbation="pgd")
    lmae, _ = _step(batch)
    assert pgd.loss_terms["loss_ce"] > lmae.loss_terms["loss_ce"]  # PGD-10 on the CE hurts far more
    x, y = batch
    shuffled = (x, y.roll(1))
    assert torch.equal(_step(shuffled)[0].logits_perturbed.argmax(1), lmae.logits_perturbed.argmax(1))
    assert not torch.equal(_step(shuffled, d_perturbation="pgd")[0].logits_perturbed, pgd.logits_perturbed)
