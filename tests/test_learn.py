"""The Learn page's lesson (atld/ui/learn.py): every statement follows the numbers given, including
numbers that contradict the story; the attack's path (atld/latent/trajectories.py) and its
animation (atld/latent/path_figure.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from atld.attacks.gradient import AttackConfig
from atld.data.loaders import as_float01
from atld.latent.trajectories import attack_path, embed_path, path_map, path_rows
from atld.ui import learn
from atld.latent.path_figure import IMT_FRAME, path_figure, trajectory_figure

NATURAL = {"two_sample_accuracy": 0.678, "mmd2": 0.0445, "knn_mixing": 0.317}
PGD_AT = {"two_sample_accuracy": 0.553, "mmd2": 0.0062, "knn_mixing": 0.328}
ATLD = {"two_sample_accuracy": 0.640, "mmd2": 0.0262, "knn_mixing": 0.233}


def test_pgd_at_smaller_gap_is_never_credited_to_atld():
    lines = learn.robust_statements({"natural": NATURAL, "pgd-at": PGD_AT, "atld": ATLD})
    text = " ".join(lines)
    assert "The smallest gap by every measure: PGD-AT." in lines
    assert "ATLD does not close the gap more than PGD-AT" in text
    assert "ATLD shrinks the gap by two-sample test accuracy 64.0 % vs 67.8 %, MMD² 0.0262 vs 0.0445, but not by " \
           "kNN mixing 23.3 % vs 31.7 %." in lines
    assert "PGD-AT shrinks the gap by every measure" in text
    assert "smallest gap by every measure: ATLD" not in text


def test_atld_credited_only_when_its_gap_is_smallest():
    better = {"two_sample_accuracy": 0.52, "mmd2": 0.001, "knn_mixing": 0.45}
    lines = learn.robust_statements({"natural": NATURAL, "pgd-at": PGD_AT, "atld": better})
    assert "The smallest gap by every measure: ATLD." in lines
    assert not any("does not close" in line for line in lines)


def test_disagreeing_measures_are_said_to_disagree():
    mixed = {"two_sample_accuracy": 0.50, "mmd2": 0.03, "knn_mixing": 0.2}
    lines = learn.robust_statements({"natural": NATURAL, "pgd-at": PGD_AT, "atld": mixed})
    last = " ".join(lines[-2:])
    assert "ATLD by two-sample test accuracy" in last and "PGD-AT by MMD², kNN mixing" in last
    assert "disagree" in last and "ATLD does not close the gap more than PGD-AT" in last


def test_a_robust_model_with_a_larger_gap_is_said_not_to_shrink_it():
    worse = {"two_sample_accuracy": 0.9, "mmd2": 0.1, "knn_mixing": 0.1}
    lines = learn.robust_statements({"natural": NATURAL, "pgd-at": worse})
    assert lines[0].startswith("PGD-AT does not shrink the gap by any measure")
    assert "The smallest gap by every measure: the natural model." in lines


def test_clouds_statement_counts_the_crossings_and_words_the_gap():
    text = learn.clouds_statement(NATURAL, 299 / 300, 7 / 300, 300)
    assert "292 perturbed points (97.3 %) crossed" in text and "67.8 %" in text
    # 67.8 % two-sample accuracy with 31.7 % kNN mixing is not "clearly apart"
    assert "partly apart, partly overlapping" in text and "clearly apart" not in text
    text = learn.clouds_statement({"two_sample_accuracy": 0.52, "mmd2": 0.0, "knn_mixing": 0.5}, 1.0, 1.0, 100)
    assert "No perturbed point crossed" in text and "hard to tell apart" in text


@pytest.mark.parametrize("two,mixing,words", [
    (0.95, 0.05, "clearly apart"),
    (0.95, 0.25, "partly apart, partly overlapping"),  # a high two-sample accuracy, mixed neighbourhoods
    (0.70, 0.25, "partly apart, partly overlapping"),
    (0.55, 0.20, "partly apart, partly overlapping"),  # near-chance test, but few natural neighbours
    (0.55, 0.45, "hard to tell apart"),
])
def test_cloud_words_follow_both_measures(two, mixing, words):
    assert learn.cloud_words(two, mixing) == words
    assert learn.clouds_apart({"two_sample_accuracy": two, "knn_mixing": mixing}) == (words != "hard to tell apart")


def test_change_words_name_both_numbers_or_say_it_stayed():
    assert learn.change_words(4, 4) == "leaves it at 4"
    assert learn.change_words(4, 6) == "raises it from 4 to 6"
    assert learn.change_words(0.25, 1 / 12, learn.pct) == "lowers it from 25.0 % to 8.3 %"


def test_path_statement_says_what_imt_changed_with_both_numbers():
    text = learn.path_statement(np.array([1.0, 0.6, 0.25]), 1 / 12)
    assert "goes from 100.0 % (natural) to 25.0 % after 2 steps; it is halved after step 2." in text
    assert "One IMT step from the last iterate lowers it from 25.0 % to 8.3 %" in text
    assert "does not bring back" not in text
    assert "raises it from 25.0 % to 50.0 %" in learn.path_statement(np.array([1.0, 0.25]), 0.5)
    assert "leaves it at 25.0 %" in learn.path_statement(np.array([1.0, 0.25]), 0.25)
    assert "IMT" not in learn.path_statement(np.array([1.0, 0.9]), None)
    assert "halved" not in learn.path_statement(np.array([1.0, 0.9]), None)


def test_hypothesis_names_the_steps_that_test_each_part():
    lines = learn.hypothesis_lines()
    assert len(lines) == len(learn.HYPOTHESIS_PARTS) + 1
    for (key, claim, steps), line in zip(learn.HYPOTHESIS_PARTS, lines):
        assert line.startswith(f"({key}) {claim}") and all(f"step {k + 1} (" in line for k in steps)
    assert lines[-1] == f"Step {len(learn.STEPS)} sums up what the numbers showed for each part."
    assert learn.STEPS[0][0].endswith("The hypothesis") and learn.STEPS[-1][0].endswith("What the numbers showed")
    assert any(t.endswith("What D really learned") for t, _ in learn.STEPS)


def test_a_gap_that_does_not_rank_robustness_is_said_so():
    lines = learn.gap_rank_statements({"natural": (0.725, 0.0), "feature-scatter": (0.80, 0.867),
                                       "pgd-at": (0.567, 0.957)}, 300)
    assert lines == ["Feature Scattering keeps 86.7 % of 300 images under PGD-20 with a larger gap (two-sample "
                     "accuracy 80.0 %) than the natural model's (72.5 %), which keeps 0.0 %: here the gap does not "
                     "rank robustness."]
    agree = learn.gap_rank_statements({"natural": (0.7, 0.02), "pgd-at": (0.55, 0.73)}, 300)
    assert len(agree) == 1 and agree[0].startswith("Here the gaps rank the models as their PGD-20 accuracy does")
    assert "PGD-AT 55.0 % / 73.0 %, the natural model 70.0 % / 2.0 %" in agree[0]
    assert learn.gap_rank_statements({"natural": (0.7, 0.02)}, 300) == []
    assert "by definition" in learn.LOGIT_REGIONS


def test_fooled_examples_are_fooled_and_counted():
    labels = np.array([0, 1, 2, 3, 4, 5])
    nat = np.array([0, 1, 9, 3, 4, 5])  # image 2 is wrong before the attack: not "fooled"
    adv = np.array([0, 7, 8, 3, 1, 2])
    chosen = learn.pick_fooled(labels, nat, adv, 4)
    assert chosen.tolist() == [1, 4, 5]
    assert all(nat[j] == labels[j] and adv[j] != labels[j] for j in chosen)
    text = learn.fooled_statement(labels, nat, adv, 0.2, 16)
    assert "fooled 3 of the 5 correctly classified images among the first 6 (60.0 %)" in text
    assert "fooled none" in learn.fooled_statement(labels, nat, nat, 0.2)


def learned(per_image=0.32, per_batch=1.0, mixed=0.24, n=300, batch_size=100, curve=None, steps=None):
    """A synthetic `what_d_learned` dict."""
    def scores(nat, adv):
        return [nat] * 3, [adv] * 3
    sn, sp = scores(0.99, 0.01)
    mn, mp = scores(0.5, 0.55)
    en, ep = scores(0.52, 0.6)
    return {"n": n, "batch_size": batch_size, "epsilon": 0.3,
            "separation": {"per_batch": per_batch, "per_image": per_image, "mixed": mixed, "n": n,
                           "batch_size": batch_size},
            "scores": {"separate_natural": sn, "separate_perturbed": sp, "mixed_natural": mn,
                       "mixed_perturbed": mp, "eval_natural": en, "eval_perturbed": ep},
            "share_curve": curve or [], "steps_pgd": steps}


@pytest.mark.parametrize("auc,words", [(0.9, "D separates natural from PGD-20 latents (AUC 0.90"),
                                       (0.68, "only weakly (AUC 0.68"),
                                       (0.51, "cannot separate natural from PGD-20 latents: its AUC is 0.51 (chance)"),
                                       (0.27, "0.27 (inverted): An AUC below 0.5 is inverted")])
def test_discriminator_statement_words_every_auc(auc, words):
    text = learn.discriminator_statement(learned(per_image=auc), "m")
    assert words in text and "Measured on 300 test images" in text
    assert learn.d_separates(learned(per_image=auc)) == (auc >= 0.75)
    assert "no discriminator" in learn.discriminator_statement(None, "m")


def test_imt_counts_statement_follows_the_counts():
    steps = {"n": 300, "inputs": "PGD-20", "epsilon": 0.3, "correct": {"none": 69, "imt": 57}}
    assert "69 are classified correctly; one IMT step (ε = 0.3) lowers it from 69 to 57." in \
        learn.imt_counts_statement(steps)
    assert "leaves it at 4" in learn.imt_counts_statement(dict(steps, correct={"none": 4, "imt": 4}))


def test_batch_context_statement_names_the_kind_and_the_inverted_aucs():
    text = learn.batch_context_statement(learned())
    assert text.startswith("D tells batches apart, not images")
    assert "natural images average P(natural) 0.99, adversarial 0.01, AUC 1.00" in text
    assert "AUC 0.24 (inverted)" in text and "AUC 0.32 (inverted)" in text and "An AUC below 0.5 is inverted" in text
    assert learn.batch_context_statement(learned(per_image=0.9, mixed=0.9)).startswith("D judges single images")
    neither = learn.batch_context_statement(learned(per_image=0.51, per_batch=0.6, mixed=0.5))
    assert neither.startswith("D separates neither") and "inverted" not in neither


def curve(means, nat, adv):
    shares = np.linspace(0, 1, len(means))
    return [{"share": float(s), "mean": m, "mean_natural": None if s == 1 else a, "mean_perturbed": None if s == 0
             else b} for s, m, a, b in zip(shares, means, nat, adv)]


def test_share_statement_follows_the_batch_or_the_image():
    batch = curve([0.99, 0.5, 0.01], [0.99, 0.51, 0.0], [0.0, 0.49, 0.01])  # every score moves with the share
    now, whole = learn.share_statement(batch, 0.5, 100)
    assert now == ("A batch of 100 with 50.0 % adversarial images: D's mean P(natural) is 0.500 (natural images in "
                   "it 0.510, adversarial images 0.490).")
    assert whole.startswith("D's mean score follows the batch rather than the image: it moves from 0.990 at 0.0 % "
                            "adversarial to 0.010 at 100.0 %") and "at most 0.020" in whole
    assert learn.follows_batch(batch)
    image = curve([0.9, 0.5, 0.1], [0.9, 0.9, 0.0], [0.0, 0.1, 0.1])  # natural high, adversarial low, any batch
    assert learn.share_statement(image, 1.0, 100)[1].startswith("D's score follows the image: inside one batch")
    assert "adversarial images 0.100" in learn.share_statement(image, 1.0, 100)[0]
    assert "natural images in it 0.900" in learn.share_statement(image, 0.0, 100)[0]
    flat = curve([0.5, 0.51, 0.52], [0.5, 0.51, 0.0], [0.0, 0.5, 0.52])
    assert learn.share_statement(flat, 0.4, 100)[1].startswith("D's score barely moves")
    assert not learn.follows_batch(image) and not learn.follows_batch(flat)
    assert learn.share_point(batch, 0.4)["share"] == 0.5


def row(trusted=None, autoattack=None, adaptive=None):
    cell = lambda a: None if a is None else {"accuracy": a, "ci_low": a - 0.02, "ci_high": a + 0.02, "n": 1000}  # noqa: E731
    t = None if trusted is None else dict(cell(trusted[0]), inference=trusted[1], attack="x")
    return {"trusted": t, "autoattack": cell(autoattack), "adaptive_imt": cell(adaptive)}


GAP = lambda two, mixing=0.25: {"two_sample_accuracy": two, "knn_mixing": mixing}  # noqa: E731


def test_model_line_says_gap_d_and_trusted_accuracy():
    m = learn.ModelNumbers("mnist-atld", "atld", GAP(0.687, 0.199), {"per_batch": 1.0, "per_image": 0.32},
                           None, row((0.018, "atld-"), 0.018, 0.01))
    line = learn.model_line(m, 300)
    assert line.startswith("mnist-atld (ATLD): gap: two-sample accuracy 68.7 % on 300 images (clouds partly apart")
    assert "D: AUC 1.00 per batch, 0.32 (inverted) per image (it tells batches apart, not images)" in line
    assert "trusted accuracy 1.8 % (-0.2-3.8, n 1,000), by AutoAttack on the bare classifier" in line
    bare = learn.model_line(learn.ModelNumbers("n", "natural", None, None, None, None), 300)
    assert "no AutoAttack or adaptive evaluation stored: only upper bounds exist" in bare and "gap" not in bare
    imt = learn.model_line(learn.ModelNumbers("a", "atld", None, None, None, row((0.2, "atld"))), 300)
    assert "by the adaptive attack through IMT" in imt


def test_verdict_refutes_the_hypothesis_from_the_numbers():
    steps_bad = {"informative": False}
    models = [learn.ModelNumbers("nat", "natural", GAP(0.725), None, None, row((0.0, "bare"), 0.0)),
              learn.ModelNumbers("pgd", "pgd-at", GAP(0.567, 0.52), None, None, row((0.88, "bare"), 0.88)),
              learn.ModelNumbers("atld", "atld", GAP(0.687, 0.2), {"per_batch": 1.0, "per_image": 0.32}, steps_bad,
                                 row((0.018, "bare"), 0.018, 0.01))]
    lines = learn.verdict_lines(models)
    outcome = dict((line[:3], o) for o, line in lines)
    assert outcome["(a)"] == "holds" and lines[0][1].startswith("(a) Holds in part: on the natural model the attacked "
                                                               "clouds are partly apart, partly overlapping")
    # ATLD: a larger gap than PGD-AT's and a lower trusted accuracy; PGD-AT: smaller and higher → (b) holds
    assert outcome["(b)"] == "holds" and "pgd 56.7 % / 88.0 %" in lines[1][1]
    assert outcome["(c)"] == "fails"
    assert "D's per-image AUC is 0.32 (inverted), though 1.00 per batch" in lines[2][1]
    assert "IMT's step does no better than its reverse" in lines[2][1]
    assert "IMT makes the model less robust" in lines[2][1]
    assert lines[-1] == ("fails", "Verdict: the hypothesis is not borne out on these models; only (a), (b) held.")
    # a model with a larger gap and more trusted robustness: (b) fails
    models[1] = learn.ModelNumbers("fs", "feature-scatter", GAP(0.80), None, None, row((0.5, "bare"), 0.5))
    b = learn.verdict_lines(models)[1]
    assert b[0] == "fails" and b[1].startswith("(b) Not borne out: fs has the larger gap (80.0 % vs 72.5 %)")


def test_verdict_holds_only_when_every_part_does_and_says_what_is_untested():
    good = [learn.ModelNumbers("nat", "natural", GAP(0.95, 0.05), None, None, row((0.0, "bare"), 0.0)),
            learn.ModelNumbers("atld", "atld", GAP(0.55, 0.45), {"per_batch": 1.0, "per_image": 0.9},
                               {"informative": True}, row((0.6, "imt"), 0.5, 0.6))]
    lines = learn.verdict_lines(good)
    assert [o for o, _ in lines] == ["holds"] * 4 and lines[0][1].startswith("(a) Holds: ")
    assert "IMT's step carries information" in lines[2][1] and "less robust" not in lines[2][1]
    assert lines[-1][1] == "Verdict: every part of the hypothesis holds on these models."
    hard = learn.verdict_lines([learn.ModelNumbers("nat", "natural", GAP(0.52, 0.48), None, None, None)])
    assert hard[0][0] == "fails" and "hard to tell apart" in hard[0][1]
    none = learn.verdict_lines([])
    assert [o for o, _ in none] == ["untested"] * 4 and none[-1][1].startswith("Verdict: untested")


def test_player_shows_frame_k_at_the_chosen_speed():
    coords = np.stack([np.full((2, 2), float(k)) for k in range(4)])  # 3 steps, 2 points
    fig = trajectory_figure(coords, np.array([0, 1]), np.array([[0, 1], [0, 1], [1, 1], [1, 0]]), ["a", "b"])
    learn.player_at(fig, 2, 700)
    moving = fig.frames[2].traces[1]
    assert list(fig.data[moving].x) == [2.0, 2.0] and fig.layout.sliders[0].active == 2
    play = next(b for b in fig.layout.updatemenus[0].buttons if "Play" in b.label)
    assert play.args[1]["frame"]["duration"] == 700
    learn.player_at(fig, 99, 80)  # clamped to the last frame
    assert fig.layout.sliders[0].active == 3 and list(fig.data[moving].x) == [3.0, 3.0]


def test_class_legend_uses_the_one_palette():
    from atld.ui.display import CLASS_PALETTE, class_colour

    html = learn.class_legend(["zero", "<b>one</b>"], class_colour)
    assert CLASS_PALETTE[0] in html and CLASS_PALETTE[1] in html and "&lt;b&gt;one" in html


def test_imt_and_adaptive_statements_follow_the_counts():
    y = np.array([0, 1, 2, 3])
    text = learn.imt_statement(y, np.array([0, 1, 2, 9]), np.array([0, 9, 9, 9]))
    assert "the number classified correctly is 3; one IMT step lowers it from 3 to 1" in text
    assert "raises it from 0 to 4" in learn.imt_statement(y, np.array([9, 9, 9, 9]), y)
    assert "leaves it at 4" in learn.imt_statement(y, y, y) and "from 4 to 4" not in learn.imt_statement(y, y, y)
    assert "fools 5 more" in learn.adaptive_statement(16, 14, 5, 0)
    assert "overstates" not in learn.adaptive_statement(16, 14, 5, 5)


@pytest.mark.parametrize("value,expected", [("3", 2), ("9", 8), ("0", 0), ("10", 0), ("x", 0), (None, 0), (" 2 ", 1)])
def test_step_from_query(value, expected):
    assert learn.step_from_query(value) == expected


def test_attack_path_frames_slider_and_imt_step(latent_runs, digits):
    x, y = as_float01(digits.x_test[:6]), digits.y_test[:6]
    steps = 5
    for has_d, run in latent_runs.items():
        path = attack_path(run, x, y, AttackConfig("pgd", 0.2, steps=steps))
        assert path.logits.shape[:2] == (steps + 1, 6) and (path.imt_logits is not None) == has_d
        # step 0 is the natural image, the last the attack's own result (same seed)
        ref = torch.Generator().manual_seed(0)
        from atld.attacks.gradient import run_attack
        with torch.no_grad():
            assert torch.allclose(path.logits[0], run.classifier(x))
            last = run.classifier(run_attack(run.classifier, x, y, AttackConfig("pgd", 0.2, steps=steps), ref))
        assert torch.allclose(path.logits[-1], last, atol=1e-5)
        coords, imt, _ = embed_path(path)
        fig = trajectory_figure(coords, path.labels.numpy(), path.preds.numpy(), [str(c) for c in range(10)],
                                imt_coords=imt, imt_preds=None if imt is None else path.imt_preds.numpy())
        names = [f.name for f in fig.frames]
        assert len(fig.frames) == steps + 1 + has_d and names[:steps + 1] == [str(k) for k in range(steps + 1)]
        assert (names[-1] == IMT_FRAME) == has_d
        assert len(fig.layout.sliders[0].steps) == len(fig.frames)
        labels = [b.label for b in fig.layout.updatemenus[0].buttons]
        assert any("Play" in lab for lab in labels) and any("Pause" in lab for lab in labels)
        # the frame of step k draws the points where the path's step k put them
        assert np.allclose(fig.frames[3].data[1].x, coords[3, :, 0])


def test_path_map_rows_cover_every_step(latent_runs, digits):
    run = latent_runs[True]
    x, y = as_float01(digits.x_test[:4]), digits.y_test[:4]
    pm = path_map(run, x, y, AttackConfig("pgd", 0.2, steps=3), [10, 11, 12, 13], 0, as_float01(digits.x_test[:30]),
                  digits.y_test[:30])
    rows = path_rows(pm, tuple(str(c) for c in range(10)))
    assert len(rows) == 4 * (3 + 1) + 4 and {r["step"] for r in rows} == {"0", "1", "2", "3", "imt"}
    assert [r["index"] for r in rows[:4]] == [10, 11, 12, 13] and pm.background.shape == (30, 2)
    fig = path_figure(pm.path, pm.coords, pm.imt_coords, pm.background, pm.background_labels,
                      tuple(str(c) for c in range(10)))
    assert len(fig.frames) == 5
