"""`python -m atld train`: a real run directory, one-line errors, resume."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from atld.cli import main

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "atld", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=600)


def test_train_writes_a_run_directory_and_resume_continues_it(tmp_path):
    out = tmp_path / "run"
    code = main(["train", "--dataset", "digits", "--method", "atld", "--epochs", "1", "--out", str(out),
                 "--eval-limit", "50", "--quiet"])
    assert code == 0
    card = json.loads((out / "card.json").read_text())
    assert card["epochs_done"] == 1 and card["status"] == "finished" and card["method"] == "atld"
    assert (out / card["files"]["model"]).stat().st_size > 1000
    assert {"loss_ce", "loss_gap", "s", "d_acc", "d_auc", "train_clean_acc", "train_perturbed_acc",
            "test_clean_acc", "test_pgd20_acc"} <= set(card["metrics"][0])
    assert main(["train", "--resume", str(out), "--epochs", "2", "--quiet"]) == 0
    card = json.loads((out / "card.json").read_text())
    assert card["epochs_done"] == 2 and [m["epoch"] for m in card["metrics"]] == [1, 2]


@pytest.mark.parametrize("args,reason", [
    (["--epochs", "0"], "epochs must be >= 1"),
    (["--epochs", "two"], "invalid int value"),
    (["--epsilon", "1.5"], "epsilon must be in [0.0, 1.0]"),
    (["--epsilon", "nan"], "epsilon must be finite"),
    (["--dataset", "imagenet"], "unknown dataset"),
    (["--method", "magic"], "unknown method"),
    (["--batch-size", "5000"], "above the training set size"),
    (["--dataset", "mnist", "--data-root", "/nonexistent/data"], "does not exist"),
    (["--arch", "resnet-9000"], "unknown architecture"),
    (["--resume", "/nonexistent/run"], "no checkpoint directory"),
])
def test_bad_input_exits_nonzero_with_one_line(args, reason, tmp_path):
    result = run_cli("train", "--out", str(tmp_path / "r"), "--quiet", *args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and reason in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_refuses_to_overwrite_an_existing_run(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--epochs", "1", "--out", str(out), "--eval-limit", "0", "--quiet",
                 "--method", "natural"]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert main(["train", "--epochs", "1", "--out", str(out), "--quiet", "--method", "natural"]) == 2
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_refuses_a_folder_that_is_not_a_run_and_leaves_it_alone(tmp_path, capsys):
    """--out into a user's folder: refused in one line, even if it holds a file named like ours."""
    out = tmp_path / "my-photos"
    out.mkdir()
    (out / "model.safetensors").write_bytes(b"the user's own file")
    (out / "holiday.jpg").write_bytes(b"jpeg")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert main(["train", "--epochs", "1", "--out", str(out), "--quiet", "--method", "natural"]) == 2
    assert "not a run directory of the lab" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_the_default_run_directory_is_the_runs_directory(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ATLD_RUNS_DIR", str(tmp_path / "my-runs"))
    assert main(["train", "--method", "natural", "--epochs", "1", "--eval-limit", "0", "--quiet"]) == 0
    (run,) = (tmp_path / "my-runs").iterdir()
    assert run.name.startswith("digits-natural-") and f"saved {run}" in capsys.readouterr().out
