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
    assert "292 perturbed points (97.3 %) crossed" in text and "clearly apart" in text and "67.8 %" in text
    text = learn.clouds_statement({"two_sample_accuracy": 0.52, "mmd2": 0.0, "knn_mixing": 0.5}, 1.0, 1.0, 100)
    assert "No perturbed point crossed" in text and "hard to tell apart" in text


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


def test_discriminator_statement_says_when_d_cannot_separate():
    check = {"auc_pgd": 0.51, "separates": False, "separation_auc": 0.75, "n": 200, "p_pgd": (0.4, 0.5, 0.6),
             "p_pgd_after_imt": 0.52}
    assert "cannot separate" in learn.discriminator_statement(check, "m")
    assert "only weakly" in learn.discriminator_statement(dict(check, auc_pgd=0.68), "m")
    assert "D separates" in learn.discriminator_statement(dict(check, auc_pgd=0.9, separates=True), "m")
    assert "no discriminator" in learn.discriminator_statement(None, "m")


def test_imt_and_adaptive_statements_follow_the_counts():
    y = np.array([0, 1, 2, 3])
    assert "lowers the correct count from 3 to 1" in learn.imt_statement(y, np.array([0, 1, 2, 9]),
                                                                         np.array([0, 9, 9, 9]))
    assert "raises" in learn.imt_statement(y, np.array([9, 9, 9, 9]), y)
    assert "fools 5 more" in learn.adaptive_statement(16, 14, 5, 0)
    assert "overstates" not in learn.adaptive_statement(16, 14, 5, 5)


@pytest.mark.parametrize("value,expected", [("3", 2), ("6", 5), ("0", 0), ("7", 0), ("x", 0), (None, 0), (" 2 ", 1)])
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
