"""CPU training speed on `digits`: seconds per epoch for natural, PGD-AT and ATLD,
measured in one run, with the ATLD / natural ratio.

What is timed: the trainer's own per-epoch wall time (the card's `seconds`: the training steps
only; the per-epoch test evaluation is switched off with eval_limit=0 and no checkpoint is
written), and this process's CPU time per epoch. Each method first trains `--warmup` epochs that
are thrown away, then `--epochs` timed epochs; medians are reported. `--rounds` > 1 interleaves
the methods (natural, pgd-at, atld, natural, ...) so that load from other processes hits all of
them alike. On a busy shared machine wall time measures the neighbours; CPU time at one thread
(`--threads 1`) is then the steadier figure.

Goal: an ATLD epoch under 0.5 s on 2 cores and at most 3x a natural epoch.

    python -m benchmarks.bench_train                      # 1 warm-up + 5 epochs, 2 rounds
    python -m benchmarks.bench_train --threads 1 --json out.json
"""

from __future__ import annotations

import argparse
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

BENCHMARKED_METHODS = ("natural", "pgd-at", "atld")  # a natural baseline and the two adversarial steps


def epoch_seconds(method: str, data, warmup: int, epochs: int, seed: int, batch_size: int,
                  plain: bool = False) -> tuple[list[float], list[float]]:
    """(wall, cpu) seconds of each of `epochs` timed epochs after `warmup` (>= 1) discarded ones.

    wall: the trainer's per-epoch timing. cpu: this process's CPU time between consecutive
    epoch-end events (all threads summed, so compare it only at equal thread counts).
    plain: the path without the CPU fast-path pieces (NCHW tensors, for-loop SGD), for an A/B."""
    config = TrainConfig(dataset="digits", method=method, epochs=warmup + epochs, batch_size=batch_size,
                         seed=seed, device="cpu", eval_limit=0, channels_last=not plain)
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
    return wall, cpu


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--warmup", type=int, default=1, help="discarded epochs per method and round (>= 1)")
    p.add_argument("--epochs", type=int, default=5, help="timed epochs per method and round")
    p.add_argument("--rounds", type=int, default=2, help="interleaved rounds over the methods")
    p.add_argument("--batch-size", type=int, default=50, help="images per step (the default config's 50)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--methods", nargs="+", default=list(BENCHMARKED_METHODS), choices=BENCHMARKED_METHODS)
    p.add_argument("--compare-plain", action="store_true",
                   help="also time each method without channels_last and fused SGD, interleaved (rows 'METHOD/plain')")
    p.add_argument("--json", help="also write the results to this JSON file")
    args = p.parse_args(argv)
    if args.warmup < 1 or args.epochs < 1 or args.rounds < 1:
        p.error("--warmup, --epochs and --rounds must be >= 1")
    if args.threads:
        torch.set_num_threads(args.threads)

    data = load_dataset("digits")
    variants = [(m, False) for m in args.methods] + ([(m, True) for m in args.methods] if args.compare_plain else [])
    label = {v: v[0] + ("/plain" if v[1] else "") for v in variants}
    wall: dict[str, list[float]] = {label[v]: [] for v in variants}
    cpu: dict[str, list[float]] = {label[v]: [] for v in variants}
    load_before = os.getloadavg()
    for r in range(args.rounds):
        for method, plain in variants:
            w, c = epoch_seconds(method, data, args.warmup, args.epochs, seed=r, batch_size=args.batch_size,
                                 plain=plain)
            wall[label[method, plain]] += w
            cpu[label[method, plain]] += c
    load_after = os.getloadavg()

    med_wall = {m: statistics.median(t) for m, t in wall.items()}
    med_cpu = {m: statistics.median(t) for m, t in cpu.items()}
    print(f"digits, {len(data.y_train)} training images, batch {args.batch_size}, device cpu, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}, python {platform.python_version()}")
    print(f"1-min load average before / after: {load_before[0]:.2f} / {load_after[0]:.2f} "
          f"(machine has {os.cpu_count()} CPUs)")
    print(f"{'method':<14} {'wall s/epoch':>13} {'(min-max)':>15} {'x nat':>6} {'cpu s/epoch':>12} {'x nat':>6} "
          f"{'n':>3}")
    for m in wall:
        base = "natural/plain" if m.endswith("/plain") else "natural"
        rw = f"{med_wall[m] / med_wall[base]:.2f}" if base in med_wall else "-"
        rc = f"{med_cpu[m] / med_cpu[base]:.2f}" if base in med_cpu else "-"
        span = f"{min(wall[m]):.3f}-{max(wall[m]):.3f}"
        print(f"{m:<14} {med_wall[m]:>13.3f} {span:>15} {rw:>6} {med_cpu[m]:>12.3f} {rc:>6} {len(wall[m]):>3}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                       "torch": torch.__version__, "threads": torch.get_num_threads(),
                       "loadavg_before": load_before, "loadavg_after": load_after,
                       "command": " ".join(sys.argv), "wall": wall, "cpu": cpu,
                       "median_wall": med_wall, "median_cpu": med_cpu}, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
