"""CPU training speed: seconds per epoch of natural, PGD-AT, Feature Scattering and ATLD, measured
in one run, with each method's ratio to natural.

Datasets: `digits` (the embedded default: all 1,347 training images, its recipe: small-cnn,
batch 50) or a file-based one such as `mnist` (`--data-root`; its recipe: fast-cnn, Adam, one-cycle,
batch 100, the ε ramp), timed on the first `--train-limit` training images (default 6,000: a
tenth of MNIST) and extrapolated linearly to the full training set (the "full epoch" columns:
seconds × full size / timed size; a step costs the same whichever images it gets).

What is timed: the trainer's own per-epoch wall time (the card's `seconds`: the training steps
only; the per-epoch test evaluation is switched off with eval_limit=0 and no checkpoint is
written), and this process's CPU time per epoch. Each method first trains `--warmup` epochs that
are thrown away, then `--epochs` timed epochs; medians are reported. `--rounds` > 1 interleaves
the methods (natural, pgd-at, feature-scatter, atld, natural, ...) so that load from other
processes hits all of them alike. On a busy shared machine wall time measures the neighbours; CPU
time at one thread (`--threads 1`) is then the steadier figure, and the ratios are what to compare.

Goal: an ATLD epoch at most 3x a natural epoch, on digits and on MNIST.

    python -m benchmarks.bench_train --threads 1 --rounds 2 --epochs 3
    python -m benchmarks.bench_train --threads 1 --rounds 2 --epochs 2 --dataset mnist \
        --data-root /work/shared/data/mnist --train-limit 6000 --json mnist.json
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import statistics
import sys
import time

import torch

import atld.train.trainer as trainer
from atld.config.train import TrainConfig
from atld.data import load_dataset
from atld.train.trainer import train

BENCHMARKED_METHODS = ("natural", "pgd-at", "feature-scatter", "atld")  # a natural baseline and every adversarial step


def epoch_seconds(method: str, data, warmup: int, epochs: int, seed: int, batch_size: int | None,
                  plain: bool = False, compile: bool = False) -> tuple[list[float], list[float], float]:
    """(wall, cpu) seconds of each of `epochs` timed epochs after `warmup` (>= 1) discarded ones, and
    the wall seconds of the first warm-up epoch (with `compile`, that epoch also compiles).

    wall: the trainer's per-epoch timing. cpu: this process's CPU time between consecutive
    epoch-end events (all threads summed, so compare it only at equal thread counts).
    plain: the path without the CPU fast-path pieces (NCHW tensors, for-loop SGD), for an A/B.
    compile: torch.compile the classifier (the config's `compile`)."""
    config = TrainConfig(dataset=data.spec.name, method=method, epochs=warmup + epochs, batch_size=batch_size,
                         seed=seed, device="cpu", eval_limit=0, channels_last=not plain, compile=compile)
    marks: list[float] = []

    def progress(event) -> None:
        if event.kind == "epoch":
            marks.append(time.process_time())

    fused = trainer.make_sgd
    if plain:
        trainer.make_sgd = lambda params, device, **hyper: torch.optim.SGD(params, **hyper)
    try:
        result = train(config, data=data, progress=progress)
    finally:
        trainer.make_sgd = fused
    wall = [m["seconds"] for m in result.card["metrics"][warmup:]]
    cpu = [b - a for a, b in zip(marks[warmup - 1:], marks[warmup:])]
    return wall, cpu, result.card["metrics"][0]["seconds"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--warmup", type=int, default=1, help="discarded epochs per method and round (>= 1)")
    p.add_argument("--epochs", type=int, default=5, help="timed epochs per method and round")
    p.add_argument("--rounds", type=int, default=2, help="interleaved rounds over the methods")
    p.add_argument("--dataset", default="digits", help="digits (embedded) or a file-based dataset such as mnist")
    p.add_argument("--data-root", help="folder of a file-based dataset (e.g. /work/shared/data/mnist)")
    p.add_argument("--train-limit", type=int, default=6000,
                   help="time on the first N training images (file-based datasets; 0: all); "
                        "the full epoch is extrapolated")
    p.add_argument("--batch-size", type=int, default=None, help="images per step (default: the dataset's recipe)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--methods", nargs="+", default=list(BENCHMARKED_METHODS), choices=BENCHMARKED_METHODS)
    p.add_argument("--compare-plain", action="store_true",
                   help="also time each method without channels_last and fused SGD, interleaved (rows 'METHOD/plain')")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the classifier (every method); the first warm-up epoch, which compiles, "
                        "is reported apart")
    p.add_argument("--json", help="also write the results to this JSON file")
    args = p.parse_args(argv)
    if args.warmup < 1 or args.epochs < 1 or args.rounds < 1 or args.train_limit < 0:
        p.error("--warmup, --epochs and --rounds must be >= 1, --train-limit >= 0")
    if args.threads:
        torch.set_num_threads(args.threads)

    data = load_dataset(args.dataset, args.data_root)
    n_full = len(data.y_train)
    if args.train_limit and data.spec.needs_root and args.train_limit < n_full:
        data = dataclasses.replace(data, x_train=data.x_train[:args.train_limit],
                                   y_train=data.y_train[:args.train_limit])
    n_timed, scale = len(data.y_train), n_full / len(data.y_train)
    batch = args.batch_size or TrainConfig(dataset=data.spec.name).resolved_batch_size
    variants = [(m, False) for m in args.methods] + ([(m, True) for m in args.methods] if args.compare_plain else [])
    label = {v: v[0] + ("/plain" if v[1] else "") for v in variants}
    wall: dict[str, list[float]] = {label[v]: [] for v in variants}
    cpu: dict[str, list[float]] = {label[v]: [] for v in variants}
    first: dict[str, list[float]] = {label[v]: [] for v in variants}
    load_before = os.getloadavg()
    for r in range(args.rounds):
        for method, plain in variants:
            w, c, f = epoch_seconds(method, data, args.warmup, args.epochs, seed=r, batch_size=batch,
                                    plain=plain, compile=args.compile)
            wall[label[method, plain]] += w
            cpu[label[method, plain]] += c
            first[label[method, plain]].append(f)
    load_after = os.getloadavg()

    med_wall = {m: statistics.median(t) for m, t in wall.items()}
    med_cpu = {m: statistics.median(t) for m, t in cpu.items()}
    print(f"{data.spec.name}, {n_timed} of {n_full} training images timed, batch {batch}, device cpu, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}, python {platform.python_version()}"
          + (", classifier compiled" if args.compile else ""))
    print(f"1-min load average before / after: {load_before[0]:.2f} / {load_after[0]:.2f} "
          f"(machine has {os.cpu_count()} CPUs)")
    print(f"{'method':<22} {'wall s/epoch':>13} {'(min-max)':>15} {'x nat':>6} {'cpu s/epoch':>12} {'x nat':>6} "
          f"{'n':>3} {'full epoch wall / cpu s':>24}")
    full_wall, full_cpu = {m: v * scale for m, v in med_wall.items()}, {m: v * scale for m, v in med_cpu.items()}
    ratio_wall, ratio_cpu = {}, {}
    for m in wall:
        base = "natural/plain" if m.endswith("/plain") else "natural"
        ratio_wall[m] = med_wall[m] / med_wall[base] if base in med_wall else None
        ratio_cpu[m] = med_cpu[m] / med_cpu[base] if base in med_cpu else None
        rw = f"{ratio_wall[m]:.2f}" if ratio_wall[m] is not None else "-"
        rc = f"{ratio_cpu[m]:.2f}" if ratio_cpu[m] is not None else "-"
        span = f"{min(wall[m]):.3f}-{max(wall[m]):.3f}"
        full = f"{full_wall[m]:.1f} / {full_cpu[m]:.1f}"
        print(f"{m:<22} {med_wall[m]:>13.3f} {span:>15} {rw:>6} {med_cpu[m]:>12.3f} {rc:>6} {len(wall[m]):>3} "
              f"{full:>24}")
    if args.compile:
        print("first warm-up epoch (compiles), wall s: "
              + ", ".join(f"{m} {statistics.median(t):.1f}" for m, t in first.items()))
    command = "python -m benchmarks.bench_train " + " ".join(sys.argv[1:] if argv is None else argv)
    print(f"command: {command}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                       "torch": torch.__version__, "threads": torch.get_num_threads(),
                       "loadavg_before": load_before, "loadavg_after": load_after,
                       "command": command, "dataset": data.spec.name, "n_timed": n_timed, "n_full": n_full,
                       "batch_size": batch, "wall": wall, "cpu": cpu, "median_wall": med_wall, "median_cpu": med_cpu,
                       "ratio_wall": ratio_wall, "ratio_cpu": ratio_cpu, "compile": args.compile,
                       "first_warmup_epoch_wall": first, "full_epoch_wall": full_wall,
                       "full_epoch_cpu": full_cpu}, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
