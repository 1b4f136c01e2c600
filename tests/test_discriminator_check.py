"""D's check (atld.evaluate.discriminator): its AUC per batch (train mode, separate calls) and per
image (eval mode; train mode in one mixed batch), plain words for each kind of separation, IMT's
step against the reversed and a random step (exact McNemar), the training-perturbation
diagnostic; on the shipped ATLD model, on a D built to separate images and on a D built to
separate only by batch statistics."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from atld.evaluate.discriminator import (SEPARATION_AUC, WINDOW_SHARE, StepComparison, auc_words,
                                         batch_context_scores, discriminator_check, perturbation_diagnostic,
                                         separation, separation_sentence, share_curve, step_comparison,
                                         what_d_learned)
from atld.evaluate.report import EvalReport, discriminator_card, discriminator_lines, store_evaluation
from atld.evaluate.stats import mcnemar_exact
from atld.runs.card import read_card, validate_card
from atld.ui.evaluate import discriminator_messages


class MemorizingD(nn.Module):
    """P(natural) high exactly on latents it has memorized (the evaluation's natural ones), low
    elsewhere: a discriminator built to separate single images perfectly."""

    def __init__(self, z_natural: torch.Tensor):
        super().__init__()
        self.register_buffer("z", z_natural)
        self.scale = nn.Parameter(torch.tensor(4.0))

    def forward(self, z):
        distance = torch.cdist(z, self.z).min(1).values
        return self.scale * (1 - distance), z


class BatchStatisticD(nn.Module):
    """Separates only by batch statistics: in train mode every latent gets its call's mean top
    logit (the classifier's confidence, high on natural batches, low on attacked ones), the same
    score for the whole call; in eval mode one constant. It cannot tell a single image from
    another by construction."""

    def __init__(self, z_natural: torch.Tensor):
        super().__init__()
        self.register_buffer("level", z_natural.max(1).values.mean())
        self.scale = nn.Parameter(torch.tensor(1.0))

    def forward(self, z):
        if self.training:
            logit = self.scale * (z.max(1).values.mean() - self.level)
        else:
            logit = self.scale * torch.tensor(0.0)
        return logit.expand(len(z)).clone(), z


@pytest.fixture(scope="module")
def latents(natural_run, digits_batch):
    """Natural and PGD-20 latents of 120 digits under the natural classifier."""
    from atld.attacks.gradient import AttackConfig, run_attack

    x, y = digits_batch(120)
    f = natural_run.classifier.eval()
    x_adv = run_attack(f, x, y, AttackConfig("pgd", 0.2, steps=20), torch.Generator().manual_seed(0))
    with torch.no_grad():
        return f(x), f(x_adv)


def test_a_d_that_separates_only_by_batch_statistics_reads_one_per_batch_and_chance_per_image(latents):
    z_nat, z_adv = latents
    d = BatchStatisticD(z_nat).eval()
    sep = separation(d, z_nat, z_adv, batch_size=30, generator=torch.Generator().manual_seed(0))
    assert sep.per_batch > 0.99 and sep.per_image == 0.5 and sep.mixed == 0.5
    assert sep.kind == "batches" and not d.training  # the model itself stayed in eval mode
    text = separation_sentence(sep)
    assert text.startswith("D tells batches apart, not images: AUC natural vs PGD-20 1.00 per batch, 0.50 (chance) "
                           "per image, 0.50 (chance) in one mixed batch")
    assert "BatchNorm" in text
    curve = share_curve(d, z_nat, z_adv, shares=(0.0, 0.5, 1.0), batch_size=40,
                        generator=torch.Generator().manual_seed(0))
    means = [c["mean"] for c in curve]
    assert means[0] > means[1] > means[2]  # the score follows the batch ...
    half = curve[1]
    assert half["mean_natural"] == pytest.approx(half["mean_perturbed"])  # ... not the image
    assert curve[0]["mean_perturbed"] is None and curve[2]["mean_natural"] is None


def test_a_d_that_judges_images_reads_high_every_way(latents):
    z_nat, z_adv = latents
    d = MemorizingD(z_nat).eval()
    sep = separation(d, z_nat, z_adv, batch_size=30)
    assert min(sep.per_batch, sep.per_image, sep.mixed) > 0.95 and sep.kind == "images"
    assert separation_sentence(sep).startswith("D judges single images")
    scores = batch_context_scores(d, z_nat, z_adv, 30, torch.Generator().manual_seed(1))
    assert torch.allclose(scores["separate_natural"], scores["mixed_natural"], atol=1e-6)
    assert torch.allclose(scores["eval_perturbed"], scores["mixed_perturbed"], atol=1e-6)
    half = share_curve(d, z_nat, z_adv, shares=(0.5,), batch_size=40)[0]
    assert half["mean_natural"] > 0.9 > 0.1 > half["mean_perturbed"]


def test_auc_words_name_chance_and_inversion():
    assert auc_words(0.98) == "0.98"
    assert auc_words(0.51) == "0.51 (chance)" and auc_words(0.47) == "0.47 (chance)"
    assert auc_words(0.27) == "0.27 (inverted)"
    sep = {"per_batch": 1.0, "per_image": 0.34, "mixed": 0.27, "n": 500, "batch_size": 100}
    text = separation_sentence(sep)
    assert "0.34 (inverted) per image" in text
    assert "D scores attacked latents as more natural than clean ones" in text


@pytest.mark.parametrize("b,c", [(0, 0), (0, 6), (3, 3), (10, 2), (127, 171), (1, 40)])
def test_mcnemar_exact_is_the_two_sided_binomial_test(b, c):
    n = b + c
    expected = 1.0 if n == 0 else min(1.0, 2 * sum(math.comb(n, k) for k in range(min(b, c) + 1)) / 2**n)
    assert mcnemar_exact(b, c) == pytest.approx(expected)
    assert mcnemar_exact(b, c) == pytest.approx(mcnemar_exact(c, b))
    scipy = pytest.importorskip("scipy.stats")
    if n:
        assert mcnemar_exact(b, c) == pytest.approx(scipy.binomtest(b, n, 0.5).pvalue, rel=1e-9)


def test_step_comparison_words_follow_the_paired_tests():
    correct = {"none": 50, "imt": 80, "reversed": 40, "random": 50}
    good = StepComparison("PGD-20", 100, 0.3, correct, 45, 5, 35, 5)
    assert good.informative and "carries information: it beats its reverse and a random step" in good.sentence()
    wrong = StepComparison("clean", 100, 0.3, correct, 2, 30, 3, 4)
    assert not wrong.informative and "points the wrong way" in wrong.sentence()
    null = StepComparison("clean", 100, 0.3, correct, 10, 12, 2, 15)
    assert not null.informative
    assert "no better than its reverse" in null.sentence() and "worse than a random step" in null.sentence()
    assert "McNemar p = " in null.sentence() and "10 vs 12 discordant" in null.sentence()


def test_step_comparison_counts_every_step_on_real_models(atld_run, digits_batch):
    x, y = digits_batch(80)
    f, d = atld_run.classifier, atld_run.discriminator
    cmp = step_comparison(f, d, x, y, 0.2, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert cmp.correct["none"] == int((f(x).argmax(1) == y).sum())
    assert all(0 <= v <= 80 for v in cmp.correct.values()) and cmp.n == 80
    # discordant pairs are consistent with the counts: imt − other = b − c
    assert cmp.correct["imt"] - cmp.correct["reversed"] == cmp.b_reversed - cmp.c_reversed
    assert cmp.correct["imt"] - cmp.correct["random"] == cmp.b_random - cmp.c_random
    assert not f.training and not d.training


def test_perturbation_diagnostic_measures_against_fgsm_from_the_same_start(atld_run, digits_batch):
    x, y = digits_batch(100)
    diag = perturbation_diagnostic(atld_run.classifier, atld_run.discriminator, atld_run.config, x, y,
                                   generator=torch.Generator().manual_seed(0))
    assert diag.n == 100 and 0 <= diag.sign_agreement <= 1
    assert diag.fgsm <= diag.random  # FGSM from the same start hurts at least as much as noise
    assert diag.kind in ("adversarial", "weakly adversarial", "close to noise")
    assert f"agree with FGSM's on {100 * diag.sign_agreement:.0f} % of pixels" in diag.sentence()
    d_state = {k: v.clone() for k, v in atld_run.discriminator.state_dict().items()}
    perturbation_diagnostic(atld_run.classifier, atld_run.discriminator, atld_run.config, x, y)
    assert all(torch.equal(v, atld_run.discriminator.state_dict()[k]) for k, v in d_state.items())  # a copy trained


def test_the_shipped_atld_discriminator_is_reported_as_it_behaves(atld_run, digits_batch):
    x, y = digits_batch(120)
    check = discriminator_check(atld_run, x, y, atld_run.spec.epsilon)
    card_auc = atld_run.card["metrics"][-1].get("d_auc")
    assert check.train_auc == card_auc and check.n == 120
    assert 0.0 <= check.in_window_pgd <= 1.0 and 0.5 - 0.2 < check.auc_pgd < 1.0
    assert check.auc_pgd == check.sep_pgd.per_image and check.auc_own == check.sep_own.per_image
    text = " ".join(check.sentences())
    assert f"natural vs PGD-20: {auc_words(check.sep_pgd.per_batch)} per batch, {auc_words(check.auc_pgd)} per image" \
        in text and "eval mode" in text
    if card_auc is not None:
        assert f"The card's {card_auc:.2f} is a training metric" in text
    assert f"{100 * check.in_window_natural:.1f} % of clean" in text
    assert check.steps_clean.sentence() in text and check.steps_pgd.sentence() in text
    assert check.perturbation.sentence() in text
    levels = [level for level, _ in check.messages()]
    assert levels[2] == ("info" if check.separates else "warning") and len(levels) == 6
    # the shipped model: D tells batches apart better than images, and ATLD+ is a uniform half step
    if atld_run.path.name == "digits-atld" and card_auc is not None and card_auc > 0.9:
        assert check.sep_pgd.per_batch > check.sep_pgd.per_image and not check.separates
        assert check.uniform_half_step and min(check.in_window_natural, check.in_window_pgd) > WINDOW_SHARE
        assert [level for level, _ in discriminator_messages(check.to_dict())][:3] == ["info", "warning", "warning"]


def test_a_discriminator_that_separates_is_reported_so(natural_run, as_run, digits_batch):
    x, y = digits_batch(60)
    with torch.no_grad():
        z = natural_run.classifier(x)
    check = discriminator_check(as_run(natural_run.classifier, MemorizingD(z)), x, y, 0.2)
    assert check.auc_pgd > 0.95 and check.separates and not check.uniform_half_step
    assert check.sep_pgd.kind == "images" and check.auc_pgd >= SEPARATION_AUC
    assert check.train_auc is None
    text = " ".join(check.sentences())
    assert "D judges single images" in text and "tells batches apart" not in text
    assert "training metric" not in text
    assert [level for level, _ in discriminator_messages(check.to_dict())][:3] == ["info", "info", "info"]


def test_the_check_is_stored_in_the_card_and_printed(atld_run, digits_batch, tmp_path):
    import shutil

    x, y = digits_batch(60)
    check = discriminator_check(atld_run, x, y, atld_run.spec.epsilon).to_dict()
    json.dumps(check, allow_nan=False)  # plain data
    run_dir = tmp_path / "run"
    shutil.copytree(atld_run.path, run_dir)
    meta = {"date": "2026-01-01T00:00:00+00:00", "seed": 0, "model_hash": None, "discriminator": check}
    card = store_evaluation(run_dir, EvalReport([], meta))
    stored = read_card(run_dir)["discriminator_check"]
    assert stored == card["discriminator_check"] == discriminator_card(check, meta)
    assert stored["auc"]["pgd_per_batch"] == check["sep_pgd"]["per_batch"]
    assert stored["auc"]["pgd_per_image"] == check["auc_pgd"]
    assert stored["steps"]["pgd20"]["imt"] == check["steps_pgd"]["correct"]["imt"]
    assert discriminator_lines(stored) == discriminator_lines(check)
    assert discriminator_lines(check)[2].startswith("[!] " if not check["separates"] else "    ")
    assert not any(line.startswith("[ok]") for line in discriminator_lines(check))
    hostile = {**read_card(run_dir), "discriminator_check": {**stored, "auc": {"x" * 80: 1.0}}}
    with pytest.raises(Exception, match="discriminator_check|does not match|auc"):
        validate_card(hostile)


def test_what_d_learned_is_plain_data_for_the_lesson(atld_run, digits_batch):
    x, y = digits_batch(100)
    out = what_d_learned(atld_run, x, y, seed=0, shares=(0.0, 0.5, 1.0))
    assert json.loads(json.dumps(out, allow_nan=False)) == out  # lists and numbers only
    assert out["n"] == 100 and out["batch_size"] == atld_run.config.resolved_batch_size
    assert len(out["scores"]["separate_natural"]) == len(out["scores"]["eval_perturbed"]) == 100
    assert [c["share"] for c in out["share_curve"]] == [0.0, 0.5, 1.0]
    assert out["sentence"] == separation_sentence(out["separation"], out["separation_own"])
    assert out["steps_pgd"]["inputs"] == "PGD-20" and "McNemar" in out["steps_pgd"]["sentence"]
    again = what_d_learned(atld_run, x, y, seed=0, shares=(0.0, 0.5, 1.0))
    assert again == out  # seeded: the lesson shows the same numbers on a rerun


def test_the_colour_bar_caption_says_when_d_scores_mean_nothing_per_image(atld_run, digits_batch):
    from atld.evaluate.dwords import d_score_caption

    card = {"auc": {"pgd_per_batch": 1.0, "pgd_per_image": 0.35, "own_per_batch": 1.0}}
    text = d_score_caption(card)
    assert text.startswith("D does not judge single images: its AUC natural vs PGD-20 is 0.35 (inverted) per image")
    assert "AUC 1.00 per batch" in text and "more natural than clean ones" in text
    assert d_score_caption({"auc": {"pgd_per_image": 0.9, "pgd_per_batch": 0.9}}) is None
    assert d_score_caption(None) is None
    x, y = digits_batch(60)
    check = discriminator_check(atld_run, x, y, atld_run.spec.epsilon).to_dict()
    assert (d_score_caption(check) is None) == check["separates"]
    assert d_score_caption(check) == d_score_caption(discriminator_card(check, {}))  # fresh or stored, same words


def test_cli_eval_prints_both_aucs_and_the_sentence_and_stores_the_check(atld_run, tmp_path, capsys):
    import shutil

    from atld.cli import main

    run_dir = tmp_path / "digits-atld"
    shutil.copytree(atld_run.path, run_dir)
    before = read_card(run_dir)
    code = main(["eval", "--checkpoint", str(run_dir), "--discriminator-only", "--limit", "60", "--device", "cpu",
                 "--quiet", "--store"])
    out, err = capsys.readouterr()
    assert code == 0 and "per batch" in out and "per image in eval mode" in out
    assert any(s in out for s in ("D judges single images", "D tells batches apart, not images",
                                  "D separates neither"))
    assert "IMT's step" in out and "McNemar" in out and "pixel signs agree with FGSM's" in out
    after = read_card(run_dir)
    assert after["discriminator_check"]["n"] == 60 and after["discriminator_check"]["sentences"]
    assert after.get("evaluations") == before.get("evaluations")  # D's check alone replaces no row
    assert "under 'discriminator_check'" in err
    # the full evaluation prints the same section beside the verdict
    code = main(["eval", "--checkpoint", str(run_dir), "--attacks", "natural", "--limit", "30", "--device", "cpu",
                 "--quiet"])
    out = capsys.readouterr().out
    assert code == 0 and "Discriminator (D) and IMT's step:" in out and "per batch" in out
    assert main(["eval", "--checkpoint", str(run_dir), "--discriminator-only", "--diagnose", "--quiet"]) == 2
