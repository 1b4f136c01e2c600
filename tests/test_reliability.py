"""No lost work: interrupted and failed saves, SIGTERM + --resume, exact resumption, NaN.

Training here uses small slices of digits (150 train images, batch 50: 3 steps per epoch) so each
run costs well under a second of CPU; the SIGTERM test uses the real CLI on the full digits set.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import atld.runs.store as store
from atld.cli import main as cli_main
from atld.config.train import TrainConfig
from atld.errors import CheckpointError, ConfigError, TrainingDiverged
from atld.methods import METHODS, StepOutput
from atld.runs.card import CARD, TENSOR_FILE, read_card
from atld.runs.rundir import RunWriter, update_card
from atld.runs.store import load_checkpoint, save_checkpoint
from atld.train.trainer import train

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data(small_digits):
    return small_digits(150, 40)


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


def leftovers(run_dir: Path) -> list[str]:
    """Files a save of ours may leave behind: temporary files and tensor files the card does not name."""
    named = set(read_card(run_dir)["files"].values())
    return sorted(p.name for p in run_dir.iterdir()
                  if ".tmp-" in p.name or (TENSOR_FILE.match(p.name) and p.name not in named))


# ----------------------------------------------------------------------------- interrupted saves

@pytest.fixture(scope="module")
def saved_run(tmp_path_factory, data) -> Path:
    run_dir = tmp_path_factory.mktemp("saved") / "run"
    train(tiny_config(epochs=1, eval_limit=0), data=data, run_dir=run_dir)
    return run_dir


class _Boom(OSError):
    pass


def _fail_on_call(real, n: int):
    """Wrap `real` so that its n-th call fails instead of running."""
    calls = {"n": 0}

    def wrapper(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == n:
            raise _Boom(errno.EIO, f"simulated crash at call {n} of {real.__name__}")
        return real(*args, **kwargs)
    return wrapper


# (the os call that fails, its n-th call, epochs_done a reader then sees: 1 = the previous save)
INTERRUPTIONS = {
    "rename of the new model file": ("replace", 1, 1),
    "rename of the new train state file": ("replace", 2, 1),
    "rename of card.json (the commit point)": ("replace", 3, 1),
    "fsync of the model file": ("fsync", 1, 1),
    "removal of the files the previous card named (after the commit)": ("unlink", 2, 2),  # 1: the probe
}


@pytest.mark.parametrize("case", list(INTERRUPTIONS))
def test_interrupted_save_keeps_a_complete_checkpoint(saved_run, tmp_path, monkeypatch, case):
    what, n, expected_epochs = INTERRUPTIONS[case]
    run_dir = tmp_path / "run"
    shutil.copytree(saved_run, run_dir)
    old = load_checkpoint(run_dir, with_train_state=True)
    new_classifier = old.classifier
    with torch.no_grad():
        for p in new_classifier.parameters():
            p.add_(1.0)  # the "next epoch": different weights, so old and new are distinguishable
    card, state = {**old.card, "epochs_done": 2}, {**old.train_state, "epochs_done": torch.tensor([2])}
    monkeypatch.setattr(os, what, _fail_on_call(getattr(os, what), n))
    try:
        save_checkpoint(run_dir, card, new_classifier, old.discriminator, state)
        saved = True
    except CheckpointError as exc:
        assert "\n" not in str(exc) and "saving to" in str(exc)
        saved = False
    monkeypatch.undo()
    assert saved == (expected_epochs == 2)
    run = load_checkpoint(run_dir, with_train_state=True)  # verifies every hash, shape and value
    assert run.card["epochs_done"] == expected_epochs
    if expected_epochs == 1:
        assert run.model_hash == old.model_hash
    else:
        assert_identical({k: v for k, v in tensors_of(run).items() if k.startswith("classifier.")},
                         {f"classifier.{k}": v for k, v in new_classifier.state_dict().items()})
    with RunWriter.claim(run_dir, new=False):  # a writer finishes what is left, if anything
        pass
    assert leftovers(run_dir) == [] and load_checkpoint(run_dir).card["epochs_done"] == expected_epochs


KILL_SCRIPT = textwrap.dedent("""
    import os, sys
    import torch
    import atld.runs.store as store
    run_dir, kill_at = sys.argv[1], int(sys.argv[2])
    old = store.load_checkpoint(run_dir, with_train_state=True)
    calls = [0]
    real = os.replace
    def replace(a, b):
        calls[0] += 1
        if calls[0] == kill_at:
            os.kill(os.getpid(), 9)  # SIGKILL: no cleanup, no finally, no flush
        real(a, b)
    os.replace = replace
    with torch.no_grad():
        for p in old.classifier.parameters():
            p.add_(1.0)
    store.save_checkpoint(run_dir, {**old.card, "epochs_done": 2}, old.classifier, old.discriminator,
                          {**old.train_state, "epochs_done": torch.tensor([2])})
""")


@pytest.mark.parametrize("kill_at, expected_epochs", [(2, 1), (3, 1)])
def test_save_killed_midway_leaves_the_previous_checkpoint(saved_run, tmp_path, kill_at, expected_epochs):
    """A real process killed (SIGKILL) after renaming the new model file (2: before the train state,
    3: before the card): readers see the previous save, untouched; the next writer removes the
    new save's files and saves again."""
    run_dir = tmp_path / "run"
    shutil.copytree(saved_run, run_dir)
    out = subprocess.run([sys.executable, "-c", KILL_SCRIPT, str(run_dir), str(kill_at)], cwd=REPO,
                         capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == -signal.SIGKILL, out.stderr
    assert leftovers(run_dir), "the killed save left nothing behind?"
    before = sorted(p.name for p in run_dir.iterdir())
    run = load_checkpoint(run_dir, with_train_state=True)
    assert run.card["epochs_done"] == expected_epochs
    assert sorted(p.name for p in run_dir.iterdir()) == before  # reading changed nothing
    save_checkpoint(run_dir, {**run.card, "epochs_done": 2}, run.classifier, run.discriminator,
                    {**run.train_state, "epochs_done": torch.tensor([2])})
    assert leftovers(run_dir) == [] and load_checkpoint(run_dir, with_train_state=True).card["epochs_done"] == 2


def test_interrupted_card_update_keeps_the_previous_card(saved_run, tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    shutil.copytree(saved_run, run_dir)
    rows = {"format": "atld-eval", "version": 1, "rows": []}
    monkeypatch.setattr(os, "replace", _fail_on_call(os.replace, 1))
    with pytest.raises(CheckpointError, match="updating"):
        update_card(run_dir, evaluations=rows)
    monkeypatch.undo()
    assert "evaluations" not in load_checkpoint(run_dir).card
    update_card(run_dir, evaluations=rows)
    assert load_checkpoint(run_dir).card["evaluations"] == rows and leftovers(run_dir) == []


@pytest.mark.parametrize("failure", [errno.ENOSPC, errno.EROFS, errno.EACCES])
def test_a_save_that_cannot_be_written_keeps_the_last_epoch_and_says_why(tmp_path, data, monkeypatch, failure):
    """Epoch 2's save fails (a full disk, a folder made read-only): one line, epoch 1 stays loadable,
    and the card says what happened."""
    real, calls = store.atomic_write, {"n": 0}

    def write(path, payload):
        calls["n"] += 1
        if calls["n"] > 3:  # epoch 1 wrote the model, the train state and the card
            raise OSError(failure, os.strerror(failure), str(path))
        return real(path, payload)

    monkeypatch.setattr(store, "atomic_write", write)
    with pytest.raises(CheckpointError) as info:
        train(tiny_config(method="natural", eval_limit=0), data=data, run_dir=tmp_path / "run")
    message = str(info.value)
    assert "\n" not in message and "kept the checkpoint of epoch 1" in message
    assert {errno.ENOSPC: "no space left", errno.EROFS: "read-only", errno.EACCES: "permission denied"}[failure] \
        in message
    monkeypatch.undo()
    run = load_checkpoint(tmp_path / "run", with_train_state=True)
    assert run.card["epochs_done"] == 1 and run.card["status"] == "failed" and run.card["message"] == message
    assert leftovers(tmp_path / "run") == []


def test_resume_into_a_folder_that_cannot_be_written_fails_before_any_step(saved_run, tmp_path, monkeypatch, data):
    run_dir = tmp_path / "run"
    shutil.copytree(saved_run, run_dir)
    real_open, steps = os.open, []

    def deny_new_files(path, flags, *args, **kwargs):
        if flags & os.O_CREAT:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", deny_new_files)
    monkeypatch.setitem(METHODS, "atld", dataclasses.replace(METHODS["atld"], step=lambda *a: steps.append(1)))
    with pytest.raises(CheckpointError, match="permission denied"):
        train(tiny_config(epochs=2, eval_limit=0), data=data, run_dir=run_dir, resume=True)
    assert steps == []


def test_too_little_disk_space_is_found_before_training(tmp_path, data, monkeypatch):
    import shutil as shutil_module

    monkeypatch.setattr(shutil_module, "disk_usage", lambda path: shutil_module._ntuple_diskusage(10**9, 10**9, 1000))
    with pytest.raises(CheckpointError, match="are free"):
        train(tiny_config(eval_limit=0), data=data, run_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()  # the new run that never saved leaves no folder


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
    whole_state = tmp_path / "whole" / read_card(tmp_path / "whole")["files"]["train_state"]
    assert_identical(load_file(str(whole_state)), on_disk.train_state)


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
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # the same thread count as this process (conftest)
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
    real = METHODS[method].step
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
    monkeypatch.setitem(METHODS, method, dataclasses.replace(METHODS[method], step=step))


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
    assert not out.exists()  # nothing was saved, and the new folder was removed again


def test_resume_of_missing_or_foreign_directory_is_one_line(saved_run, tmp_path, capsys):
    assert cli_main(["train", "--resume", str(tmp_path / "nope"), "--quiet"]) == 2
    assert cli_main(["train", "--resume", str(tmp_path), "--quiet"]) == 2
    assert cli_main(["train", "--resume", str(saved_run), "--out", str(tmp_path / "x"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("error: ") for line in err), err
    assert "no checkpoint directory" in err[0] and "no card.json" in err[1] and "either --out or --resume" in err[2]


def test_train_refuses_to_overwrite_an_existing_run(saved_run, tmp_path, capsys):
    before = {p.name: p.read_bytes() for p in saved_run.iterdir()}
    code = cli_main(["train", "--dataset", "digits", "--epochs", "1", "--quiet", "--out", str(saved_run)])
    assert code == 2 and "already holds a run" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in saved_run.iterdir()} == before


def test_config_error_is_not_a_crash():
    with pytest.raises(ConfigError):
        tiny_config(epochs=0)
