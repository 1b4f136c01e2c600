"""Where an ATLD training step's time goes on the CPU, and its floor: the classifier work the method
needs, as a multiple of a natural step, all measured in one run.

An ATLD step (docs/method.md §2) needs of the classifier f: three forward passes (z_nat without a
graph; f(x0) and f(x_adv) with one), three image-gradient passes (the perturbation's, and the
two that give s) and one backward pass to the parameters, then the optimizer step; the rest is
the discriminator D (three calls on each of two batches, three backward passes, two SGD steps)
and small tensor work. A natural step is one forward pass, one backward pass and the step. Each
of those passes is timed here on its own, on the training batches, with the trainer's own model,
layout and optimizers, beside the real natural and ATLD steps (`atld.methods`), interleaved over
`--rounds`; medians of milliseconds per step.

    python -m benchmarks.bench_atld_step --threads 1
    python -m benchmarks.bench_atld_step --threads 1 --dataset mnist --data-root /work/shared/data/mnist
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from atld.config.train import TrainConfig
from atld.data import load_dataset
from atld.data.loaders import as_float01
from atld.methods import METHODS
from atld.methods.base import descend
from atld.methods.losses import natural_bce, smooth_labels, soft_cross_entropy
from atld.train import trainer


def _session(dataset: str, method: str, data, seed: int):
    config = TrainConfig(dataset=dataset, method=method, epochs=1, seed=seed, device="cpu", eval_limit=0).resolved()
    return trainer._build(config, data, None, None, None, None, None)


def _batches(session, steps: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    bs = session.config.batch_size
    out = []
    for i in range(steps):
        x = as_float01(session.x_all[i * bs:(i + 1) * bs])
        out.append((x.contiguous(memory_format=torch.channels_last) if session.channels_last else x,
                    session.y_all[i * bs:(i + 1) * bs]))
    return out


def _time(fn, batches) -> float:
    """Milliseconds per batch of fn(x, y) over the batches."""
    start = time.perf_counter()
    for x, y in batches:
        fn(x, y)
    return (time.perf_counter() - start) / len(batches) * 1e3


class _Clock:
    """Milliseconds per batch of the named parts of a loop body, each timed in place (a part run
    apart from the others would find its inputs out of cache and look slower than it is)."""

    def __init__(self):
        self.ms: dict[str, float] = {}
        self.last = time.perf_counter()

    def lap(self, name: str | None = None) -> None:
        now = time.perf_counter()
        if name is not None:
            self.ms[name] = self.ms.get(name, 0.0) + (now - self.last) * 1e3
        self.last = now

    def per_batch(self, n: int) -> dict[str, float]:
        return {k: v / n for k, v in self.ms.items()}


def classifier_pass_times(session, batches) -> dict[str, float]:
    """ms per batch of each classifier pass an ATLD step makes, timed in place (the ATLD session's
    model and optimizer): a forward without graph in eval mode, a forward with graph in train mode,
    an image-gradient pass, a parameter backward pass, the optimizer step."""
    f, opt, cfg = session.classifier, session.optimizer, session.config
    params = [p for p in f.parameters() if p.requires_grad]
    clock = _Clock()
    for x, y in batches:
        target = smooth_labels(y, cfg.spec.num_classes, cfg.label_smoothing)
        x_leaf = x.clone().requires_grad_(True)
        f.eval()
        clock.lap()
        with torch.no_grad():
            f(x)
        clock.lap("forward, no graph (eval)")
        f.train()
        clock.lap()
        loss = soft_cross_entropy(f(x_leaf), target)
        clock.lap("forward with graph")
        torch.autograd.grad(loss, x_leaf, retain_graph=True)
        clock.lap("image-gradient pass")
        opt.zero_grad(set_to_none=True)
        loss.backward(inputs=params)
        clock.lap("parameter backward")
        opt.step()
        clock.lap("optimizer step")
    return clock.per_batch(len(batches))


def natural_pass_times(session, batches) -> dict[str, float]:
    """ms per batch of a natural step's parts, timed in place: forward (train mode), backward, step."""
    f, opt = session.classifier, session.optimizer
    f.train()
    clock = _Clock()
    for x, y in batches:
        clock.lap()
        loss = F.cross_entropy(f(x), y)
        clock.lap("forward")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        clock.lap("backward")
        opt.step()
        clock.lap("optimizer step")
    return clock.per_batch(len(batches))


def d_update_time(session, batches) -> float:
    """ms per discriminator update as ATLD makes it (two calls, the four-term loss, SGD)."""
    f, D, cfg = session.classifier, session.discriminator, session.config
    f.eval()
    with torch.no_grad():
        latents = [(f(x).float(), f(x.flip(-1)).float(), smooth_labels(y, cfg.spec.num_classes, cfg.label_smoothing))
                   for x, y in batches]
    D.train()

    def update(z_adv, z_nat, target):
        d_adv, c_adv = D(z_adv)
        d_nat, c_nat = D(z_nat)
        descend(session.d_optimizer, natural_bce(d_adv, natural=False) + natural_bce(d_nat, natural=True)
                + soft_cross_entropy(c_nat, target) + soft_cross_entropy(c_adv, target))

    start = time.perf_counter()
    for z in latents:
        update(*z)
    return (time.perf_counter() - start) / len(latents) * 1e3


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="digits")
    p.add_argument("--data-root")
    p.add_argument("--steps", type=int, default=20, help="batches per timing")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (medians are reported)")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    data = load_dataset(args.dataset, args.data_root)
    n = TrainConfig(dataset=data.spec.name).resolved_batch_size * (args.steps + 5)
    data = dataclasses.replace(data, x_train=data.x_train[:n], y_train=data.y_train[:n])

    natural, atld = _session(data.spec.name, "natural", data, 0), _session(data.spec.name, "atld", data, 0)
    nat_batches, atld_batches = _batches(natural, args.steps + 5), _batches(atld, args.steps + 5)
    for x, y in nat_batches[:5]:  # warm-up (oneDNN primitives, allocator)
        METHODS["natural"].step(natural.ctx, x, y)
    for x, y in atld_batches[:5]:
        METHODS["atld"].step(atld.ctx, x, y)
    nat_batches, atld_batches = nat_batches[5:], atld_batches[5:]

    rows: dict[str, list[float]] = {}
    load_before = os.getloadavg()
    for _ in range(args.rounds):
        got = {"natural step": _time(lambda x, y: METHODS["natural"].step(natural.ctx, x, y), nat_batches),
               "ATLD step": _time(lambda x, y: METHODS["atld"].step(atld.ctx, x, y), atld_batches)}
        got.update({f"natural: {k}": v for k, v in natural_pass_times(natural, nat_batches).items()})
        got.update({f"f: {k}": v for k, v in classifier_pass_times(atld, atld_batches).items()})
        got["D: one update"] = d_update_time(atld, atld_batches)
        for k, v in got.items():
            rows.setdefault(k, []).append(v)
    load_after = os.getloadavg()
    med = {k: statistics.median(v) for k, v in rows.items()}
    floor = (med["f: forward, no graph (eval)"] + 2 * med["f: forward with graph"] + 3 * med["f: image-gradient pass"]
             + med["f: parameter backward"] + med["f: optimizer step"])
    nat = med["natural step"]
    print(f"{data.spec.name}, batch {atld.config.batch_size}, arch {atld.config.arch}, {torch.get_num_threads()} "
          f"threads, torch {torch.__version__}; 1-min load before / after {load_before[0]:.2f} / {load_after[0]:.2f}")
    for k, v in med.items():
        print(f"  {k:<40} {v:7.2f} ms  ({min(rows[k]):.2f}-{max(rows[k]):.2f})")
    print(f"  {'classifier floor (3 fwd, 3 image grads, 1 bwd, step)':<40} {floor:7.2f} ms")
    print(f"ATLD / natural step: {med['ATLD step'] / nat:.2f}x; classifier floor / natural step: {floor / nat:.2f}x; "
          f"rest of the ATLD step (D, small ops): {med['ATLD step'] - floor:.2f} ms "
          f"(D updates alone: {atld.config.d_updates} x {med['D: one update']:.2f} ms)")
    print("command: python -m benchmarks.bench_atld_step " + " ".join(sys.argv[1:] if argv is None else argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
