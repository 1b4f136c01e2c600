"""`python -m atld train`: train and save a run directory (card.json + safetensors files)."""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
import time
from pathlib import Path

from atld.config.fields import add_flags, from_flags
from atld.config.train import TrainConfig
from atld.errors import ConfigError, TrainingCollapsed, TrainingDiverged
from atld.fileio import printable
from atld.runs.card import default_run_name, read_card, runs_dir


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, help="a new run directory (default: the runs directory, ATLD_RUNS_DIR or "
                                            "runs/, then <dataset>-<method>-<time>)")
    p.add_argument("--resume", type=Path, metavar="DIR", help="continue the run in DIR (to --epochs in total)")
    p.add_argument("--data-root", type=Path, help="local folder holding the dataset files")
    p.add_argument("--download", action="store_true", help="let torchvision download a missing dataset")
    p.add_argument("--name", help="a display name stored in the card")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_flags(p, TrainConfig)


def run(args: argparse.Namespace) -> int:
    if args.resume is not None:
        card = read_card(args.resume)  # first: a missing or hostile run is the more basic error
        if args.out is not None and args.out != args.resume:
            raise ConfigError("give either --out or --resume (the resumed run stays in its directory)")
        try:
            saved = TrainConfig.from_dict(card["config"])
        except ConfigError as exc:
            raise ConfigError(f"the run's config is invalid: {exc}") from None
        config = from_flags(TrainConfig, args, base=saved)
        run_dir = args.resume
    else:
        config = from_flags(TrainConfig, args)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        run_dir = args.out or runs_dir() / default_run_name(config.dataset, config.method, stamp)
    if args.name is not None and (len(args.name) > 256 or printable(args.name, 256) != args.name):
        raise ConfigError("--name must be at most 256 printable characters")

    from atld.data.loaders import load_dataset
    from atld.train.distributed import from_env, shutdown
    from atld.train.trainer import Progress, train

    data = load_dataset(config.dataset, args.data_root, args.download)  # fail fast, before any output
    distributed = from_env()  # a DDP rank when launched by torchrun (WORLD_SIZE > 1), else None
    if distributed is not None and not distributed.is_main:
        args.quiet = True  # rank 0 reports
    stop = {"signal": None}

    def on_signal(signum, _frame):
        stop["signal"] = signal.Signals(signum).name

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    bar = None
    try:
        if not args.quiet:
            from tqdm import tqdm

            bar = tqdm(total=config.epochs, file=sys.stderr, unit="epoch", dynamic_ncols=True)
            bar.update(0)

        def progress(event: Progress) -> None:
            if bar is not None and event.kind == "epoch":
                m = event.metrics
                bar.n = event.epoch
                bar.set_postfix({k: f"{m[k]:.3f}" for k in ("loss", "test_clean_acc", "test_pgd20_acc", "d_auc", "s")
                                 if k in m}, refresh=True)

        result = train(config, data=data, run_dir=run_dir, name=args.name,
                       command="python -m atld " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
                       progress=progress, should_stop=lambda: stop["signal"] is not None,
                       resume=args.resume is not None, distributed=distributed)
    except (TrainingDiverged, TrainingCollapsed) as exc:  # one line, exit status 2 (atld.cli.main)
        raise type(exc)(f"{exc}; run directory: {run_dir}") from None
    finally:
        if bar is not None:
            bar.close()
        for s, handler in old.items():
            signal.signal(s, handler)
        if distributed is not None:
            shutdown()
    if distributed is not None and not distributed.is_main:
        return 130 if result.status == "stopped" else 0
    last = result.card["metrics"][-1] if result.card["metrics"] else {}
    if result.status == "stopped":
        sys.stderr.write(f"stopped by {stop['signal']} after epoch {result.card['epochs_done']}; "
                         f"resume with: python -m atld train --resume {run_dir}\n")
        return 130
    summary = ", ".join(f"{k} {last[k]:.4f}" for k in ("test_clean_acc", "test_pgd20_acc") if k in last)
    print(f"saved {run_dir} ({result.card['epochs_done']} epochs; {summary})")
    return 0
