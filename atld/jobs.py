"""Background training jobs for a shared server (the app): one job per owner (browser session),
a server-wide cap on concurrent jobs, a Stop that really stops, and run directories that two
jobs can never share.

The manager is plain Python (threads + a lock), so it is tested with threads, without Streamlit.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from atld.checkpoints import safe_run_name
from atld.errors import ATLDError, ConfigError
from atld.train import Progress, TrainConfig, train

DEFAULT_MAX_JOBS = int(os.environ.get("ATLD_MAX_JOBS", "1"))


class JobRefused(ATLDError):
    """A job could not start (cap reached, owner busy, name taken)."""


@dataclass
class Job:
    id: int
    owner: str
    config: TrainConfig
    run_dir: Path
    started: float = field(default_factory=time.time)
    status: str = "running"  # running | finished | stopped | failed | diverged
    error: str | None = None
    epochs_done: int = 0
    step: int = 0
    steps: int = 0
    metrics: list[dict] = field(default_factory=list)
    stop_event: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self.status == "running"

    def stop(self) -> None:
        """Ask the job to stop after its current step; the last finished epoch stays saved."""
        self.stop_event.set()

    def wait(self, timeout: float | None = None) -> bool:
        if self.thread is not None:
            self.thread.join(timeout)
        return not self.running


class JobManager:
    """Thread-safe registry of training jobs under one runs directory."""

    def __init__(self, runs_dir: str | os.PathLike, max_jobs: int = DEFAULT_MAX_JOBS):
        if max_jobs < 1:
            raise ConfigError("max_jobs must be >= 1")
        self.runs_dir = Path(runs_dir)
        self.max_jobs = max_jobs
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

    def start(self, owner: str, config: TrainConfig, run_name: str, data=None) -> Job:
        """Start training `config` into runs_dir/run_name in a background thread.

        Refused (JobRefused) when the owner already runs a job, when max_jobs jobs are running,
        or when the run name is taken; a bad name raises ConfigError."""
        safe_run_name(run_name)
        run_dir = self.runs_dir / run_name
        with self._lock:
            if any(j.running and j.owner == owner for j in self._jobs.values()):
                raise JobRefused("you already have a training run going; stop it or wait for it to finish")
            if sum(j.running for j in self._jobs.values()) >= self.max_jobs:
                raise JobRefused(f"the server is busy: {self.max_jobs} training run(s) already going "
                                 "(the server-wide limit); try again when one finishes")
            self.runs_dir.mkdir(parents=True, exist_ok=True)
            try:
                run_dir.mkdir()  # exclusive: a second job can never write into this run
            except FileExistsError:
                raise JobRefused(f"a run named {run_name!r} already exists; choose another name") from None
            job = Job(next(self._ids), owner, config, run_dir)
            self._jobs[job.id] = job
        job.thread = threading.Thread(target=self._run, args=(job, data), name=f"atld-train-{job.id}", daemon=True)
        job.thread.start()
        return job

    def _run(self, job: Job, data) -> None:
        def progress(event: Progress) -> None:
            job.step, job.steps = event.step, event.steps
            if event.kind == "epoch":
                job.epochs_done = event.epoch
                job.metrics = [*job.metrics, event.metrics]

        try:
            result = train(job.config, data=data, run_dir=job.run_dir, name=job.run_dir.name,
                           progress=progress, should_stop=job.stop_event.is_set)
            status = result.status
        except ATLDError as exc:
            job.error = str(exc)
            status = "diverged" if type(exc).__name__ == "TrainingDiverged" else "failed"
        except Exception as exc:  # noqa: BLE001 - a worker must never die silently
            job.error = f"{type(exc).__name__}: {exc}"
            traceback.print_exc()
            status = "failed"
        if status in ("failed",) and job.epochs_done == 0:
            _remove_empty_run(job.run_dir)
        with self._lock:
            job.status = status


def _remove_empty_run(run_dir: Path) -> None:
    """A run that failed before its first epoch leaves no files; drop its directory."""
    try:
        run_dir.rmdir()
    except OSError:
        pass
