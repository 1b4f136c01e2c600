"""Background training jobs for a shared server (the app).

A job belongs to its run, not to the browser tab that started it: it is found again by its run
name, and whoever holds its key (a random token handed out when it starts, which the Train page
keeps in its address) can watch it and stop it, after a reload or from another tab. One job per
owner (browser session) at a time, a server-wide cap (ATLD_MAX_JOBS), run directories created
exclusively (two jobs never share one), and a time limit for jobs nobody watches: a job whose
page has not looked at it for ATLD_UNWATCHED_MINUTES (default 30) stops after its current step,
keeping its last finished epoch (resumable on the Train page or with `python -m atld train --resume`).

The manager also resumes and deletes the runs of its runs directory that are the lab's own (they
carry its marker), only for whoever holds the run's owner key (`atld.runs.owner`: the key of the
job that created it), never a run one of its jobs is training or another process is writing
(the run's writer lock), and never anything outside the runs directory (shipped checkpoints).

The manager is plain Python (threads + a lock), so it is tested with threads, without Streamlit.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import secrets
import shutil
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from atld.config.settings import settings
from atld.config.train import TrainConfig
from atld.vocab import RunStatus
from atld.errors import ATLDError, CheckpointError, ConfigError, TrainingCollapsed, TrainingDiverged
from atld.priority import lower_thread_priority
from atld.runs.card import read_card, safe_run_name
from atld.runs.owner import claim_owner, new_owner_key, require_owner
from atld.runs.rundir import RunWriter, create_run_dir, is_ours, remove_if_unused
from atld.train.trainer import Progress, train


class JobRefused(ATLDError):
    """A job could not start (cap reached, owner busy, name taken)."""


@dataclass
class Job:
    id: int
    owner: str
    key: str  # who holds it may watch and stop the job
    config: TrainConfig
    run_dir: Path
    clock: Callable[[], float] = time.monotonic
    started: float = field(default_factory=time.time)
    status: RunStatus = RunStatus.RUNNING
    error: str | None = None
    note: str | None = None  # why it stopped, when not by its Stop button
    epochs_done: int = 0
    step: int = 0
    steps: int = 0
    metrics: list[dict] = field(default_factory=list)
    stop_event: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    last_seen: float = 0.0  # clock() when a page last showed the job
    resume: bool = False  # continues the run already in run_dir

    def __post_init__(self):
        self.last_seen = self.clock()

    @property
    def name(self) -> str:
        return self.run_dir.name

    @property
    def running(self) -> bool:
        return self.status == RunStatus.RUNNING

    def seen(self) -> None:
        """A page is showing the job (resets its unwatched time)."""
        self.last_seen = self.clock()

    def unwatched_seconds(self) -> float:
        return self.clock() - self.last_seen

    def stop(self) -> None:
        """Ask the job to stop after its current step; the last finished epoch stays saved."""
        self.stop_event.set()

    def wait(self, timeout: float | None = None) -> bool:
        if self.thread is not None:
            self.thread.join(timeout)
        return not self.running


class JobManager:
    """Thread-safe registry of the training jobs of one runs directory."""

    def __init__(self, runs_dir: str | os.PathLike, max_jobs: int | None = None,
                 unwatched_seconds: float | None = None, clock: Callable[[], float] = time.monotonic):
        current = settings()  # validated environment: a bad ATLD_MAX_JOBS is one line, here
        max_jobs = current.max_jobs if max_jobs is None else max_jobs
        if not isinstance(max_jobs, int) or max_jobs < 1:
            raise ConfigError("max_jobs must be >= 1")
        self.runs_dir = Path(runs_dir)
        self.max_jobs = max_jobs
        self.unwatched_seconds = 60 * current.unwatched_minutes if unwatched_seconds is None else unwatched_seconds
        self.clock = clock
        self._lock = threading.Lock()
        self._jobs: dict[int, Job] = {}
        self._ids = itertools.count(1)

    def running(self) -> list[Job]:
        with self._lock:
            return [j for j in self._jobs.values() if j.running]

    def job_of(self, owner: str) -> Job | None:
        """The newest job of `owner`, running or not."""
        with self._lock:
            jobs = [j for j in self._jobs.values() if j.owner == owner]
        return max(jobs, key=lambda j: j.id) if jobs else None

    def attach(self, run_name: str, key: str) -> Job | None:
        """The newest job of run `run_name` if `key` is its key (compared in constant time)."""
        with self._lock:
            jobs = [j for j in self._jobs.values() if j.name == run_name]
        job = max(jobs, key=lambda j: j.id) if jobs else None
        if job is None or not isinstance(key, str) or not secrets.compare_digest(job.key, key):
            return None
        return job

    def start(self, owner: str, config: TrainConfig, run_name: str, data=None) -> Job:
        """Start training `config` into runs_dir/run_name in a background thread.

        Refused (JobRefused) when the owner already runs a job, when max_jobs jobs are running,
        or when the run name is taken; a bad name raises ConfigError."""
        safe_run_name(run_name)
        run_dir = self.runs_dir / run_name
        key = new_owner_key()  # the job's key is the run's owner key

        def claim() -> None:
            try:
                create_run_dir(run_dir)  # exclusive: a second job can never write into this run
                claim_owner(run_dir, key)
            except FileExistsError:
                raise JobRefused(f"a run named {run_name!r} already exists; choose another name") from None
            except OSError as exc:
                raise JobRefused(f"cannot create the run {run_name!r}: {exc.strerror}") from None

        return self._launch(owner, config, run_dir, data, claim, resume=False, key=key)

    def resume(self, owner: str, run_name: str, epochs: int, data=None, key: str | None = None) -> Job:
        """Continue run `run_name` of the runs directory up to `epochs` epochs in all, with its own
        config (only the epochs change; `atld.train.trainer.train(resume=True)` checks the rest).
        Refused like `start`, and for a run that is not the lab's own, whose owner key is not `key`,
        is being trained, or has already `epochs` epochs done. The new job's key is `key`."""
        run_dir = self.own_run(run_name)
        os.close(RunWriter._lock(run_dir))  # now, not in the thread: another process is writing it
        require_owner(run_dir, key, "resume")
        card = read_card(run_dir)
        try:
            saved = TrainConfig.from_dict(card["config"])
        except ConfigError as exc:
            raise ConfigError(f"the run's config is invalid: {exc}") from None
        if not isinstance(epochs, int) or epochs <= card["epochs_done"]:
            raise ConfigError(f"run {run_name!r} has {card['epochs_done']} epochs done: resume it to more "
                              f"epochs than that (asked: {epochs})")
        config = dataclasses.replace(saved, epochs=epochs)  # validated again (the epoch limit)

        def claim() -> None:
            if any(j.running and j.name == run_dir.name for j in self._jobs.values()):
                raise JobRefused(f"run {run_name!r} is being trained right now")

        job = self._launch(owner, config, run_dir, data, claim, resume=True,
                           epochs_done=card["epochs_done"], metrics=list(card["metrics"]), key=key)
        return job

    def _launch(self, owner: str, config: TrainConfig, run_dir: Path, data, claim: Callable[[], None], *,
                resume: bool, epochs_done: int = 0, metrics: list | None = None, key: str | None = None) -> Job:
        with self._lock:
            if any(j.running and j.owner == owner for j in self._jobs.values()):
                raise JobRefused("you already have a training run going; stop it or wait for it to finish")
            if sum(j.running for j in self._jobs.values()) >= self.max_jobs:
                raise JobRefused(f"the server is busy: {self.max_jobs} training run(s) already going "
                                 "(the server-wide limit); try again when one finishes")
            claim()
            job = Job(next(self._ids), owner, key or new_owner_key(), config, run_dir, clock=self.clock,
                      resume=resume, epochs_done=epochs_done, metrics=metrics or [])
            self._jobs[job.id] = job
        job.thread = threading.Thread(target=self._run, args=(job, data), name=f"atld-train-{job.id}", daemon=True)
        job.thread.start()
        return job

    # ------------------------------------------------------------------ the lab's own runs

    def own_run(self, run_name: str) -> Path:
        """runs_dir/run_name if it is a run of the lab's own there (its marker, a card, not a link)
        that none of this manager's jobs is training; else one line (CheckpointError/JobRefused)."""
        safe_run_name(run_name)
        run_dir = self.runs_dir / run_name
        shipped = settings().checkpoints_dir.resolve()
        if run_dir.is_symlink() or not run_dir.is_dir() or not is_ours(run_dir) \
                or run_dir.resolve().is_relative_to(shipped):  # shipped checkpoints are read-only here
            raise CheckpointError(f"{run_name!r} is not a run of this app's runs directory")
        if self.is_training(run_name):
            raise JobRefused(f"run {run_name!r} is being trained right now; stop it first")
        return run_dir

    def is_training(self, run_name: str) -> bool:
        with self._lock:
            return any(j.running and j.name == run_name for j in self._jobs.values())

    def delete(self, run_name: str, key: str | None = None) -> None:
        """Delete run `run_name` of the runs directory with all its files. Only a run of the lab's
        own whose owner key is `key` and that nobody is writing: the run's writer lock is held
        while it is moved aside (one rename: readers see it gone at once) and removed."""
        run_dir = self.own_run(run_name)
        lock = RunWriter._lock(run_dir)  # CheckpointError: another process or job is writing it
        try:
            if self.is_training(run_name):  # a resume started since own_run: it has or wants the lock
                raise JobRefused(f"run {run_name!r} is being trained right now; stop it first")
            require_owner(run_dir, key, "delete")
            trash = run_dir.with_name(f".deleting-{run_dir.name}-{secrets.token_hex(4)}")
            try:
                os.rename(run_dir, trash)
            except OSError as exc:
                raise CheckpointError(f"cannot delete run {run_name!r}: {exc.strerror}") from None
        finally:
            os.close(lock)
        shutil.rmtree(trash, ignore_errors=True)  # rmtree never follows links out of the folder

    def _should_stop(self, job: Job) -> bool:
        if job.unwatched_seconds() > self.unwatched_seconds and not job.stop_event.is_set():
            job.note = (f"stopped: nobody watched this run for {self.unwatched_seconds / 60:.3g} min "
                        "(ATLD_UNWATCHED_MINUTES); its last finished epoch is saved")
            job.stop_event.set()
        return job.stop_event.is_set()

    def _run(self, job: Job, data) -> None:
        lower_thread_priority()  # a training job must not take the cores from the app's viewers

        def progress(event: Progress) -> None:
            job.step, job.steps = event.step, event.steps
            if event.kind == "epoch":
                job.epochs_done = event.epoch
                job.metrics = [*job.metrics, event.metrics]

        try:
            result = train(job.config, data=data, run_dir=job.run_dir, name=job.name, progress=progress,
                           should_stop=lambda: self._should_stop(job), resume=job.resume)
            status = result.status
        except TrainingDiverged as exc:
            job.error, status = str(exc), RunStatus.DIVERGED
        except TrainingCollapsed as exc:
            job.error, status = str(exc), RunStatus.COLLAPSED
        except ATLDError as exc:
            job.error, status = str(exc), RunStatus.FAILED
        except Exception as exc:  # noqa: BLE001 - a worker must never die silently
            job.error, status = f"{type(exc).__name__}: {exc}", RunStatus.FAILED
            traceback.print_exc()
        if not job.resume:
            remove_if_unused(job.run_dir)  # a job that failed before its first epoch leaves no folder
        with self._lock:
            job.status = status
