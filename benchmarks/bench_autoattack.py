"""AutoAttack speed on the CPU: standard ℓ∞ AutoAttack on MNIST test images against a small 28×28
network, where its time goes (per inner attack, wall and CPU seconds), and how batch size and
torch threads change it.

The network is the classifier of a run directory (--checkpoint, e.g. checkpoints/mnist-pgd-at, the
lab's `fast-cnn`); without --checkpoint a freshly initialised `fast-cnn` is attacked, which only
measures the cost of an attack that succeeds at once.

The attack is `atld.attacks.library.autoattack` (the official code's standard version, run
inner attack by inner attack, checked equal to the package's own `run_standard_evaluation`
with --check-library). Every line records the load average, threads and batch size.

    python -m benchmarks.bench_autoattack --checkpoint RUN_DIR --data-root ../shared/data/mnist \\
        --n 1000 --threads 2 --batch-size 1000
    python -m benchmarks.bench_autoattack ... --n 100 --check-library     # equal to the package's loop
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import torch
from torch import nn

from atld.attacks.library import autoattack
from atld.attacks.progress import BatchEvent
from atld.data.loaders import as_float01, load_dataset


def load_net(run_dir: Path | None) -> nn.Module:
    """The classifier of a run directory (loaded and validated by the lab), or a fresh `fast-cnn`."""
    if run_dir is not None:
        from atld.runs.store import load_checkpoint

        return load_checkpoint(run_dir, device="cpu").classifier.eval()
    from atld.data.registry import get_spec
    from atld.models.registry import build_classifier

    torch.manual_seed(0)
    return build_classifier("fast-cnn", get_spec("mnist")).eval()


def load_avg() -> str:
    return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


class PartClock:
    """Wall and CPU seconds per inner attack, from the attack's batch events."""

    def __init__(self):
        self.parts: list[dict] = []
        self._t0 = self._c0 = 0.0

    def __call__(self, event: BatchEvent) -> None:
        now, cpu = time.perf_counter(), time.process_time()
        if event.batch == 0:
            self.parts.append({"part": event.part, "images": event.images, "batches": event.batches,
                               "wall": 0.0, "cpu": 0.0, "load": load_avg()})
            self._t0, self._c0 = now, cpu
        part = self.parts[-1]
        part["wall"], part["cpu"] = now - self._t0, cpu - self._c0


def run(net, x, y, epsilon: float, batch_size: int, seed: int) -> tuple[torch.Tensor, PartClock, float, float]:
    clock = PartClock()
    t0, c0 = time.perf_counter(), time.process_time()
    x_adv = autoattack(net, x, y, epsilon, device="cpu", seed=seed, batch_size=batch_size, progress=clock)
    return x_adv, clock, time.perf_counter() - t0, time.process_time() - c0


def robust_accuracy(net, x_adv, y) -> float:
    with torch.no_grad():
        return (net(x_adv).argmax(1) == y).float().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, help="run directory (e.g. checkpoints/mnist-pgd-at)")
    parser.add_argument("--data-root", type=Path, required=True, help="folder holding MNIST/raw")
    parser.add_argument("--n", type=int, default=1000, help="first N MNIST test images")
    parser.add_argument("--epsilon", type=float, default=0.3)
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--batch-size", type=int, nargs="+", default=[1000], help="one run per batch size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--check-library", action="store_true",
                        help="also run the package's run_standard_evaluation and check the result is equal")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    net = load_net(args.checkpoint)
    data = load_dataset("mnist", args.data_root)
    x, y = as_float01(data.x_test[:args.n]), data.y_test[:args.n]
    with torch.no_grad():
        natural = (net(x).argmax(1) == y).float().mean().item()
    print(f"{time.strftime('%Y-%m-%d %H:%M %Z')}, {platform.machine()} {os.cpu_count()} cores, torch "
          f"{torch.__version__}, threads {torch.get_num_threads()}, model "
          f"{args.checkpoint.name if args.checkpoint else 'fresh fast-cnn'}, n {len(y)}, eps {args.epsilon}, "
          f"natural accuracy {100 * natural:.1f} %")
    for batch_size in args.batch_size:
        before = load_avg()
        x_adv, clock, wall, cpu = run(net, x, y, args.epsilon, batch_size, args.seed)
        print(f"batch {batch_size}: AutoAttack {100 * robust_accuracy(net, x_adv, y):.1f} %, {wall:.1f} s wall, "
              f"{cpu:.1f} s CPU (load {before} before, {load_avg()} after)")
        for p in clock.parts:
            print(f"  {p['part']:<8} {p['images']:5d} images in {p['batches']} batches: {p['wall']:7.1f} s wall, "
                  f"{p['cpu']:7.1f} s CPU (load at start {p['load']})")
    if args.check_library:
        from pyautoattack import AutoAttack

        torch.manual_seed(0)
        adversary = AutoAttack(net, norm="Linf", eps=args.epsilon, version="standard", device="cpu", seed=args.seed)
        t0 = time.perf_counter()
        theirs, _ = adversary.run_standard_evaluation(x, y, batch_size=args.batch_size[0])
        seconds = time.perf_counter() - t0
        ours = autoattack(net, x, y, args.epsilon, device="cpu", seed=args.seed, batch_size=args.batch_size[0])
        print(f"package run_standard_evaluation: {100 * robust_accuracy(net, theirs, y):.1f} %, {seconds:.1f} s; "
              f"equal to ours: {torch.equal(ours, theirs)}")


if __name__ == "__main__":
    main()
