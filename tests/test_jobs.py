"""The app as a shared server: `atld.jobs.JobManager` under hostile run names, concurrent requests
(threads), Stop, failures and divergence, jobs found again by their run and key, and the time
limit of jobs nobody watches.

The cap and race tests replace `train` by a stand-in that blocks until released: they test the
manager's locking, not training, and must hold jobs "running" while all threads race. Real
(tiny) training is used for the isolation, Stop, failure and divergence tests.
"""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import atld.jobs as jobs
from atld.config.train import TrainConfig
from atld.data.loaders import ImageData
from atld.errors import ConfigError
from atld.jobs import JobManager, JobRefused
from atld.methods import METHODS
from atld.runs.card import MARKER
from atld.runs.owner import OWNER_FILE
from atld.runs.store import load_checkpoint
from atld.train.trainer import train


@pytest.fixture(scope="module")
def data(small_digits) -> ImageData:
    return small_digits(150, 20)


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

    def __call__(self, config, *, data=None, run_dir=None, name=None, progress=None, should_stop=None,
                 resume=False):
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
    files = {f"{r}/{name}" for r, run in (("alice-run", a), ("bob-run", b))
             for name in ("card.json", MARKER, OWNER_FILE, run.card["files"]["model"],
                          run.card["files"]["train_state"])}
    assert _tree(runs) == sorted({"alice-run", "bob-run", *files})


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
    real = METHODS["natural"].step
    calls = {"n": 0}

    def step(ctx, x, y):
        calls["n"] += 1
        out = real(ctx, x, y)
        if calls["n"] > 3:  # from epoch 2 on (3 steps per epoch)
            out.loss = out.loss * float("nan")
        return out
    monkeypatch.setitem(METHODS, "natural", dataclasses.replace(METHODS["natural"], step=step))
    manager = JobManager(tmp_path / "runs")
    job = manager.start("alice", tiny_config(epochs=3), "nan-run", data=data)
    assert job.wait(60) and job.status == "diverged"
    assert "epoch 2" in job.error and "\n" not in job.error
    run = load_checkpoint(job.run_dir)
    assert run.card["epochs_done"] == 1 and run.card["status"] == "diverged"


# ----------------------------------------------------------------------------- a job belongs to its run

def test_a_job_is_found_again_by_its_run_and_key_only(tmp_path, monkeypatch):
    """After a reload (a new session) the page asks for the job by run name and key: the right key
    finds it and can stop it; a wrong key, another run's key or no key finds nothing."""
    fake = _BlockingTrain()
    monkeypatch.setattr(jobs, "train", fake)
    manager = JobManager(tmp_path / "runs", max_jobs=2)
    alice = manager.start("alice-tab-1", tiny_config(), "alice-run")
    bob = manager.start("bob", tiny_config(), "bob-run")
    assert manager.attach("alice-run", alice.key) is alice  # e.g. alice's reloaded tab
    for name, key in (("alice-run", bob.key), ("alice-run", "guess"), ("alice-run", ""), ("nope", alice.key),
                      ("alice-run", None)):
        assert manager.attach(name, key) is None
    manager.attach("alice-run", alice.key).stop()
    assert alice.wait(10) and alice.status == "stopped" and bob.running
    fake.release.set()
    assert bob.wait(10)


def test_a_job_nobody_watches_stops_after_the_time_limit(tmp_path, data):
    """The unwatched limit (ATLD_UNWATCHED_MINUTES) on a simulated clock: a watched job keeps
    training; once no page has shown it for longer than the limit, it stops after its current
    step, keeps its last finished epoch and says why."""
    now = {"t": 0.0}
    manager = JobManager(tmp_path / "runs", unwatched_seconds=60, clock=lambda: now["t"])
    job = manager.start("alice", tiny_config(epochs=1000), "long", data=data)
    while job.epochs_done < 2:
        assert not job.wait(0.02), job.error
        now["t"] += 1.0
        job.seen()  # the page refreshes its panel every second
    now["t"] += 61.0  # the tab was closed
    assert job.wait(60) and job.status == "stopped", job.error
    assert "nobody watched this run for 1 min" in job.note
    run = load_checkpoint(job.run_dir, with_train_state=True)
    assert run.card["status"] == "stopped" and 2 <= run.card["epochs_done"] < 1000


def test_bad_settings_in_the_environment_are_one_line(tmp_path, monkeypatch):
    for value in ("two", "0", "-1", "1e9", "65"):
        monkeypatch.setenv("ATLD_MAX_JOBS", value)
        with pytest.raises(ConfigError, match="ATLD_MAX_JOBS") as info:
            JobManager(tmp_path)
        assert "\n" not in str(info.value)
    monkeypatch.delenv("ATLD_MAX_JOBS")
    monkeypatch.setenv("ATLD_UNWATCHED_MINUTES", "forever")
    with pytest.raises(ConfigError, match="ATLD_UNWATCHED_MINUTES"):
        JobManager(tmp_path)


# ----------------------------------------------------------------------------- resume and delete

def test_resume_continues_a_run_and_delete_removes_it(tmp_path, data):
    manager = JobManager(tmp_path / "runs", max_jobs=2)
    first = manager.start("alice", tiny_config(epochs=1), "mine", data=data)
    first.wait(120)
    assert first.status == "finished" and first.epochs_done == 1
    with pytest.raises(ConfigError, match="1 epochs done"):
        manager.resume("alice", "mine", 1, data=data, key=first.key)  # not more epochs: refused, nothing changes
    job = manager.resume("alice", "mine", 2, data=data, key=first.key)
    assert job.key == first.key  # the run's owner key stays the same
    assert job.epochs_done == 1 and len(job.metrics) == 1  # the curves start from the run's history
    job.wait(120)
    assert job.status == "finished" and job.error is None
    run = load_checkpoint(tmp_path / "runs" / "mine")
    assert run.card["epochs_done"] == 2 and len(run.card["metrics"]) == 2
    manager.delete("mine", key=first.key)
    assert not (tmp_path / "runs" / "mine").exists() and list((tmp_path / "runs").iterdir()) == []


def test_delete_and_resume_refuse_what_is_not_the_apps_own_run(tmp_path, data, monkeypatch):
    runs = tmp_path / "runs"
    (runs / "foreign").mkdir(parents=True)  # a folder of the user's: no marker
    (runs / "foreign" / "card.json").write_text("{}")
    (runs / "link").symlink_to(runs / "foreign")
    manager = JobManager(runs)
    for name in ("foreign", "link", "absent", "../runs"):
        with pytest.raises((ConfigError, jobs.CheckpointError)) as info:
            manager.delete(name)
        assert "\n" not in str(info.value)
        with pytest.raises((ConfigError, jobs.CheckpointError)):
            manager.resume("alice", name, 3, data=data)
    assert (runs / "foreign" / "card.json").exists()
    # the shipped checkpoints are read-only, even when the runs directory is set to them
    monkeypatch.setenv("ATLD_CHECKPOINTS_DIR", str(runs))
    done = manager.start("alice", tiny_config(epochs=1), "shipped-like", data=data)
    done.wait(120)
    with pytest.raises(jobs.CheckpointError, match="not a run of this app's runs directory"):
        manager.delete("shipped-like")
    assert (runs / "shipped-like" / "card.json").exists()


def test_a_run_being_trained_is_neither_deleted_nor_resumed(tmp_path, data):
    from atld.runs.rundir import RunWriter

    manager = JobManager(tmp_path / "runs", max_jobs=2)
    manager.start("alice", tiny_config(epochs=1), "busy", data=data).wait(120)
    with RunWriter.claim(tmp_path / "runs" / "busy", new=False):  # e.g. `python -m atld train --resume` elsewhere
        with pytest.raises(jobs.CheckpointError, match="being written"):
            manager.delete("busy")
        with pytest.raises(jobs.CheckpointError, match="being written"):
            manager.resume("bob", "busy", 3, data=data)
    assert (tmp_path / "runs" / "busy" / "card.json").exists()
    job = manager.start("carol", tiny_config(epochs=500), "long", data=data)
    try:
        with pytest.raises(JobRefused, match="being trained"):
            manager.delete("long")
        with pytest.raises(JobRefused, match="being trained"):
            manager.resume("dave", "long", 600, data=data)
    finally:
        job.stop()
        job.wait(120)
