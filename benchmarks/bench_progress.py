"""How close the evaluation's time estimate comes: every `ProgressEvent.eta` of one evaluation on a
shipped checkpoint and its shipped test sample, against the time that was really left.

    python -m benchmarks.bench_progress cifar10-atld natural,pgd20,autoattack,adaptive 100
    python -m benchmarks.bench_progress mnist-atld natural,fgsm,pgd20,cw20,autoattack,adaptive 200

Prints the total time and, over the estimates made while more than `--min-left` seconds were left,
the lowest and highest ratio estimate / time left (1 = exact); --verbose prints every estimate.
"""

from __future__ import annotations

import argparse
import os
import time


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", help="a shipped checkpoint's name, e.g. cifar10-atld")
    p.add_argument("attacks", help="comma-separated attack names")
    p.add_argument("limit", type=int, help="test images")
    p.add_argument("--min-left", type=float, default=1.0, help="seconds: later estimates are not rated")
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args()

    import torch

    from atld.config.eval import EvalConfig
    from atld.config.settings import settings
    from atld.data.loaders import load_sample
    from atld.evaluate import evaluate
    from atld.runs.card import read_card

    torch.set_num_threads(1)
    path = os.path.join("checkpoints", args.checkpoint)
    data = load_sample(read_card(path)["dataset"], settings().samples_dir)
    events, t0 = [], time.perf_counter()
    evaluate(path, EvalConfig(attacks=tuple(args.attacks.split(",")), limit=args.limit, device="cpu"), data=data,
             progress=lambda e: events.append((time.perf_counter() - t0, e)))
    total = time.perf_counter() - t0
    rated = [(t, e, e.eta / (total - t)) for t, e in events if e.eta is not None and total - t > args.min_left]
    if args.verbose:
        for t, e, ratio in rated:
            print(f"t={t:7.1f} s  estimate {e.eta:7.1f} s  left {total - t:7.1f} s  ratio {ratio:5.2f}  {e.text()}")
    ratios = [r for _, _, r in rated]
    print(f"{args.checkpoint} {args.attacks} n={args.limit}: {total:.1f} s, {len(ratios)} estimates, "
          f"estimate / time left {min(ratios):.2f}-{max(ratios):.2f}" if ratios else "no estimate made")
    print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
