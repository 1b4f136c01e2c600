"""The one training loop shared by every method.

The whole training set lives on the training device as one tensor; each epoch draws a seeded
permutation, slices batches, augments them on the device and calls the method's step. Metrics
stay on the device until the epoch ends (one host synchronisation per epoch). After every epoch
the run directory gets an atomic checkpoint with the training state, so a stopped, killed or
diverged run keeps its last finished epoch and `resume` continues it exactly (seeded CPU runs
give identical results).

`train` reads as its three parts: `_build` (data, run directory, models, optimizers, a resumed
state), `_epoch` (the steps of one epoch: the lr schedule and the ε ramp are set per step) and
`_end_epoch` (metrics, divergence, evaluation, collapse, the checkpoint). A collapsed epoch
(`atld.train.metrics.collapse_message`) is never saved: the run stops, its card says
"collapsed" and why, and the checkpoint of the last good epoch stays. An epoch that predicts one
class while it may not yet be called collapsed (the ε ramp) does not overwrite a saved checkpoint
that still told the classes apart, so that is the one a later collapse keeps.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from atld.config.train import TrainConfig
from atld.vocab import Amp, RunStatus
from atld.data.augment import augment_batch
from atld.data.loaders import ImageData, as_float01, load_dataset
from atld.device import resolve_device
from atld.errors import CheckpointError, ConfigError, TrainingCollapsed, TrainingDiverged
from atld.fileio import printable
from atld.methods import METHODS, StepContext
from atld.models.registry import build_classifier, build_discriminator
from atld.runs.rundir import RunWriter, remove_if_unused
from atld.runs.store import git_commit, library_versions, load_checkpoint, save_checkpoint, save_size
from atld.train import distributed as ddp_utils
from atld.train.distributed import DistributedContext
from atld.train.metrics import EpochMeter, collapse_message, evaluate_epoch, single_class
from atld.train.optim import (learning_rate, make_classifier_optimizer, make_sgd, per_step_schedule, restore_generator,
                              restore_optimizer, train_state)

_INIT_LOCK = threading.Lock()  # see _build(): model initialisation uses the global RNG


@dataclass(frozen=True)
class Progress:
    """What the progress callback receives. kind: "batch" after every step, "epoch" after every
    finished epoch (with its metrics), "done" at the end (status in metrics["status"])."""
    kind: str
    epoch: int  # 1-based epoch being (or just) trained
    epochs: int
    step: int = 0  # steps done in this epoch
    steps: int = 0  # steps per epoch
    metrics: dict | None = None


@dataclass
class TrainResult:
    classifier: nn.Module
    discriminator: nn.Module | None
    card: dict
    run_dir: Path | None
    status: RunStatus  # finished | stopped


__all__ = ["Progress", "TrainResult", "learning_rate", "train", "training_epsilon"]


def training_epsilon(config: TrainConfig, epoch: float) -> float:
    """The training ε ([0, 1] pixel units) at `epoch` epochs into the run (a float): linear from 0
    to ε over epsilon_ramp_epochs, then ε (0 ramp epochs: ε from the first step)."""
    eps, ramp = config.resolved_epsilon, config.resolved_epsilon_ramp_epochs
    return eps if ramp <= 0 or epoch >= ramp else eps * epoch / ramp


def amp_dtype(amp: str, device_type: str) -> torch.dtype | None:
    """The autocast dtype of the training steps: "auto" is bf16 on CUDA and off (None) on the CPU.
    Only the steps run under it; the per-epoch evaluation and every reported number run in fp32."""
    if amp == Amp.AUTO:
        amp = Amp.BF16 if device_type == "cuda" else Amp.OFF
    return torch.bfloat16 if amp == Amp.BF16 else None


def _autocast_factory(config: TrainConfig, device: torch.device):
    dtype = amp_dtype(config.amp, device.type)
    if dtype is not None:
        return lambda: torch.autocast(device.type, dtype=dtype)
    return contextlib.nullcontext


def _make_card(config: TrainConfig, data: ImageData, name: str | None, command: str | None) -> dict:
    resolved = config.resolved()
    return {"name": name, "method": config.method, "dataset": config.dataset, "arch": resolved.arch,
            "config": resolved.to_dict(), "seed": config.seed, "epochs_done": 0, "epochs_planned": config.epochs,
            "metrics": [], "status": RunStatus.RUNNING, "versions": library_versions(), "git_commit": git_commit(),
            "command": command, "data": {"n_train": len(data.y_train), "n_test": len(data.y_test)}}


@dataclass
class _Session:
    """A run being trained: what `_build` makes and the epochs use."""
    config: TrainConfig
    data: ImageData
    device: torch.device
    distributed: DistributedContext | None
    writer: RunWriter | None  # None: nothing is saved (no run directory, or a DDP rank other than 0)
    card: dict
    classifier: nn.Module
    discriminator: nn.Module | None
    optimizer: torch.optim.Optimizer
    d_optimizer: torch.optim.Optimizer | None
    generator: torch.Generator
    ctx: StepContext
    ddp: ddp_utils.DDPModels | None
    channels_last: bool
    x_all: torch.Tensor  # the training set on the device
    y_all: torch.Tensor
    steps: int  # per epoch
    start_epoch: int


def train(config: TrainConfig, *, data: ImageData | None = None, data_root=None, download: bool = False,
          run_dir=None, name: str | None = None, command: str | None = None,
          progress: Callable[[Progress], None] | None = None,
          should_stop: Callable[[], bool] | None = None, resume: bool = False,
          distributed: DistributedContext | None = None) -> TrainResult:
    """Train `config` (or, with resume=True, continue the run in `run_dir` up to config.epochs).

    data: a loaded `ImageData` (else loaded from `data_root`). run_dir: where checkpoints go after
    every epoch (None: keep in memory only); a new run needs a new folder (or an unfinished run
    directory of ours), a resumed one a run of ours; the directory is locked while training.
    progress: called with `Progress` events. should_stop: polled after every step; True stops
    after that step, keeping the last finished epoch's checkpoint. Raises `TrainingDiverged` if a
    loss becomes NaN/inf (the last good checkpoint stays), `ConfigError` / `DataError` /
    `CheckpointError` for bad input or a save that cannot be written (the last good checkpoint
    stays, the card says why). distributed: this process's place in a torchrun DDP job
    (`atld.train.distributed.from_env()`); config.batch_size is then the global batch, and only
    rank 0 evaluates and writes run_dir."""
    if resume and run_dir is None:
        raise ConfigError("resume needs the run directory")
    config = config.resolved()  # the dataset's recipe written out: what runs is what the card says
    if data is None:
        data = load_dataset(config.dataset, data_root, download)
    if data.spec.name != config.dataset:
        raise ConfigError(f"data is {data.spec.name!r} but the config says {config.dataset!r}")
    if config.batch_size > len(data.y_train):
        raise ConfigError(f"batch size {config.batch_size} is above the training set size {len(data.y_train)}")
    ddp_utils.check_batch(config.batch_size, distributed)
    run_dir = Path(run_dir) if run_dir is not None else None
    writes = run_dir is not None and (distributed is None or distributed.is_main)
    writer = RunWriter.claim(run_dir, new=not resume) if writes else None
    try:
        session = _build(config, data, writer, run_dir if resume else None, name, command, distributed)
        status = RunStatus.FINISHED
        for epoch in range(session.start_epoch, config.epochs):
            meter = _epoch(session, epoch, progress, should_stop)
            if meter is None:
                status = RunStatus.STOPPED
                break
            _end_epoch(session, epoch, meter, progress)
        return _finish(session, status, progress)
    finally:
        if writer is not None:
            writer.close()
            if not resume:
                remove_if_unused(writer.path)  # a new run that never saved leaves no folder behind


def _build(config: TrainConfig, data: ImageData, writer: RunWriter | None, resume_from: Path | None,
           name: str | None, command: str | None, distributed: DistributedContext | None) -> _Session:
    """Everything a run needs before its first step (a resumed run: its checked state); nothing is
    trained yet."""
    device = ddp_utils.rank_device(resolve_device(config.device), distributed)
    loaded = None
    if resume_from is not None:
        loaded = load_checkpoint(resume_from, device="cpu", with_train_state=True)
        _check_resumable(loaded.config, config)
    if writer is not None:
        writer.check_space(save_size(config), f"saving checkpoints of {printable(writer.path, 200)!r}")
    # The global RNG is shared by every thread (the app trains several runs at once): seed and
    # initialise under a lock, on a forked RNG, so concurrent runs still get their seed's weights.
    with _INIT_LOCK, torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        classifier = build_classifier(config.resolved_arch, config.spec)
        discriminator = build_discriminator(config.spec, config.discriminator_spec()) \
            if config.uses_discriminator else None
    card = dict(loaded.card) if loaded else _make_card(config, data, name, command)
    if loaded:
        classifier.load_state_dict(loaded.classifier.state_dict())
        if discriminator is not None:
            discriminator.load_state_dict(loaded.discriminator.state_dict())
    card.update(epochs_planned=config.epochs, status=RunStatus.RUNNING,
                config={**card["config"], "epochs": config.epochs})

    classifier.to(device)
    # channels_last helps on the CPU too (oneDNN convolutions; max-pooling is ~10x faster there).
    channels_last = config.channels_last and len(config.spec.input_shape) == 3
    if channels_last:
        classifier.to(memory_format=torch.channels_last)
    optimizer = make_classifier_optimizer(config, classifier.parameters(), device)
    d_optimizer = None
    if discriminator is not None:
        discriminator.to(device)
        d_optimizer = make_sgd(discriminator.parameters(), device, lr=config.d_lr, momentum=config.d_momentum,
                               weight_decay=config.d_weight_decay)
    generator = torch.Generator(device=device).manual_seed(config.seed)
    if loaded:  # every buffer is checked against its optimizer before it is loaded
        restore_optimizer("optim.classifier", optimizer, loaded.train_state)
        if d_optimizer is not None:
            restore_optimizer("optim.discriminator", d_optimizer, loaded.train_state)
        restore_generator(generator, loaded.train_state)
    ddp = ddp_utils.DDPModels(classifier, discriminator, device, distributed) if distributed else None
    step_classifier = ddp.classifier if ddp else classifier
    if config.compile:
        # ATLD backpropagates through one forward graph more than once (retain_graph); the buffers
        # AOTAutograd donates to the first backward by default would make the second one fail
        torch._functorch.config.donated_buffer = False
    ctx = StepContext(config, torch.compile(step_classifier) if config.compile else step_classifier, optimizer,
                      generator, ddp.discriminator if ddp else discriminator, d_optimizer,
                      _autocast_factory(config, device))
    n_train, world = len(data.y_train), distributed.world_size if distributed else 1
    # A last partial batch is used when every rank gets at least 2 of its images (BatchNorm).
    steps = n_train // config.batch_size + (1 if n_train % config.batch_size >= 2 * world else 0)
    return _Session(config, data, device, distributed, writer, card, classifier, discriminator, optimizer,
                    d_optimizer, generator, ctx, ddp, channels_last, data.x_train.to(device), data.y_train.to(device),
                    steps, card["epochs_done"] if loaded else 0)


def _epoch(s: _Session, epoch: int, progress, should_stop) -> EpochMeter | None:
    """Train one epoch; returns its meter, or None when stopped inside it."""
    config, device = s.config, s.device
    _set_lr(s.optimizer, learning_rate(config, epoch))
    per_step_lr, ramp = per_step_schedule(config), config.resolved_epsilon_ramp_epochs > 0
    step = METHODS[config.method].step
    meter = EpochMeter(device)
    x_all, y_all = s.x_all, s.y_all
    perm = torch.randperm(len(y_all), device=device, generator=s.generator)
    s.ctx.generator = ddp_utils.step_generator(s.generator, config.seed, epoch, s.distributed)
    for i in range(s.steps):
        global_idx = perm[i * config.batch_size:(i + 1) * config.batch_size]
        idx = ddp_utils.local_slice(global_idx, s.distributed)
        if s.ddp:
            s.ddp.set_share(len(idx), len(global_idx))
        xb = augment_batch(as_float01(x_all[idx]), config.spec.augmentation, s.ctx.generator)
        if s.channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        yb = y_all[idx]
        at = epoch + (i + 0.5) / s.steps  # the middle of this step, in epochs
        if per_step_lr:
            _set_lr(s.optimizer, learning_rate(config, at))
        if ramp:
            s.ctx.epsilon = training_epsilon(config, at)
        meter.add(step(s.ctx, xb, yb), yb)
        if progress:
            progress(Progress("batch", epoch + 1, config.epochs, i + 1, s.steps))
        stop = bool(should_stop and should_stop())
        if s.distributed:  # the ranks agree (a collective) every few steps, and stop only then
            poll = (i + 1) % ddp_utils.STOP_POLL_STEPS == 0 or i + 1 == s.steps
            stop = poll and ddp_utils.any_rank(stop, device)
        if stop:
            return None
    return meter


def _set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def _end_epoch(s: _Session, epoch: int, meter: EpochMeter, progress) -> None:
    """The epoch's metrics, the divergence check, the test evaluation, the collapse check and the
    checkpoint."""
    if s.device.type == "cuda":
        torch.cuda.synchronize(s.device)
    if s.distributed:
        meter.all_reduce()
    metrics = meter.result()
    if metrics.get("nonfinite"):
        saved = s.writer is not None and s.writer.card() is not None
        message = (f"training diverged in epoch {epoch + 1}: a loss became NaN or infinite; "
                   + (f"kept the last good checkpoint (epoch {epoch})" if saved else
                      "no epoch finished, so nothing was saved" if epoch == 0 else
                      "nothing was saved (no run directory)"))
        if saved:
            s.writer.update(status=RunStatus.DIVERGED, message=message)
        raise TrainingDiverged(message)
    # lr: the last step's (the epoch's, for a per-epoch schedule); train_epsilon: the last step's while ramping
    metrics.update(epoch=epoch + 1, lr=s.optimizer.param_groups[0]["lr"], seconds=round(meter.seconds(), 4))
    if s.ctx.epsilon is not None:
        metrics["train_epsilon"] = s.ctx.epsilon
    t1 = time.perf_counter()
    if s.distributed is None or s.distributed.is_main:  # the bare module: a DDP forward alone would wait
        metrics.update(evaluate_epoch(s.config, s.classifier, s.data, s.device, epoch + 1))
    metrics["eval_seconds"] = round(time.perf_counter() - t1, 4)
    collapsed = collapse_message(s.config, metrics) if s.config.stop_on_collapse else None
    if collapsed:
        _stop_collapsed(s, epoch, collapsed)
    s.card = {**s.card, "metrics": [*s.card["metrics"], metrics], "epochs_done": epoch + 1,
              "status": RunStatus.FINISHED if epoch + 1 == s.config.epochs else RunStatus.RUNNING}
    if s.writer is not None and not _hold(s, epoch, metrics):
        _save(s, epoch)
    if progress:
        progress(Progress("epoch", epoch + 1, s.config.epochs, s.steps, s.steps, metrics))


def _hold(s: _Session, epoch: int, metrics: dict) -> bool:
    """Whether to train on without saving this epoch: it predicts one class (inside the warm-up,
    where it is not yet called collapsed) and the saved checkpoint still told the classes apart, so
    a later collapse keeps that one. The first save and the last epoch are always written."""
    if not (s.config.stop_on_collapse and single_class(metrics) and epoch + 1 < s.config.epochs):
        return False
    kept = s.writer.card()
    return kept is not None and bool(kept.get("metrics")) and not single_class(kept["metrics"][-1])


def _stop_collapsed(s: _Session, epoch: int, message: str) -> None:
    """Mark the saved run collapsed (its checkpoint stays the last good epoch's) and stop."""
    kept = s.writer.card() if s.writer is not None else None
    saved = kept is not None
    message += (f"; kept the checkpoint of the last good epoch {kept['epochs_done']}" if saved else
                "; nothing was saved (no run directory)" if s.writer is None else
                "; no epoch was saved (none told the classes apart)")
    if saved:
        s.writer.update(status=RunStatus.COLLAPSED, collapse=message)
    raise TrainingCollapsed(message)


def _save(s: _Session, epoch: int) -> None:
    """The checkpoint of a finished epoch. A save that cannot be written (a full disk, a folder
    made read-only) keeps the previous one, says so in the card when it still can, and stops."""
    try:
        save_checkpoint(s.writer, s.card, s.classifier, s.discriminator,
                        train_state(s.optimizer, s.d_optimizer, s.generator, epoch + 1))
    except CheckpointError as exc:
        kept = s.writer.card()
        message = f"{exc}; " + (f"kept the checkpoint of epoch {kept['epochs_done']}" if kept else
                                "no epoch was saved")
        if kept is not None:
            with contextlib.suppress(CheckpointError):
                s.writer.update(status=RunStatus.FAILED, message=message)
        raise CheckpointError(message) from None


def _finish(s: _Session, status: RunStatus, progress) -> TrainResult:
    s.card = {**s.card, "status": status}
    if s.writer is not None and s.writer.card() is not None:
        s.card = s.writer.update(status=status)
    s.classifier.eval()
    if s.discriminator is not None:
        s.discriminator.eval()
    if progress:
        progress(Progress("done", s.card["epochs_done"], s.config.epochs, metrics={"status": status}))
    return TrainResult(s.classifier, s.discriminator, s.card, s.writer.path if s.writer else None, status)


def _check_resumable(saved: TrainConfig, asked: TrainConfig) -> None:
    """Only the number of epochs (and where it runs) may change on resume."""
    free = {"epochs", "device", "eval_limit", "compile"}
    a, b = saved.resolved(), asked.resolved()
    for f in dataclasses.fields(TrainConfig):
        if f.name not in free and getattr(a, f.name) != getattr(b, f.name):
            raise CheckpointError(f"cannot resume: {f.name} is {getattr(a, f.name)!r} in the run "
                                  f"but {getattr(b, f.name)!r} now")
