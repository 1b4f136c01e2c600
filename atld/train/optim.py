"""The optimizers of a run, the learning-rate schedule, and the training state they save: built here,
turned into flat tensors for `train_state-*.safetensors` here, and validated here, tensor by
tensor, before anything is loaded into them. The file's layout (its names, shapes and dtypes) is
part of the run format: `atld.runs.train_state`.

A file from a stranger can claim anything: a buffer of the wrong shape or dtype given to the fused
SGD kernel writes past its end (a crash, or a silently corrupted heap), so every key, shape, dtype
and value is compared with the optimizer it is meant for first (`check_state`), and the RNG state
with the generator.
"""

from __future__ import annotations

import math

import torch

from atld.config.train import TrainConfig
from atld.errors import CheckpointError, name_mismatch
from atld.runs.train_state import EPOCHS_KEY, RNG_KEY, RNG_STATE_SIZES, state_layout
from atld.vocab import LrSchedule, Optimizer



def make_sgd(params, device: torch.device, **hyper) -> torch.optim.SGD:
    """SGD with the fused kernel on CPU and CUDA: one kernel for all parameters instead of a Python
    loop over them (a third of the per-step optimizer cost of the small digits models)."""
    return torch.optim.SGD(params, fused=device.type in ("cpu", "cuda") or None, **hyper)


def make_adam(params, device: torch.device, **hyper) -> torch.optim.Adam:
    """Adam (betas 0.9, 0.999; weight decay as L2 added to the gradient), fused like `make_sgd`."""
    return torch.optim.Adam(params, fused=device.type in ("cpu", "cuda") or None, **hyper)


def make_classifier_optimizer(config: TrainConfig, params, device: torch.device) -> torch.optim.Optimizer:
    """The classifier's optimizer of `config` at its (peak) learning rate; the schedule sets lr per step."""
    lr, wd = config.resolved_lr, config.resolved_weight_decay
    if config.resolved_optimizer == Optimizer.ADAM:
        return make_adam(params, device, lr=lr, weight_decay=wd)
    return make_sgd(params, device, lr=lr, momentum=config.momentum, weight_decay=wd)


def learning_rate(config: TrainConfig, epoch: float) -> float:
    """The classifier's lr at `epoch` epochs into the run (a float: 2.5 is the middle of the third).

    step: lr · gamma^(milestones passed), constant within an epoch (the epoch's integer part).
    constant: lr. cosine / one-cycle: linear warm-up from 0 to lr over lr_warmup_epochs (one-cycle's
    peak), then lr · (1 + cos πt) / 2, resp. lr · (1 − t), t going from 0 to 1 at the end of the run."""
    lr, schedule = config.resolved_lr, config.resolved_lr_schedule
    if schedule == LrSchedule.STEP:
        passed = sum(int(epoch) >= round(m * config.epochs) for m in config.lr_milestones)
        return lr * config.lr_gamma ** passed
    if schedule == LrSchedule.CONSTANT:
        return lr
    warmup = config.resolved_lr_warmup_epochs
    if epoch < warmup:
        return lr * epoch / warmup
    t = min(1.0, (epoch - warmup) / max(config.epochs - warmup, 1e-12))
    if schedule == LrSchedule.COSINE:
        return lr * 0.5 * (1 + math.cos(math.pi * t))
    return lr * (1 - t)


def per_step_schedule(config: TrainConfig) -> bool:
    """Whether lr changes at every optimizer step (else once per epoch)."""
    return config.resolved_lr_schedule in (LrSchedule.COSINE, LrSchedule.ONE_CYCLE)


def optimizer_tensors(prefix: str, opt: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    out = {}
    for idx, state in opt.state_dict()["state"].items():
        for key, value in state.items():
            if isinstance(value, torch.Tensor):
                out[f"{prefix}.{idx}.{key}"] = value
    return out


def check_state(prefix: str, opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor]) -> None:
    """Every saved buffer of `prefix` must be one `opt` keeps, of its parameter's shape and dtype,
    and finite; and none may be missing. Raises CheckpointError with one line."""
    params = [p for group in opt.param_groups for p in group["params"]]
    momentum = opt.param_groups[0].get("momentum", 0)
    kind = Optimizer.ADAM if isinstance(opt, torch.optim.Adam) else Optimizer.SGD
    expected = state_layout(prefix, params, momentum, kind)
    given = {k: v for k, v in tensors.items() if k.startswith(prefix + ".")}
    mismatch = name_mismatch(expected, given)
    if mismatch:
        raise CheckpointError(f"the training state does not fit the optimizer ({mismatch})")
    for name, (shape, dtype) in expected.items():
        got = given[name]
        if tuple(got.shape) != shape or got.dtype != dtype:
            raise CheckpointError(f"training state {name} is {got.dtype} {tuple(got.shape)}, the optimizer needs "
                                  f"{dtype} {shape}")
        if not bool(torch.isfinite(got).all()):
            raise CheckpointError(f"training state {name} contains NaN or infinite values")


def restore_optimizer(prefix: str, opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor]) -> None:
    """Load the checked buffers of `prefix` into `opt`."""
    check_state(prefix, opt, tensors)
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


def restore_generator(generator: torch.Generator, tensors: dict[str, torch.Tensor]) -> None:
    """Set `generator` to the saved state, which must be one of the same kind of generator."""
    state = tensors.get(RNG_KEY)
    size = RNG_STATE_SIZES.get(generator.device.type)
    if state is None or state.dtype != torch.uint8 or tuple(state.shape) != (size,):
        saved_on = next((k for k, n in RNG_STATE_SIZES.items() if state is not None and state.numel() == n), None)
        hint = f"; it was saved on a {saved_on} generator: resume with --device {saved_on}" if saved_on else ""
        raise CheckpointError(f"the training state's RNG does not fit this {generator.device.type} generator{hint}")
    try:
        generator.set_state(state.cpu().contiguous())
    except RuntimeError as exc:  # e.g. "Invalid mt19937 state"
        raise CheckpointError(f"the training state's RNG state is not valid ({exc})") from None


def train_state(optimizer, d_optimizer, generator: torch.Generator, epochs_done: int) -> dict[str, torch.Tensor]:
    """Everything needed to continue a run exactly (what `train_state-*.safetensors` holds)."""
    state = {RNG_KEY: generator.get_state().clone(), EPOCHS_KEY: torch.tensor([epochs_done])}
    state.update(optimizer_tensors("optim.classifier", optimizer))
    if d_optimizer is not None:
        state.update(optimizer_tensors("optim.discriminator", d_optimizer))
    return state
