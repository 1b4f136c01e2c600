"""The one training loop shared by every method.

The whole training set lives on the training device as one tensor; each epoch draws a seeded
permutation, slices batches, augments them on the device and calls the method's step. Metrics
stay on the device until the epoch ends (one host synchronisation per epoch). After every epoch
the run directory gets an atomic checkpoint with the training state, so a stopped, killed or
diverged run keeps its last finished epoch and `resume` continues it exactly (seeded CPU runs
give identical results).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from atld.attacks import AttackConfig, attack_batched
from atld.checkpoints import (library_versions, git_commit, load_checkpoint, save_checkpoint, update_card)
from atld.data import ImageData, as_float01, augment_batch, load_dataset
from atld.device import resolve_device
from atld.errors import CheckpointError, ConfigError, TrainingDiverged
from atld.models import Discriminator, build_classifier
from atld.train import distributed as ddp_utils
from atld.train.config import TrainConfig
from atld.train.distributed import DistributedContext
from atld.train.methods import STEP_FUNCTIONS, StepContext

_INIT_LOCK = threading.Lock()  # see train(): model initialisation uses the global RNG
EVAL_BATCH = 500  # images per batch in the per-epoch test evaluation


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
    status: str  # "finished" | "stopped"


def learning_rate(config: TrainConfig, epoch: int) -> float:
    """lr for a 0-based epoch: lr · gamma^(number of milestones passed)."""
    passed = sum(epoch >= round(m * config.epochs) for m in config.lr_milestones)
    return config.lr * config.lr_gamma ** passed


def amp_dtype(amp: str, device_type: str) -> torch.dtype | None:
    """The autocast dtype of the training steps: "auto" is bf16 on CUDA and off (None) on the CPU.
    Only the steps run under it; the per-epoch evaluation and every reported number run in fp32."""
    if amp == "auto":
        amp = "bf16" if device_type == "cuda" else "off"
    return torch.bfloat16 if amp == "bf16" else None


def _autocast_factory(config: TrainConfig, device: torch.device):
    dtype = amp_dtype(config.amp, device.type)
    if dtype is not None:
        return lambda: torch.autocast(device.type, dtype=dtype)
    return contextlib.nullcontext


def _sgd(params, device: torch.device, **hyper) -> torch.optim.SGD:
    """SGD with the fused kernel on CPU and CUDA: one kernel for all parameters instead of a Python
    loop over them (a third of the per-step optimizer cost of the small digits models)."""
    return torch.optim.SGD(params, fused=device.type in ("cpu", "cuda") or None, **hyper)


def _optimizer_state(prefix: str, opt: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    out = {}
    for idx, state in opt.state_dict()["state"].items():
        for key, value in state.items():
            if isinstance(value, torch.Tensor):
                out[f"{prefix}.{idx}.{key}"] = value
    return out


def _restore_optimizer(prefix: str, opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor]) -> None:
    sd = opt.state_dict()
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith(prefix + "."):
            idx, name = key[len(prefix) + 1:].split(".", 1)
            state.setdefault(int(idx), {})[name] = value
    sd["state"] = state
    opt.load_state_dict(sd)
    # Checkpoints store contiguous tensors; give each buffer its parameter's layout again
    # (channels_last weights), so the fused step pairs the same elements as before the stop.
    for group in opt.param_groups:
        for p in group["params"]:
            for name, buf in opt.state.get(p, {}).items():
                if isinstance(buf, torch.Tensor) and buf.shape == p.shape and buf.stride() != p.stride():
                    opt.state[p][name] = torch.empty_like(p, dtype=buf.dtype).copy_(buf)


def _auc(pos: torch.Tensor, neg: torch.Tensor) -> float:
    """ROC AUC of scores (pos should score higher), ties counted half (Mann-Whitney)."""
    scores = torch.cat([pos, neg]).double()
    ranks = torch.empty_like(scores)
    order = scores.argsort()
    ranks[order] = torch.arange(1, len(scores) + 1, dtype=torch.float64, device=scores.device)
    # average ranks over ties
    uniq, inverse, counts = torch.unique(scores, return_inverse=True, return_counts=True)
    sums = torch.zeros(len(uniq), dtype=torch.float64, device=scores.device).index_add_(0, inverse, ranks)
    ranks = (sums / counts)[inverse]
    n_pos, n_neg = len(pos), len(neg)
    return float((ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


@torch.no_grad()
def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, device) -> float:
    correct = 0
    for xb, yb in zip(x.split(EVAL_BATCH), y.split(EVAL_BATCH)):
        correct += (model(as_float01(xb.to(device))).argmax(1) == yb.to(device)).sum().item()
    return correct / max(len(y), 1)


def evaluate_epoch(config: TrainConfig, classifier: nn.Module, data: ImageData, device, epoch: int) -> dict:
    """Clean and PGD-20 test accuracy on the first `eval_limit` test images (eval mode)."""
    if config.eval_limit == 0:
        return {}
    n = min(config.eval_limit, len(data.y_test))
    x, y = data.x_test[:n], data.y_test[:n]
    classifier.eval()
    clean = _accuracy(classifier, x, y, device)
    gen = torch.Generator(device=device).manual_seed(config.seed * 100_003 + epoch)
    attack = AttackConfig("pgd", config.resolved_epsilon, steps=20)
    x_adv = attack_batched(classifier, as_float01(x), y, attack, batch_size=EVAL_BATCH, generator=gen)
    robust = _accuracy(classifier, x_adv, y, device)
    return {"test_clean_acc": clean, "test_pgd20_acc": robust, "test_n": n}


class _EpochMeter:
    """Accumulates step outputs on the device; `result()` syncs once."""

    def __init__(self, device):
        self.sums: dict[str, torch.Tensor] = {}
        self.n = 0
        self.correct_clean = torch.zeros((), device=device)
        self.correct_pert = torch.zeros((), device=device)
        self.has_clean = self.has_pert = False
        self.d_nat: list[torch.Tensor] = []
        self.d_pert: list[torch.Tensor] = []
        self.nonfinite = torch.zeros((), dtype=torch.bool, device=device)

    def add(self, out, y: torch.Tensor) -> None:
        b = y.shape[0]
        self.n += b
        self.nonfinite |= ~torch.isfinite(out.loss)
        for k, v in {"loss": out.loss, **out.loss_terms}.items():
            self.sums[k] = self.sums.get(k, 0) + v.float() * b
        if out.logits_clean is not None:
            self.has_clean = True
            self.correct_clean += (out.logits_clean.argmax(1) == y).sum()
        if out.logits_perturbed is not None:
            self.has_pert = True
            self.correct_pert += (out.logits_perturbed.argmax(1) == y).sum()
        if out.d_natural is not None:
            self.d_nat.append(out.d_natural)
            self.d_pert.append(out.d_perturbed)

    def all_reduce(self) -> None:
        """DDP: replace this rank's sums and counts by those over all ranks (one exchange per epoch)."""
        keys = list(self.sums)
        n = torch.tensor(float(self.n), device=self.correct_clean.device)
        reduced = ddp_utils.all_reduce_sum([n, self.correct_clean, self.correct_pert, self.nonfinite.float(),
                                            *[torch.as_tensor(self.sums[k]) for k in keys]])
        self.n = int(round(float(reduced[0])))
        self.correct_clean, self.correct_pert, self.nonfinite = reduced[1], reduced[2], reduced[3] > 0
        self.sums = dict(zip(keys, reduced[4:]))
        if self.d_nat:
            self.d_nat = [ddp_utils.all_gather_rows(torch.cat(self.d_nat))]
            self.d_pert = [ddp_utils.all_gather_rows(torch.cat(self.d_pert))]

    def result(self) -> dict:
        if bool(self.nonfinite):
            return {"nonfinite": True}
        m = {k: float(v) / self.n for k, v in self.sums.items()}
        if self.has_clean:
            m["train_clean_acc"] = float(self.correct_clean) / self.n
        if self.has_pert:
            m["train_perturbed_acc"] = float(self.correct_pert) / self.n
        if self.d_nat:
            nat, pert = torch.cat(self.d_nat), torch.cat(self.d_pert)
            m["d_acc"] = float(((nat > 0).sum() + (pert < 0).sum()).float() / (len(nat) + len(pert)))
            m["d_auc"] = _auc(nat, pert)
        return m


def _make_card(config: TrainConfig, data: ImageData, name: str | None, command: str | None) -> dict:
    resolved = config.resolved()
    return {"name": name, "method": config.method, "dataset": config.dataset, "arch": resolved.arch,
            "config": resolved.to_dict(), "seed": config.seed, "epochs_done": 0, "epochs_planned": config.epochs,
            "metrics": [], "status": "running", "versions": library_versions(), "git_commit": git_commit(),
            "command": command, "data": {"n_train": len(data.y_train), "n_test": len(data.y_test)}}


def train(config: TrainConfig, *, data: ImageData | None = None, data_root=None, download: bool = False,
          run_dir=None, name: str | None = None, command: str | None = None,
          progress: Callable[[Progress], None] | None = None,
          should_stop: Callable[[], bool] | None = None, resume: bool = False,
          distributed: DistributedContext | None = None) -> TrainResult:
    """Train `config` (or, with resume=True, continue the run in `run_dir` up to config.epochs).

    data: a loaded `ImageData` (else loaded from `data_root`). run_dir: where checkpoints go after
    every epoch (None: keep in memory only). progress: called with `Progress` events.
    should_stop: polled after every step; True stops after that step, keeping the last finished
    epoch's checkpoint. Raises `TrainingDiverged` if a loss becomes NaN/inf (the last good
    checkpoint stays), `ConfigError` / `DataError` / `CheckpointError` for bad input.
    distributed: this process's place in a torchrun DDP job (`atld.train.distributed.from_env()`);
    config.batch_size is then the global batch, and only rank 0 evaluates and writes run_dir."""
    run_dir = Path(run_dir) if run_dir is not None else None
    device = ddp_utils.rank_device(resolve_device(config.device), distributed)
    ddp_utils.check_batch(config.batch_size, distributed)
    is_main = distributed is None or distributed.is_main
    state = None
    if resume:
        if run_dir is None:
            raise ConfigError("resume needs the run directory")
        loaded = load_checkpoint(run_dir, device="cpu", with_train_state=True)
        _check_resumable(loaded.config, config)
        state, card = loaded.train_state, dict(loaded.card)
    if data is None:
        data = load_dataset(config.dataset, data_root, download)
    if data.spec.name != config.dataset:
        raise ConfigError(f"data is {data.spec.name!r} but the config says {config.dataset!r}")
    n_train = len(data.y_train)
    if config.batch_size > n_train:
        raise ConfigError(f"batch size {config.batch_size} is above the training set size {n_train}")

    # The global RNG is shared by every thread (the app trains several runs at once): seed and
    # initialise under a lock, on a forked RNG, so concurrent runs still get their seed's weights.
    with _INIT_LOCK, torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        classifier = build_classifier(config.resolved_arch, config.spec)
        discriminator = Discriminator(config.spec.num_classes, config.discriminator_spec()) \
            if config.uses_discriminator else None
    if resume:
        classifier.load_state_dict(loaded.classifier.state_dict())
        if discriminator is not None:
            discriminator.load_state_dict(loaded.discriminator.state_dict())
    else:
        card = _make_card(config, data, name, command)
    card["epochs_planned"] = config.epochs
    card["status"] = "running"
    card["config"]["epochs"] = config.epochs

    classifier.to(device)
    # channels_last helps on the CPU too (oneDNN convolutions; max-pooling is ~10x faster there).
    channels_last = config.channels_last and len(config.spec.input_shape) == 3
    if channels_last:
        classifier.to(memory_format=torch.channels_last)
    optimizer = _sgd(classifier.parameters(), device, lr=config.lr, momentum=config.momentum,
                     weight_decay=config.weight_decay)
    d_optimizer = None
    if discriminator is not None:
        discriminator.to(device)
        d_optimizer = _sgd(discriminator.parameters(), device, lr=config.d_lr, momentum=config.d_momentum,
                           weight_decay=config.d_weight_decay)
    generator = torch.Generator(device=device).manual_seed(config.seed)
    start_epoch = 0
    if state is not None:
        _restore_optimizer("optim.classifier", optimizer, state)
        if d_optimizer is not None:
            _restore_optimizer("optim.discriminator", d_optimizer, state)
        generator.set_state(state["rng.generator"].to(torch.uint8).cpu())
        start_epoch = card["epochs_done"]
    ddp = ddp_utils.DDPModels(classifier, discriminator, device, distributed) if distributed else None
    step_classifier = ddp.classifier if ddp else classifier
    model_for_steps = torch.compile(step_classifier) if config.compile else step_classifier
    ctx = StepContext(config, model_for_steps, optimizer, generator, ddp.discriminator if ddp else discriminator,
                      d_optimizer, _autocast_factory(config, device))
    step_fn = STEP_FUNCTIONS[config.method]

    x_all = data.x_train.to(device)
    y_all = data.y_train.to(device)
    world = distributed.world_size if distributed else 1
    # A last partial batch is used when every rank gets at least 2 of its images (BatchNorm).
    steps = n_train // config.batch_size + (1 if n_train % config.batch_size >= 2 * world else 0)
    status = "finished"
    for epoch in range(start_epoch, config.epochs):
        lr = learning_rate(config, epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        meter = _EpochMeter(device)
        t0 = time.perf_counter()
        perm = torch.randperm(n_train, device=device, generator=generator)
        ctx.generator = ddp_utils.step_generator(generator, config.seed, epoch, distributed)
        stopped = False
        for i in range(steps):
            global_idx = perm[i * config.batch_size:(i + 1) * config.batch_size]
            idx = ddp_utils.local_slice(global_idx, distributed)
            if ddp:
                ddp.set_share(len(idx), len(global_idx))
            xb = augment_batch(as_float01(x_all[idx]), config.spec.augmentation, ctx.generator)
            if channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            yb = y_all[idx]
            meter.add(step_fn(ctx, xb, yb), yb)
            if progress:
                progress(Progress("batch", epoch + 1, config.epochs, i + 1, steps))
            stop = bool(should_stop and should_stop())
            if distributed:  # the ranks agree (a collective) every few steps, and stop only then
                poll = (i + 1) % ddp_utils.STOP_POLL_STEPS == 0 or i + 1 == steps
                stop = poll and ddp_utils.any_rank(stop, device)
            if stop:
                stopped = True
                break
        if stopped:
            status = "stopped"
            break
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - t0
        if distributed:
            meter.all_reduce()
        metrics = meter.result()
        if metrics.get("nonfinite"):
            saved = run_dir is not None and (run_dir / "card.json").exists() and is_main
            message = (f"training diverged in epoch {epoch + 1}: a loss became NaN or infinite; "
                       + (f"kept the last good checkpoint (epoch {epoch})" if saved else
                          "no epoch finished, so nothing was saved" if epoch == 0 else
                          "nothing was saved (no run directory)"))
            if saved:
                update_card(run_dir, status="diverged", message=message)
            raise TrainingDiverged(message)
        metrics.update(epoch=epoch + 1, lr=lr, seconds=round(seconds, 4))
        t1 = time.perf_counter()
        if is_main:  # the bare module: a DDP forward on one rank alone would wait for the others
            metrics.update(evaluate_epoch(config, classifier, data, device, epoch + 1))
        metrics["eval_seconds"] = round(time.perf_counter() - t1, 4)
        card["metrics"] = [*card["metrics"], metrics]
        card["epochs_done"] = epoch + 1
        if run_dir is not None and is_main:
            card["status"] = "finished" if epoch + 1 == config.epochs else "running"
            save_checkpoint(run_dir, card, classifier, discriminator,
                            _train_state(optimizer, d_optimizer, generator, epoch + 1))
        if progress:
            progress(Progress("epoch", epoch + 1, config.epochs, steps, steps, metrics))
    card["status"] = status
    if run_dir is not None and is_main and (run_dir / "card.json").exists():
        card = update_card(run_dir, status=status)
    classifier.eval()
    if discriminator is not None:
        discriminator.eval()
    if progress:
        progress(Progress("done", card["epochs_done"], config.epochs, metrics={"status": status}))
    return TrainResult(classifier, discriminator, card, run_dir, status)


def _train_state(optimizer, d_optimizer, generator, epochs_done: int) -> dict[str, torch.Tensor]:
    state = {"rng.generator": generator.get_state().clone(), "epochs_done": torch.tensor([epochs_done])}
    state.update(_optimizer_state("optim.classifier", optimizer))
    if d_optimizer is not None:
        state.update(_optimizer_state("optim.discriminator", d_optimizer))
    return state


def _check_resumable(saved: TrainConfig, asked: TrainConfig) -> None:
    """Only the number of epochs (and where it runs) may change on resume."""
    free = {"epochs", "device", "eval_limit", "compile"}
    a, b = saved.resolved(), asked.resolved()
    for f in dataclasses.fields(TrainConfig):
        if f.name not in free and getattr(a, f.name) != getattr(b, f.name):
            raise CheckpointError(f"cannot resume: {f.name} is {getattr(a, f.name)!r} in the run "
                                  f"but {getattr(b, f.name)!r} now")
    if asked.epochs < 1 or not math.isfinite(asked.epochs):
        raise ConfigError("epochs must be >= 1")
