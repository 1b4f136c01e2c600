"""Run directories (atld/runs): exact round trip, validation, one-line errors for broken files.
(Hostile files are covered in depth by tests/test_security.py, writers by tests/test_rundir.py.)"""

import hashlib
import json

import pytest
import torch

from atld.config.train import TrainConfig
from atld.errors import CheckpointError, ConfigError
from atld.models import SMALL_DISCRIMINATOR, Discriminator, build_classifier
from atld.runs.card import CARD, list_runs, read_card, safe_run_name
from atld.runs.rundir import update_card
from atld.runs.store import load_checkpoint, save_checkpoint
from atld.train.trainer import _make_card


def _saved_run(path, digits, method="atld"):
    config = TrainConfig(method=method, epochs=1)
    torch.manual_seed(1)
    f = build_classifier("small-cnn", config.spec)
    d = Discriminator(10, SMALL_DISCRIMINATOR) if method == "atld" else None
    if d is not None:  # give BatchNorm non-trivial running statistics
        d.train()
        d(torch.randn(32, 10) * 3)
    card = _make_card(config, digits, "unit", None)
    card.update(epochs_done=1, status="finished", metrics=[{"epoch": 1, "loss": 1.0}])
    save_checkpoint(path, card, f, d)
    return f, d


def test_round_trip_is_exact(tmp_path, digits):
    f, d = _saved_run(tmp_path / "run", digits)
    run = load_checkpoint(tmp_path / "run")
    for a, b in ((f, run.classifier), (d, run.discriminator)):
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys()
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert run.card["method"] == "atld" and run.config.method == "atld"
    assert run.card["config"]["epsilon"] == 0.2  # the resolved config is stored
    assert not run.classifier.training and not run.discriminator.training
    x = torch.rand(4, 1, 8, 8)
    assert torch.equal(f.eval()(x), run.classifier(x))
    for key in ("versions", "created", "seed", "sha256"):
        assert key in run.card
    assert run.card["versions"]["torch"] == torch.__version__


def test_natural_run_has_no_discriminator(tmp_path, digits):
    _saved_run(tmp_path / "nat", digits, method="natural")
    run = load_checkpoint(tmp_path / "nat")
    assert run.discriminator is None and run.card["has_discriminator"] is False


def test_truncated_model_file_is_a_clear_error(tmp_path, digits, run_file):
    _saved_run(tmp_path / "run", digits)
    path = run_file(tmp_path / "run")
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="SHA-256"):
        load_checkpoint(tmp_path / "run")


def test_corrupt_header_is_a_clear_error_even_with_a_matching_hash(tmp_path, digits, run_file):
    _saved_run(tmp_path / "run", digits)
    path = run_file(tmp_path / "run")
    path.write_bytes(b"\xff" * 64)
    card = json.loads((tmp_path / "run" / CARD).read_text())
    card["sha256"][path.name] = hashlib.sha256(b"\xff" * 64).hexdigest()
    (tmp_path / "run" / CARD).write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_checkpoint(tmp_path / "run")


def test_architecture_mismatch_is_a_clear_error(tmp_path, digits):
    _saved_run(tmp_path / "run", digits)
    card = json.loads((tmp_path / "run" / CARD).read_text())
    card["config"]["d_widths"] = [16, 32, 128]  # the file holds a (16, 32, 64) discriminator
    (tmp_path / "run" / CARD).write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match="shape mismatch|do not match"):
        load_checkpoint(tmp_path / "run")


def test_card_that_fails_the_schema(tmp_path, digits):
    _saved_run(tmp_path / "run", digits)
    card = json.loads((tmp_path / "run" / CARD).read_text())
    card["epochs_done"] = "many"
    (tmp_path / "run" / CARD).write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match="epochs_done"):
        read_card(tmp_path / "run")


def test_missing_directory_and_missing_card(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint directory"):
        load_checkpoint(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="not a checkpoint"):
        load_checkpoint(tmp_path / "empty")


def test_update_card_keeps_tensors_and_adds_fields(tmp_path, digits, run_file):
    _saved_run(tmp_path / "run", digits)
    before = run_file(tmp_path / "run").read_bytes()
    row = {"attack": "pgd20", "inference": "atld-", "protocol": "direct", "accuracy": 0.5, "correct": 50, "n": 100,
           "ci_low": 0.4, "ci_high": 0.6, "epsilon": 0.2}
    update_card(tmp_path / "run", evaluations={"format": "atld-eval", "version": 1, "rows": [row]})
    assert run_file(tmp_path / "run").read_bytes() == before
    assert load_checkpoint(tmp_path / "run").card["evaluations"]["rows"][0]["accuracy"] == 0.5


def test_list_runs_and_run_names(tmp_path, digits):
    _saved_run(tmp_path / "b", digits)
    _saved_run(tmp_path / "a", digits, method="natural")
    (tmp_path / "junk").mkdir()
    assert [p.name for p in list_runs(tmp_path)] == ["a", "b"]
    assert safe_run_name("digits-atld_2.v1") == "digits-atld_2.v1"
    for bad in ("../x", "/etc", "a/b", "..", ".hidden", "", "x" * 65, "a\\b", "a b"):
        with pytest.raises(ConfigError):
            safe_run_name(bad)
