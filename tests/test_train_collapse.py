"""Collapse detection: a run whose classifier collapses to one class stops with one line, keeps the
last good epoch's checkpoint and is marked "collapsed" in its card."""

from __future__ import annotations

import math

import pytest
import torch

from atld.cli import main as cli_main
from atld.config.train import TrainConfig
from atld.errors import TrainingCollapsed
from atld.runs.card import read_card
from atld.runs.store import load_checkpoint
from atld.train.metrics import collapse_message
from atld.train.trainer import train
from atld.ui.display import collapse_note, status_badge
from tests.support import COLLAPSE_CLASS


def _config(**changes) -> TrainConfig:
    return TrainConfig(**{"method": "natural", "epochs": 4, "batch_size": 50, "eval_limit": 100, "device": "cpu",
                          "lr_schedule": "constant",  # epoch 1 the same whatever the number of epochs
                          **changes})


def test_a_collapsing_run_stops_keeps_the_last_good_epoch_and_says_so(small_digits, tmp_path, collapsing_natural):
    data = small_digits(200, 100)
    collapsing_natural["epoch_steps"] = 4
    with pytest.raises(TrainingCollapsed) as caught:
        train(_config(), data=data, run_dir=tmp_path / "run")
    message = str(caught.value)
    assert "\n" not in message and message.startswith("training collapsed at epoch 2: 100 % of test predictions "
                                                      f"are class {COLLAPSE_CLASS}")
    assert "lower --lr" in message and "last good epoch 1" in message
    card = read_card(tmp_path / "run")
    assert card["status"] == "collapsed" and card["collapse"] == message and card["epochs_done"] == 1
    assert collapse_note(card) == message and status_badge(card["status"]) == "⚠ collapsed"
    # the checkpoint on disk is epoch 1's: the same weights as a 1-epoch run of the same seed
    collapsing_natural["epoch_steps"] = None  # the reference run trains normally
    reference = train(_config(epochs=1, stop_on_collapse=False), data=data).classifier.state_dict()
    saved = load_checkpoint(tmp_path / "run").classifier.state_dict()
    assert all(torch.equal(saved[k], reference[k].cpu()) for k in reference)
    assert not torch.equal(saved["head.bias"], torch.nn.functional.one_hot(torch.tensor(COLLAPSE_CLASS), 10) * 10.0)


def test_a_single_class_epoch_inside_the_ramp_is_not_the_one_kept(small_digits, tmp_path, collapsing_natural):
    data = small_digits(200, 100)
    collapsing_natural["epoch_steps"] = 4  # one class from epoch 2; the ε ramp ends after epoch 2.5
    with pytest.raises(TrainingCollapsed) as caught:
        train(_config(epsilon_ramp_epochs=2.5), data=data, run_dir=tmp_path / "run")
    assert str(caught.value).startswith("training collapsed at epoch 3") and "last good epoch 1" in str(caught.value)
    card = read_card(tmp_path / "run")
    assert card["status"] == "collapsed" and card["epochs_done"] == 1 and card["metrics"][-1]["top_class_share"] < 0.99
    collapsing_natural["epoch_steps"] = None
    reference = train(_config(epochs=1, stop_on_collapse=False), data=data).classifier.state_dict()
    saved = load_checkpoint(tmp_path / "run").classifier.state_dict()
    assert all(torch.equal(saved[k], reference[k].cpu()) for k in reference)


def test_the_cli_exits_2_with_one_line(small_digits, tmp_path, collapsing_natural, capsys, monkeypatch):
    data = small_digits(200, 100)
    monkeypatch.setattr("atld.data.loaders.load_dataset", lambda *a, **k: data)
    collapsing_natural["epoch_steps"] = 4
    code = cli_main(["train", "--dataset", "digits", "--method", "natural", "--epochs", "4", "--batch-size", "50",
                     "--eval-limit", "100", "--device", "cpu", "--quiet", "--out", str(tmp_path / "run")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: training collapsed at epoch 2"), lines
    assert read_card(tmp_path / "run")["status"] == "collapsed"


def test_stop_on_collapse_false_trains_on(small_digits, collapsing_natural):
    collapsing_natural["epoch_steps"] = 4
    result = train(_config(epochs=3, stop_on_collapse=False), data=small_digits(200, 100))
    assert result.status == "finished" and result.card["metrics"][-1]["top_class_share"] == 1.0


def test_collapse_rule():
    config = TrainConfig(dataset="mnist", epochs=10)  # ε ramp: 2 epochs
    healthy = {"top_class_share": 0.12, "top_class": 1, "loss_ce": 0.4}
    one_class = {"top_class_share": 0.995, "top_class": 7, "loss_ce": 1.0}
    chance = {"top_class_share": 0.3, "top_class": 7, "loss_ce": math.log(10) + 0.01}
    assert collapse_message(config, {"epoch": 3, **healthy}) is None
    assert collapse_message(config, {"epoch": 2, **one_class}) is None  # still inside the ε ramp
    assert collapse_message(config, {"epoch": 3, **one_class}).startswith(
        "training collapsed at epoch 3: 100 % of test predictions are class 7")
    assert "loss sits at 2.31 (ln 10 = 2.30)" in collapse_message(config, {"epoch": 3, **chance})
    digits = TrainConfig()
    assert collapse_message(digits, {"epoch": 1, **one_class}) is None  # never in the first epoch
    assert collapse_message(digits, {"epoch": 2, "loss": math.log(10)}) is not None  # no evaluation: the loss alone
