"""Data-parallel training with PyTorch DDP, launched by `torchrun` (docs/gpu.md).

    torchrun --standalone --nproc_per_node=4 -m atld train --dataset cifar10 --method atld ...

`torchrun` sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT; `from_env()` reads
them and joins the process group (NCCL on CUDA, gloo on the CPU). What changes in a DDP run:

- batch: `TrainConfig.batch_size` stays the *global* batch. Every rank draws the same seeded
  permutation and takes its own contiguous slice of each global batch (`local_slice`), which is
  what a DistributedSampler does, without a DataLoader (the data stays one tensor on the device).
- gradients: the classifier and the discriminator are wrapped in DistributedDataParallel. A comm
  hook weights each rank's mean gradient by its share of the global batch, so the averaged
  gradient is the gradient of the global-batch mean even when the last batch splits unevenly:
  a model without batch-coupled layers (BatchNorm) then follows the 1-process run up to rounding.
  BatchNorm normalizes each rank's slice on its own (standard DDP behaviour).
- randomness: per-step randomness (augmentation, random starts) comes from a per-rank generator
  reseeded from (seed, rank, epoch) at every epoch, so a resumed run continues the same streams.
- metrics: the per-epoch sums are all-reduced once per epoch; rank 0 evaluates, writes the
  checkpoint and the card. Ranks agree on stopping every `STOP_POLL_STEPS` steps.
Nothing here runs at import; a 1-process run never touches torch.distributed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from atld.errors import ConfigError

STOP_POLL_STEPS = 10  # steps between the ranks' all-reduce of the "stop" flag (one host sync each)
_SEED_MIX = 0x9E3779B97F4A7C15  # odd 64-bit constant: spreads (seed, rank, epoch) over the seed space


@dataclass(frozen=True)
class DistributedContext:
    """Where this process sits in a DDP job."""
    rank: int  # global rank, 0 .. world_size - 1
    world_size: int  # number of processes
    local_rank: int  # rank on this machine: picks the GPU

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_world_size() -> int:
    """WORLD_SIZE as set by torchrun (1 when not launched by it)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise ConfigError(f"WORLD_SIZE must be an integer, got {os.environ['WORLD_SIZE']!r}") from None


def from_env(backend: str | None = None) -> DistributedContext | None:
    """Join the process group torchrun describes; None when WORLD_SIZE is 1 or unset.

    backend: "nccl" | "gloo"; default NCCL when CUDA is available, else gloo."""
    world = env_world_size()
    if world <= 1:
        return None
    missing = [k for k in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise ConfigError(f"WORLD_SIZE={world} but {', '.join(missing)} not set; launch with torchrun")
    rank, local_rank = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
    if not dist.is_initialized():
        backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend)
    return DistributedContext(rank=rank, world_size=world, local_rank=local_rank)


def shutdown() -> None:
    """Leave the process group (idempotent). All ranks meet at a barrier first: rank 0 still
    evaluates and writes the checkpoint after the last epoch, and a rank that tears down gloo while
    another is still in flight can abort ("terminate called without an active exception")."""
    if dist.is_initialized():
        try:
            dist.barrier()
        finally:
            dist.destroy_process_group()


def rank_device(device: torch.device, ctx: DistributedContext | None) -> torch.device:
    """A DDP rank on CUDA uses GPU `local_rank`; CPU stays CPU."""
    if ctx is not None and device.type == "cuda":
        return torch.device("cuda", ctx.local_rank)
    return device


def check_batch(batch_size: int, ctx: DistributedContext | None) -> None:
    """Every rank needs at least 2 images of each full global batch (BatchNorm, D's statistics)."""
    if ctx is not None and batch_size < 2 * ctx.world_size:
        raise ConfigError(f"batch size {batch_size} is the global batch; with {ctx.world_size} processes "
                          f"it must be at least {2 * ctx.world_size}")


def local_slice(idx: torch.Tensor, ctx: DistributedContext | None) -> torch.Tensor:
    """This rank's contiguous part of a global batch of indices (near-equal parts)."""
    if ctx is None:
        return idx
    return idx.tensor_split(ctx.world_size)[ctx.rank]


def step_generator(generator: torch.Generator, seed: int, epoch: int,
                   ctx: DistributedContext | None) -> torch.Generator:
    """The generator for per-step randomness. One process: the trainer's own generator (so
    1-process runs are unchanged). DDP: a per-rank generator seeded from (seed, rank, epoch)."""
    if ctx is None:
        return generator
    mixed = (seed * _SEED_MIX + (ctx.rank + 1) * 1_000_003 + epoch) % (2**63)
    return torch.Generator(device=generator.device).manual_seed(mixed)


class _ShareState:
    """Comm-hook state: this rank's share of the current global batch."""

    def __init__(self, world_size: int):
        self.world_size = world_size
        self.scale = 1.0  # local_n * world_size / global_n, set by the trainer before each step

    def __setstate__(self, state):  # DDP may pickle hook state; keep it plain
        self.__dict__.update(state)


def _weighted_allreduce(state: _ShareState, bucket):
    """Σ_r (n_r / N) · g_r, g_r the rank's mean gradient: the gradient of the global-batch mean."""
    buf = bucket.buffer()
    buf.mul_(state.scale / state.world_size)
    return dist.all_reduce(buf, async_op=True).get_future().then(lambda fut: fut.value()[0])


class DDPModels:
    """The classifier (and discriminator) wrapped in DDP, sharing one batch-share state."""

    def __init__(self, classifier: nn.Module, discriminator: nn.Module | None, device: torch.device,
                 ctx: DistributedContext):
        ids = [device.index] if device.type == "cuda" else None
        self.state = _ShareState(ctx.world_size)
        self.classifier = nn.parallel.DistributedDataParallel(classifier, device_ids=ids)
        self.classifier.register_comm_hook(self.state, _weighted_allreduce)
        self.discriminator = None
        if discriminator is not None:
            self.discriminator = nn.parallel.DistributedDataParallel(discriminator, device_ids=ids)
            self.discriminator.register_comm_hook(self.state, _weighted_allreduce)

    def set_share(self, local_n: int, global_n: int) -> None:
        self.state.scale = local_n * self.state.world_size / global_n


def all_reduce_sum(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """Element-wise sums over the ranks of same-shaped tensors (one collective)."""
    flat = torch.cat([t.detach().reshape(-1).double() for t in tensors])
    dist.all_reduce(flat)
    out, start = [], 0
    for t in tensors:
        out.append(flat[start:start + t.numel()].reshape(t.shape).to(t.dtype))
        start += t.numel()
    return out


def all_gather_rows(x: torch.Tensor) -> torch.Tensor:
    """Concatenate [n_r, ...] tensors from every rank (n_r may differ), rank order."""
    n = torch.tensor([x.shape[0]], device=x.device)
    sizes = [torch.zeros_like(n) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, n)
    sizes = [int(s) for s in sizes]
    padded = torch.zeros((max(sizes), *x.shape[1:]), dtype=x.dtype, device=x.device)
    padded[:x.shape[0]] = x
    parts = [torch.zeros_like(padded) for _ in sizes]
    dist.all_gather(parts, padded)
    return torch.cat([p[:s] for p, s in zip(parts, sizes)])


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank when `flag` is true on at least one (a collective: all ranks call it)."""
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())
