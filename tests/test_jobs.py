"""The app as a shared server (issue 7, part 4): `atld.jobs.JobManager` under hostile run names,
concurrent requests (threads), Stop, failures and divergence.

The cap and race tests replace `train` by a stand-in that blocks until released: they test the
manager's locking, not training, and must hold jobs "running" while all threads race. Real
(tiny) training is used for the isolation, Stop, failure and divergence tests.
"""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import atld.jobs as jobs
from atld.checkpoints import load_checkpoint
from atld.data import ImageData, load_dataset
from atld.errors import ConfigError
from atld.jobs import JobManager, JobRefused
from atld.train import TrainConfig, train
from atld.train.methods import STEP_FUNCTIONS


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread per training thread (idle OpenMP threads spin on a busy machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def data() -> ImageData:
    d = load_dataset("digits")
    return ImageData(d.spec, d.x_train[:150], d.y_train[:150], d.x_test[:20], d.y_test[:20])


def tiny_config(**overrides) -> TrainConfig:
    base = dict(dataset="digits", method="natural", epochs=2, batch_size=50, eval_limit=0, device="cpu")
    return TrainConfig(**{**base, **overrides})


def _tree(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


# ----------------------------------------------------------------------------- run names

BAD_RUN_NAMES = ["../escape", "..", ".", "/etc/cron.d/x", "/tmp", "a/b", "a\\b", "runs/../../x", "", " ",
                 "-rf", ".hidden", "x" * 65, "name\x00", "line\nbreak", "tab\tname", "spa ce", "ünïcode",
                 "a..b", "~root", "$HOME", "C:\\windows", "con:", "*", 7, None, b"bytes", ["list"]]


@pytest.mark.parametrize("name", BAD_RUN_NAMES, ids=repr)
def test_bad_run_name_refused_and_nothing_written(tmp_path, name):
    runs = tmp_path / "srv" / "runs"
    runs.mkdir(parents=True)
    before = _tree(tmp_path)
    manager = JobManager(runs, max_jobs=4)
    with pytest.raises(ConfigError) as info:
        manager.start("alice", tiny_config(), name)
    assert "\n" not in str(info.value) and "bad run name" in str(info.value)
    assert _tree(tmp_path) == before and manager.running() == []


def test_preplanted_symlink_cannot_redirect_a_run(tmp_path):
    """A name already taken by a symlink to elsewhere is refused; the target is never written."""
    runs, outside = tmp_path / "runs", tmp_path / "outside"
    runs.mkdir()
    outside.mkdir()
    (runs / "trap").symlink_to(outside, target_is_directory=True)
    with pytest.raises(JobRefused, match="already exists"):
        JobManager(runs).start("mallory", tiny_config(), "trap")
    assert list(outside.iterdir()) == []


def test_max_jobs_must_be_positive(tmp_path):
    with pytest.raises(ConfigError):
        JobManager(tmp_path, max_jobs=0)


# ----------------------------------------------------------------------------- concurrency

class _BlockingTrain:
    """Stand-in for `train` that keeps each job running until `release` is set."""

    def __init__(self):
        self.release = threading.Event()
        self.calls = []
        self.lock = threading.Lock()

    def __call__(self, config, *, data=None, run_dir=None, name=None, progress=None, should_stop=None):
        with self.lock:
            self.calls.append(run_dir)
        while not self.release.wait(0.01):
            if should_stop():
                return SimpleNamespace(status="stopped")
        return SimpleNamespace(status="finished")


def _race(n_threads: int, request):
    """Call `request(i)` from n threads released at the same instant; return (successes, refusals)."""
    barrier = threading.Barrier(n_threads)
    ok, refused, other = [], [], []
    lock = threading.Lock()

    def worker(i):
        barrier.wait()
        try:
            job = request(i)
            with lock:
                ok.append(job)
        except JobRefused as exc:
            with lock:
                refused.append(str(exc))
        except Exception as exc:  # noqa: BLE001 - collected and asserted empty
            with lock:
                other.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not other, other
    return ok, refused


@pytest.mark.parametrize("max_jobs", [1, 3])
def test_server_wide_cap_holds_under_concurrent_requests(tmp_path, monkeypatch, max_jobs):
    fake = _BlockingTrain()
    monkeypatch.setattr(jobs, "train", fake)
    manager = JobManager(tmp_path / "runs", max_jobs=max_jobs)
    n = 32
    ok, refused = _race(n, lambda i: manager.start(f"owner{i}", tiny_config(), f"run{i}"))
    assert len(ok) == max_jobs and len(refused) == n - max_jobs
    assert all("server is busy" in r for r in refused)
    assert len(manager.running()) == max_jobs and len(fake.calls) == max_jobs
    assert len(list((tmp_path / "runs").iterdir())) == max_jobs  # refused requests created nothing
    fake.release.set()
    assert all(job.wait(10) for job in ok)
    assert {job.status for job in ok} == {"finished"} and manager.running() == []
    manager.start("late", tiny_config(), "late-run").wait(10)  # the cap frees up again


def test_one_run_name_one_winner(tmp_path, monkeypatch):
    fake = _BlockingTrain()
    monkeypatch.setattr(jobs, "train", fake)
    manager = JobManager(tmp_path / "runs", max_jobs=64)
    ok, refused = _race(24, lambda i: manager.start(f"owner{i}", tiny_config(), "same-name"))
    assert len(ok) == 1 and len(refused) == 23 and all("already exists" in r for r in refused)
    fake.release.set()
    ok[0].wait(10)


def test_one_owner_one_job(tmp_path, monkeypatch):
    fake = _BlockingTrain()
    monkeypatch.setattr(jobs, "train", fake)
    manager = JobManager(tmp_path / "runs", max_jobs=64)
    ok, refused = _race(24, lambda i: manager.start("alice", tiny_config(), f"run{i}"))
    assert len(ok) == 1 and all("already have a training run" in r for r in refused)
    assert len(list((tmp_path / "runs").iterdir())) == 1
    ok[0].stop()
    assert ok[0].wait(10) and ok[0].status == "stopped"


# ----------------------------------------------------------------------------- real training

def test_two_owners_train_at_once_into_separate_runs(tmp_path, data):
    runs = tmp_path / "runs"
    manager = JobManager(runs, max_jobs=3)
    alice = manager.start("alice", tiny_config(seed=1), "alice-run", data=data)
    bob = manager.start("bob", tiny_config(seed=2), "bob-run", data=data)
    with pytest.raises(JobRefused, match="already exists"):
        manager.start("mallory", tiny_config(), "alice-run", data=data)  # cannot take over alice's run
    assert alice.wait(120) and bob.wait(120)
    assert (alice.status, bob.status) == ("finished", "finished"), (alice.error, bob.error)
    a, b = load_checkpoint(runs / "alice-run"), load_checkpoint(runs / "bob-run")
    assert (a.card["name"], a.card["seed"]) == ("alice-run", 1) and (b.card["name"], b.card["seed"]) == ("bob-run", 2)
    assert a.model_hash != b.model_hash
    # each run equals the same config trained alone: the two threads did not disturb each other
    for run, seed in ((a, 1), (b, 2)):
        alone = train(tiny_config(seed=seed), data=data)
        assert all(torch.equal(p, q) for p, q in zip(alone.classifier.state_dict().values(),
                                                     run.classifier.state_dict().values()))
    assert _tree(runs) == sorted(["alice-run", "bob-run", *(f"{r}/{f}" for r in ("alice-run", "bob-run")
                                  for f in ("card.json", "model.safetensors", "train_state.safetensors"))])


def test_stop_keeps_a_resumable_checkpoint(tmp_path, data):
    manager = JobManager(tmp_path / "runs")
    job = manager.start("alice", tiny_config(epochs=1000), "long", data=data)
    finished_one = threading.Event()
    while not job.wait(0.02):
        if job.epochs_done >= 1 and not finished_one.is_set():
            finished_one.set()
            job.stop()
    assert job.status == "stopped", job.error
    run = load_checkpoint(job.run_dir, with_train_state=True)
    assert run.card["status"] == "stopped" and 1 <= run.card["epochs_done"] < 1000
    done = run.card["epochs_done"]
    resumed = train(tiny_config(epochs=done + 1), data=data, run_dir=job.run_dir, resume=True)
    assert resumed.status == "finished" and resumed.card["epochs_done"] == done + 1


def test_failed_job_reports_one_line_and_frees_its_name(tmp_path, data):
    manager = JobManager(tmp_path / "runs")
    job = manager.start("alice", tiny_config(batch_size=151), "too-big", data=data)
    assert job.wait(60) and job.status == "failed"
    assert "above the training set size" in job.error and "\n" not in job.error
    assert not (tmp_path / "runs" / "too-big").exists()
    retry = manager.start("alice", tiny_config(), "too-big", data=data)
    assert retry.wait(120) and retry.status == "finished"


def test_diverged_job_keeps_last_good_epoch(tmp_path, data, monkeypatch):
    real = STEP_FUNCTIONS["natural"]
    calls = {"n": 0}

    def step(ctx, x, y):
        calls["n"] += 1
        out = real(ctx, x, y)
        if calls["n"] > 3:  # from epoch 2 on (3 steps per epoch)
            out.loss = out.loss * float("nan")
        return out
    monkeypatch.setitem(STEP_FUNCTIONS, "natural", step)
    manager = JobManager(tmp_path / "runs")
    job = manager.start("alice", tiny_config(epochs=3), "nan-run", data=data)
    assert job.wait(60) and job.status == "diverged"
    assert "epoch 2" in job.error and "\n" not in job.error
    run = load_checkpoint(job.run_dir)
    assert run.card["epochs_done"] == 1 and run.card["status"] == "diverged"
