"""No lost work (issue 7, part 2): interrupted saves, SIGTERM + --resume, exact resumption, NaN.

Training here uses small slices of digits (150 train images, batch 50: 3 steps per epoch) so each
run costs well under a second of CPU; the SIGTERM test uses the real CLI on the full digits set.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import atld.checkpoints as checkpoints
from atld.checkpoints import CARD, MODEL, TRAIN_STATE, load_checkpoint, read_card, save_checkpoint
from atld.cli import main as cli_main
from atld.data import ImageData, load_dataset
from atld.errors import CheckpointError, ConfigError, TrainingDiverged
from atld.train import TrainConfig, train
from atld.train.methods import STEP_FUNCTIONS, StepOutput

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: these tiny models gain nothing from more, and on a busy 2-core machine
    idle OpenMP threads spin and burn several times the useful CPU time."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_digits(n_train: int = 150, n_test: int = 40) -> ImageData:
    d = load_dataset("digits")
    return ImageData(d.spec, d.x_train[:n_train], d.y_train[:n_train], d.x_test[:n_test], d.y_test[:n_test])


@pytest.fixture(scope="module")
def data() -> ImageData:
    return tiny_digits()


def tiny_config(**overrides) -> TrainConfig:
    base = dict(dataset="digits", method="atld", epochs=3, batch_size=50, eval_limit=20, device="cpu", seed=7)
    return TrainConfig(**{**base, **overrides})


def tensors_of(result_or_run) -> dict[str, torch.Tensor]:
    out = {f"classifier.{k}": v for k, v in result_or_run.classifier.state_dict().items()}
    if result_or_run.discriminator is not None:
        out.update({f"discriminator.{k}": v for k, v in result_or_run.discriminator.state_dict().items()})
    return out


def assert_identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


def timeless(metrics: list[dict]) -> list[dict]:
    return [{k: v for k, v in m.items() if "seconds" not in k} for m in metrics]


# ----------------------------------------------------------------------------- interrupted saves

@pytest.fixture(scope="module")
def saved_run(tmp_path_factory, data) -> Path:
    run_dir = tmp_path_factory.mktemp("saved") / "run"
    train(tiny_config(epochs=1, eval_limit=0), data=data, run_dir=run_dir)
    return run_dir


class _Boom(OSError):
    pass


def _fail_on_call(real, n: int, partial_write: bool = False):
    """Wrap `real` so that its n-th call fails (after writing half a file, if asked)."""
    calls = {"n": 0}

    def wrapper(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == n:
            if partial_write:  # save_file(tensors, path, ...): leave a torn file behind
                Path(args[1]).write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"torn")
            raise _Boom(f"simulated crash at call {n} of {real.__name__}")
        return real(*args, **kwargs)
    return wrapper


# (what fails, its n-th call, expected epochs_done after reloading: 1 = previous save, 2 = new)
INTERRUPTIONS = {
    "save_file of model (torn file)": ("save_file", 1, True, 1),
    "save_file of train state (torn file)": ("save_file", 2, True, 1),
    "write of card.json.new": ("_fsync_write", 1, False, 1),
    "rename of model": ("replace", 1, False, 2),
    "rename of train state (model already renamed)": ("replace", 2, False, 2),
    "rename of card.json (the commit point)": ("replace", 3, False, 2),
}


@pytest.mark.parametrize("case", list(INTERRUPTIONS))
def test_interrupted_save_leaves_a_loadable_checkpoint(saved_run, tmp_path, monkeypatch, case):
    import shutil

    what, n, torn, expected_epochs = INTERRUPTIONS[case]
    run_dir = tmp_path / "run"
    shutil.copytree(saved_run, run_dir)
    old = load_checkpoint(run_dir, with_train_state=True)
    old_hash = old.model_hash
    new_classifier = old.classifier
    with torch.no_grad():
        for p in new_classifier.parameters():
            p.add_(1.0)  # the "next epoch": different weights, so old and new are distinguishable
    card = {**old.card, "epochs_done": 2}
    if what == "replace":
        monkeypatch.setattr(checkpoints.os, "replace", _fail_on_call(os.replace, n))
    else:
        monkeypatch.setattr(checkpoints, what, _fail_on_call(getattr(checkpoints, what), n, torn))
    with pytest.raises(_Boom):
        save_checkpoint(run_dir, card, new_classifier, old.discriminator, old.train_state)
    monkeypatch.undo()

    run = load_checkpoint(run_dir, with_train_state=True)  # verifies every hash, shape and value
    assert run.card["epochs_done"] == expected_epochs
    if expected_epochs == 1:
        assert run.model_hash == old_hash
    else:
        assert run.model_hash != old_hash
        assert_identical({k: v for k, v in tensors_of(run).items() if k.startswith("classifier.")},
                         {f"classifier.{k}": v for k, v in new_classifier.state_dict().items()})
    assert not list(run_dir.glob("*.new")), "leftover temporary files"


KILL_SCRIPT = textwrap.dedent("""
    import os, sys
    import torch
    import atld.checkpoints as c
    run_dir, kill_at = sys.argv[1], int(sys.argv[2])
    old = c.load_checkpoint(run_dir, with_train_state=True)
    calls = [0]
    real = os.replace
    def replace(a, b):
        calls[0] += 1
        if calls[0] == kill_at:
            os.kill(os.getpid(), 9)  # SIGKILL: no cleanup, no finally, no flush
        real(a, b)
    c.os.replace = replace
    with torch.no_grad():
        for p in old.classifier.parameters():
            p.add_(1.0)
    c.save_checkpoint(run_dir, {**old.card, "epochs_done": 2}, old.classifier, old.discriminator, old.train_state)
""")


def test_save_killed_between_renames_rolls_forward(saved_run, tmp_path):
    """A real process killed (SIGKILL) after renaming the model and before the train state."""
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(saved_run, run_dir)
    out = subprocess.run([sys.executable, "-c", KILL_SCRIPT, str(run_dir), "2"], cwd=REPO,
                         capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == -signal.SIGKILL, out.stderr
    assert (run_dir / f"{CARD}.new").exists() and (run_dir / f"{TRAIN_STATE}.new").exists()
    run = load_checkpoint(run_dir, with_train_state=True)
    assert run.card["epochs_done"] == 2 and not list(run_dir.glob("*.new"))


def test_interrupted_update_card_keeps_a_valid_card(saved_run, tmp_path, monkeypatch):
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(saved_run, run_dir)
    monkeypatch.setattr(checkpoints.os, "replace", _fail_on_call(os.replace, 1))
    with pytest.raises(_Boom):
        checkpoints.update_card(run_dir, evaluations={"pgd20": 0.5})
    monkeypatch.undo()
    run = load_checkpoint(run_dir)  # the complete card.json.new is rolled forward
    assert run.card["evaluations"] == {"pgd20": 0.5}


# ----------------------------------------------------------------------------- exact resumption

@pytest.mark.parametrize("method", ["natural", "atld"])
def test_stopped_then_resumed_equals_uninterrupted(tmp_path, data, method):
    """Stop in the middle of epoch 2, resume to 3 epochs: bit-identical to one 3-epoch run."""
    config = tiny_config(method=method)
    whole = train(config, data=data, run_dir=tmp_path / "whole")

    steps = {"n": 0}

    def stop_in_epoch_2() -> bool:
        steps["n"] += 1
        return steps["n"] == 4  # 3 steps per epoch: the first step of epoch 2

    part = train(config, data=data, run_dir=tmp_path / "part", should_stop=stop_in_epoch_2)
    assert part.status == "stopped" and part.card["epochs_done"] == 1
    assert read_card(tmp_path / "part")["status"] == "stopped"
    resumed = train(config, data=data, run_dir=tmp_path / "part", resume=True)
    assert resumed.status == "finished" and resumed.card["epochs_done"] == 3
    assert_identical(tensors_of(whole), tensors_of(resumed))
    assert timeless(whole.card["metrics"]) == timeless(resumed.card["metrics"])
    on_disk = load_checkpoint(tmp_path / "part", with_train_state=True)
    assert_identical(tensors_of(whole), tensors_of(on_disk))
    assert_identical(load_file(str(tmp_path / "whole" / TRAIN_STATE)), on_disk.train_state)


def test_resume_refuses_a_changed_config(tmp_path, data):
    train(tiny_config(method="natural", epochs=1, eval_limit=0), data=data, run_dir=tmp_path / "r")
    with pytest.raises(CheckpointError, match="cannot resume: lr"):
        train(tiny_config(method="natural", epochs=2, eval_limit=0, lr=0.05), data=data,
              run_dir=tmp_path / "r", resume=True)


def test_sigterm_keeps_last_epoch_and_resume_continues_exactly(tmp_path):
    """The real CLI: SIGTERM mid-run -> exit 130, a resumable checkpoint of the last finished
    epoch, a resume hint; `--resume` continues, and the result equals an uninterrupted run."""
    run_dir = tmp_path / "run"
    flags = ["--dataset", "digits", "--method", "natural", "--batch-size", "50", "--eval-limit", "0",
             "--lr-milestones=", "--seed", "3", "--device", "cpu", "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # the same thread count as this process (see one_thread)
    proc = subprocess.Popen([sys.executable, "-m", "atld", "train", *flags, "--epochs", "500", "--out", str(run_dir)],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            card_path = run_dir / CARD
            if card_path.exists() and json.loads(card_path.read_text())["epochs_done"] >= 1:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert f"resume with: python -m atld train --resume {run_dir}" in err
    stopped = load_checkpoint(run_dir, with_train_state=True)
    k = stopped.card["epochs_done"]
    assert 1 <= k < 500 and stopped.card["status"] == "stopped"

    assert cli_main(["train", "--resume", str(run_dir), "--epochs", str(k + 1), "--quiet"]) == 0
    resumed = load_checkpoint(run_dir, with_train_state=True)
    assert resumed.card["epochs_done"] == k + 1 and resumed.card["status"] == "finished"

    config = TrainConfig(dataset="digits", method="natural", batch_size=50, eval_limit=0, lr_milestones=(),
                         seed=3, device="cpu", epochs=k + 1)
    whole = train(config)
    assert_identical(tensors_of(whole), tensors_of(resumed))


# ----------------------------------------------------------------------------- NaN / inf losses

def _nan_from_call(monkeypatch, method: str, first_bad_call: int, value: float) -> None:
    """Make the method's step report a non-finite loss (and poison the weights, as a real
    divergence does) from its `first_bad_call`-th call on."""
    real = STEP_FUNCTIONS[method]
    calls = {"n": 0}

    def step(ctx, x, y) -> StepOutput:
        calls["n"] += 1
        out = real(ctx, x, y)
        if calls["n"] >= first_bad_call:
            with torch.no_grad():
                for p in ctx.classifier.parameters():
                    p.fill_(value)
            out.loss = torch.full_like(out.loss, value)
        return out
    monkeypatch.setitem(STEP_FUNCTIONS, method, step)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_nonfinite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, data, monkeypatch, value):
    config = tiny_config(method="natural", eval_limit=0, lr_milestones=())  # same lr in a 1- and 3-epoch run
    good = train(config.with_overrides(epochs=1), data=data)  # what epoch 1 gives
    _nan_from_call(monkeypatch, "natural", first_bad_call=5, value=value)  # step 2 of epoch 2
    with pytest.raises(TrainingDiverged) as info:
        train(config, data=data, run_dir=tmp_path / "run")
    message = str(info.value)
    assert "\n" not in message and "epoch 2" in message and "last good checkpoint (epoch 1)" in message
    run = load_checkpoint(tmp_path / "run", with_train_state=True)
    assert run.card["status"] == "diverged" and run.card["epochs_done"] == 1 and run.card["message"] == message
    assert_identical(tensors_of(good), tensors_of(run))


def test_real_divergence_in_first_epoch_via_cli(tmp_path, capsys):
    """A huge lr really diverges; nothing finished, so nothing is claimed to be kept."""
    out = tmp_path / "run"
    code = cli_main(["train", "--dataset", "digits", "--method", "natural", "--epochs", "2", "--lr", "10",
                     "--momentum", "0.99", "--eval-limit", "0", "--device", "cpu", "--quiet", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: training diverged in epoch 1"), err
    assert "no epoch finished" in lines[0] and "kept the last good checkpoint" not in lines[0]
    assert not (out / MODEL).exists()


def test_resume_of_missing_or_foreign_directory_is_one_line(saved_run, tmp_path, capsys):
    assert cli_main(["train", "--resume", str(tmp_path / "nope"), "--quiet"]) == 2
    assert cli_main(["train", "--resume", str(tmp_path), "--quiet"]) == 2
    assert cli_main(["train", "--resume", str(saved_run), "--out", str(tmp_path / "x"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("error: ") for line in err), err
    assert "no checkpoint directory" in err[0] and "no card.json" in err[1] and "either --out or --resume" in err[2]


def test_train_refuses_to_overwrite_an_existing_run(saved_run, tmp_path, capsys):
    before = (saved_run / MODEL).read_bytes()
    code = cli_main(["train", "--dataset", "digits", "--epochs", "1", "--quiet", "--out", str(saved_run)])
    assert code == 2 and "already holds a run" in capsys.readouterr().err
    assert (saved_run / MODEL).read_bytes() == before


def test_config_error_is_not_a_crash():
    with pytest.raises(ConfigError):
        tiny_config(epochs=0)
