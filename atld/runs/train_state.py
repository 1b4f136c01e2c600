"""The training-state file of a run (`train_state-*.safetensors`, beside its model file): the
names, shapes and dtypes it may hold, known before any of it is read (`atld.runs.store` checks a
file against it; `atld.train.optim` writes and restores it).

Saved names: "optim.classifier.<i>.<buffer>" and "optim.discriminator.<i>.<buffer>" (i the
parameter's index in `module.parameters()`), "rng.generator" (the trainer's generator state,
uint8) and "epochs_done" (int64 [1])."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from atld.vocab import Optimizer

if TYPE_CHECKING:
    from atld.config.train import TrainConfig

RNG_KEY = "rng.generator"
EPOCHS_KEY = "epochs_done"
RNG_STATE_SIZES = {"cpu": 5056, "cuda": 16}  # bytes of a torch.Generator state, per device type


def optimizer_buffers(kind: Optimizer, momentum: float) -> dict[str, bool]:
    """The per-parameter state an optimizer keeps: buffer name -> shaped like its parameter (True)
    or a 0-dim float32 counter (False, Adam's fused `step`)."""
    if kind == Optimizer.ADAM:
        return {"step": False, "exp_avg": True, "exp_avg_sq": True}
    return {"momentum_buffer": True} if momentum != 0 else {}


def state_layout(prefix: str, params: list[torch.Tensor], momentum: float,
                 kind: Optimizer = Optimizer.SGD) -> dict[str, tuple[tuple, torch.dtype]]:
    """name -> (shape, dtype) of the tensors a trained optimizer of `kind` over `params` saves."""
    return {f"{prefix}.{i}.{buffer}": ((tuple(p.shape), p.dtype) if shaped else ((), torch.float32))
            for i, p in enumerate(params) for buffer, shaped in optimizer_buffers(kind, momentum).items()}


def train_state_layout(classifier_params, discriminator_params, config: TrainConfig
                       ) -> dict[str, tuple[tuple[tuple, ...], torch.dtype]]:
    """name -> (allowed shapes, dtype) of a training state file of `config`, before any of it is read."""
    layout = {RNG_KEY: (tuple((n,) for n in RNG_STATE_SIZES.values()), torch.uint8),
              EPOCHS_KEY: (((1,),), torch.int64)}
    for prefix, params, m, kind in (
            ("optim.classifier", classifier_params, config.momentum, config.resolved_optimizer),
            ("optim.discriminator", discriminator_params, config.d_momentum, Optimizer.SGD)):
        if params is not None:
            layout.update({k: ((shape,), dtype) for k, (shape, dtype) in state_layout(prefix, params, m, kind).items()})
    return layout
