"""The optimizers of a run and the training state they save: built here, turned into flat tensors
for `train_state-*.safetensors` here, and validated here, tensor by tensor, before anything is
loaded into them.

Saved names: "optim.classifier.<i>.<buffer>" and "optim.discriminator.<i>.<buffer>" (i the
parameter's index in `module.parameters()`), "rng.generator" (the trainer's generator state,
uint8) and "epochs_done" (int64 [1]). A file from a stranger can claim anything: a buffer of the
wrong shape or dtype given to the fused SGD kernel writes past its end (a crash, or a silently
corrupted heap), so every key, shape, dtype and value is compared with the optimizer it is meant
for first (`check_state`), and the RNG state with the generator.
"""

from __future__ import annotations

import torch

from atld.errors import CheckpointError, name_mismatch

RNG_KEY = "rng.generator"
EPOCHS_KEY = "epochs_done"
RNG_STATE_SIZES = {"cpu": 5056, "cuda": 16}  # bytes of a torch.Generator state, per device type


def make_sgd(params, device: torch.device, **hyper) -> torch.optim.SGD:
    """SGD with the fused kernel on CPU and CUDA: one kernel for all parameters instead of a Python
    loop over them (a third of the per-step optimizer cost of the small digits models)."""
    return torch.optim.SGD(params, fused=device.type in ("cpu", "cuda") or None, **hyper)


def sgd_buffers(momentum: float) -> tuple[str, ...]:
    """The per-parameter state SGD keeps (each buffer is shaped like its parameter)."""
    return ("momentum_buffer",) if momentum != 0 else ()


def state_layout(prefix: str, params: list[torch.Tensor], momentum: float) -> dict[str, tuple[tuple, torch.dtype]]:
    """name -> (shape, dtype) of the tensors a trained SGD over `params` saves."""
    return {f"{prefix}.{i}.{buffer}": (tuple(p.shape), p.dtype)
            for i, p in enumerate(params) for buffer in sgd_buffers(momentum)}


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
    expected = state_layout(prefix, params, momentum)
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


def train_state_layout(classifier_params, discriminator_params, momentum: float,
                       d_momentum: float) -> dict[str, tuple[tuple[tuple, ...], torch.dtype]]:
    """name -> (allowed shapes, dtype) of a training state file, before any of it is read."""
    layout = {RNG_KEY: (tuple((n,) for n in RNG_STATE_SIZES.values()), torch.uint8),
              EPOCHS_KEY: (((1,),), torch.int64)}
    for prefix, params, m in (("optim.classifier", classifier_params, momentum),
                              ("optim.discriminator", discriminator_params, d_momentum)):
        if params is not None:
            layout.update({k: ((shape,), dtype) for k, (shape, dtype) in state_layout(prefix, params, m).items()})
    return layout
