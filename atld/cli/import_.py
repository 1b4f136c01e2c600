"""`python -m atld import`: turn a weights file from outside the lab into a lab run (docs/import.md).

    python -m atld import Carmon2019Unlabeled.pt --arch rb-wrn-28-10 --dataset cifar10
    python -m atld import model.safetensors --arch dm-wrn-70-16-swish --dataset cifar10 --name rebuffi

Accepts .safetensors and torch.save archives (read only with torch.load(weights_only=True)); every
claim is checked first (`atld.runs.importer`). Prints the new run, its clean accuracy on the
dataset's shipped sample (a warning when near chance) and the commands that attack it.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from atld.data.registry import DATASET_NAMES, get_spec


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", type=Path, help="the weights file: .safetensors, or .pt / .pth saved with torch.save")
    p.add_argument("--arch", required=True,
                   help="architecture whose parameter names and shapes the file has: rb-wrn-<depth>-<widen> "
                        "(RobustBench's WideResNet, e.g. rb-wrn-28-10, rb-wrn-34-10, rb-wrn-34-20), "
                        "dm-wrn-<depth>-<widen>[-swish] (DeepMind's, e.g. dm-wrn-70-16), rb-resnet18, "
                        "rb-preact-resnet18[-bn], dm-preact-resnet18[-swish], or one of the lab's (wrn-28-10, ...)")
    p.add_argument("--dataset", required=True, choices=DATASET_NAMES, help="the dataset the model classifies")
    p.add_argument("--normalization", default="auto", metavar="auto|none|dataset|MEAN/STD",
                   help="input normalization inside the model: auto (rb-*: none, as RobustBench's models take [0, 1] "
                        "inputs; dm-* and the lab's: the dataset's mean/std), none, dataset, or e.g. "
                        "0.4914,0.4822,0.4465/0.2471,0.2435,0.2616")
    p.add_argument("--name", help="the run's name (default <dataset>-imported-<file>-<time>)")
    p.add_argument("--runs-dir", type=Path, help="where the run goes (default: ATLD_RUNS_DIR or ./runs)")
    p.add_argument("--check-images", type=int, default=200, metavar="N",
                   help="images of the dataset's shipped sample for the clean-accuracy check (0: skip)")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N (the sample check)")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")


def run(args: argparse.Namespace) -> int:
    import torch

    from atld.config.settings import settings
    from atld.device import resolve_device
    from atld.fileio import printable
    from atld.runs.importer import estimate_seconds, import_weights

    torch.set_num_threads(settings().torch_threads)
    device = resolve_device(args.device)
    def progress(event) -> None:
        if args.quiet:
            return
        if event.stage == "checking" and args.check_images > 0:  # the file passed: say what the check costs
            seconds = estimate_seconds(args.arch, args.dataset, args.check_images, "forward", str(device))
            if seconds is not None and seconds > 20:
                sys.stderr.write(f"  the sample check of {args.check_images} images takes about {seconds:.0f} s "
                                 "here (--check-images 0 skips it)\n")
        if event.stage == "sample":
            sys.stderr.write(f"\r  sample check: {event.done}/{event.total} images")
            if event.done == event.total:
                sys.stderr.write("\n")

    command = "python -m atld import " + " ".join(shlex.quote(a) for a in sys.argv[2:]) \
        if len(sys.argv) > 1 and sys.argv[1] == "import" else None
    result = import_weights(args.file, args.arch, args.dataset, args.normalization, name=args.name,
                            runs_root=args.runs_dir, check_images=args.check_images, device=str(device),
                            command=command, progress=progress)
    norm = result.normalization
    how = f"{result.format}" + (f", weights under {result.wrapper}" if result.wrapper else "")
    lines = [f"imported {printable(args.file.name, 120)} ({how}; sha256 {result.sha256[:16]}…) as "
             f"{printable(result.path, 200)}",
             f"  {result.arch} on {result.dataset}; inputs in [0, 1], normalized inside the model "
             f"({norm.name}: mean {_numbers(norm.mean)}, std {_numbers(norm.std)})"]
    if result.dropped:
        lines.append(f"  left out: {result.dropped}")
    check = result.check
    if check is None:
        lines.append("  clean accuracy: not checked (no shipped sample for this dataset, or --check-images 0)")
    else:
        lines.append(f"  clean accuracy on {check.n} images of {check.sample}: {100 * check.accuracy:.1f}% "
                     f"({check.correct}/{check.n}; chance {100 * check.chance:.0f}%)")
    root = " --data-root DIR" if get_spec(result.dataset).needs_root else ""
    lines.append(f"  done in {result.seconds:.1f} s. Its verdict: python -m atld eval --checkpoint {result.path}{root} "
                 f"--limit 1000; its latent map: python -m atld embed --checkpoint {result.path}{root}")
    sys.stdout.write("\n".join(lines) + "\n")
    if result.warning:
        sys.stderr.write(f"warning: {result.warning}\n")
    return 0


def _numbers(values) -> str:
    return "(" + ", ".join(f"{v:g}" for v in values) + ")"
