"""Who may write a run directory (atld/runs/rundir.py): only runs of ours, one writer at a time,
created exclusively, and readers that never get in a writer's way."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from atld.config.train import TrainConfig
from atld.errors import ATLDError, CheckpointError, ConfigError
from atld.runs.card import CARD, MARKER
from atld.runs.rundir import RunWriter, create_run_dir, is_ours, remove_if_unused
from atld.runs.store import load_checkpoint
from atld.train.trainer import train

REPO = Path(__file__).resolve().parents[1]


def test_creation_is_exclusive_and_marks_the_directory_ours(tmp_path):
    run = create_run_dir(tmp_path / "a" / "run")
    assert is_ours(run) and sorted(p.name for p in run.iterdir()) == [MARKER]
    for taken in (run, tmp_path / "a"):
        with pytest.raises(FileExistsError):
            create_run_dir(taken)
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    with pytest.raises(FileExistsError):  # a planted link is "taken", never followed
        create_run_dir(tmp_path / "link")
    assert not (tmp_path / "elsewhere").exists()


@pytest.mark.parametrize("marker", [None, b"", b'{"format": "something-else"}', "fifo", "dir", "link"])
def test_only_the_exact_marker_makes_a_directory_ours(tmp_path, marker):
    d = tmp_path / "d"
    d.mkdir()
    if marker == "fifo":
        os.mkfifo(d / MARKER)
    elif marker == "dir":
        (d / MARKER).mkdir()
    elif marker == "link":
        create_run_dir(tmp_path / "real")
        (d / MARKER).symlink_to(tmp_path / "real" / MARKER)
    elif marker is not None:
        (d / MARKER).write_bytes(marker)
    assert not is_ours(d)  # no hang on the FIFO
    with pytest.raises(ConfigError, match="not a run directory of the lab"):
        RunWriter.claim(d, new=True)


def test_one_writer_at_a_time_and_the_lock_is_released(tmp_path):
    with RunWriter.claim(tmp_path / "run", new=True):
        with pytest.raises(CheckpointError, match="being written by another process"):
            RunWriter.claim(tmp_path / "run", new=True)
    RunWriter.claim(tmp_path / "run", new=True).close()  # free again


def test_a_new_run_that_never_saved_leaves_no_folder(tmp_path):
    run = create_run_dir(tmp_path / "run")
    (run / "card.json.tmp-0123456789abcdef").write_bytes(b"half")
    assert remove_if_unused(run) and not run.exists()
    kept = create_run_dir(tmp_path / "kept")
    (kept / "notes.txt").write_text("the user's")
    assert not remove_if_unused(kept) and (kept / "notes.txt").exists()
    with RunWriter.claim(tmp_path / "busy", new=True):
        assert not remove_if_unused(tmp_path / "busy")  # someone is writing it


def train_command(epochs: int, out: Path) -> list[str]:
    return [sys.executable, "-m", "atld", "train", "--dataset", "digits", "--method", "natural", "--epochs",
            str(epochs), "--eval-limit", "0", "--device", "cpu", "--quiet", "--out", str(out)]


@pytest.mark.slow  # over 10 s
def test_two_trainings_into_one_folder_one_trains_the_other_is_refused(tmp_path):
    """Four real processes started at once with the same --out: exactly one trains, the others
    exit 2 with one line; the run it saves loads."""
    out = tmp_path / "same"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen(train_command(3, out), cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(4)]
    results = [(p.wait(timeout=600), *p.communicate()) for p in procs]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 2, 2, 2], [(c, e[-300:]) for c, _, e in results]
    for code, _, err in results:
        if code == 2:
            assert err.count("\n") == 1 and ("being written by another process" in err or "already holds a run" in err)
    assert load_checkpoint(out).card["epochs_done"] == 3


def test_a_reader_polling_a_run_while_it_trains_always_sees_a_complete_save(tmp_path, small_digits):
    """A thread loads the run as fast as it can while another trains it, saving every epoch: every
    read gives a complete, verified save with epochs_done never going back, or (rarely) a one-line
    "changed while it was read"; the trainer is never disturbed."""
    run_dir = tmp_path / "run"
    config = TrainConfig(method="natural", epochs=12, batch_size=50, eval_limit=0, device="cpu")
    data = small_digits(150, 20)
    done, seen, refused, other = threading.Event(), [], [], []

    def reader():
        while not done.is_set():
            try:
                seen.append(load_checkpoint(run_dir, with_train_state=True).card["epochs_done"])
            except CheckpointError as exc:
                refused.append(str(exc))
            except Exception as exc:  # noqa: BLE001 - collected and asserted empty
                other.append(exc)

    train(config.with_overrides(epochs=1), data=data, run_dir=run_dir)  # a first save to read
    thread = threading.Thread(target=reader)
    thread.start()
    try:
        result = train(config, data=data, run_dir=run_dir, resume=True)
    finally:
        done.set()
        thread.join(60)
    assert result.status == "finished" and not other, other
    assert seen and seen == sorted(seen) and seen[-1] <= 12
    assert all("\n" not in r and ("changed while" in r or "kept changing" in r) for r in refused), refused[:3]
    assert load_checkpoint(run_dir).card["epochs_done"] == 12


def test_resume_needs_a_run_of_ours(tmp_path, small_digits):
    d = tmp_path / "stranger"
    d.mkdir()
    (d / CARD).write_text("{}")
    with pytest.raises(ATLDError) as info:
        train(TrainConfig(method="natural", epochs=2, eval_limit=0, device="cpu"), data=small_digits(),
              run_dir=d, resume=True)
    assert "not a run directory of the lab" in str(info.value)
    assert sorted(p.name for p in d.iterdir()) == [CARD]


def test_the_writer_lock_does_not_outlive_a_killed_process(tmp_path):
    """flock locks die with their process: a run whose trainer was killed can be resumed at once."""
    out = tmp_path / "run"
    proc = subprocess.Popen(train_command(500, out), cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"},
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not (out / CARD).exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        proc.kill()
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    with RunWriter.claim(out, new=False) as writer:
        assert writer.card()["epochs_done"] >= 1
