"""`python -m atld eval`: evaluate a checkpoint under attacks × inference modes (docs/evaluation.md).

    python -m atld eval --checkpoint checkpoints/digits-atld --attacks natural,pgd20,autoattack,adaptive \\
        --inference atld-,atld,atld+ --limit 200 --format table --store
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from atld.evaluate.config import ATTACK_NAMES, DEFAULT_ATTACKS, EvalConfig

_DEFAULT = EvalConfig()


def _help(name: str) -> str:
    return EvalConfig.__dataclass_fields__[name].metadata["help"]


def _floats(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one number")
    return values


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", type=Path, required=True, metavar="DIR",
                   help="run directory (card.json + model.safetensors)")
    p.add_argument("--attacks", default=",".join(DEFAULT_ATTACKS), metavar="LIST",
                   help="comma-separated, from: " + ", ".join(ATTACK_NAMES))
    p.add_argument("--inference", default=None, metavar="LIST",
                   help="comma-separated, from: atld-, atld, atld+ (default: all the checkpoint supports)")
    p.add_argument("--limit", type=int, default=None, metavar="N", help=_help("limit"))
    p.add_argument("--epsilon", type=float, default=None, help=_help("epsilon"))
    p.add_argument("--seed", type=int, default=_DEFAULT.seed, help=_help("seed"))
    p.add_argument("--batch-size", type=int, default=_DEFAULT.batch_size, help=_help("batch_size"))
    p.add_argument("--device", default=_DEFAULT.device, help=_help("device"))
    p.add_argument("--apgd-steps", type=int, default=_DEFAULT.apgd_steps, help=_help("apgd_steps"))
    p.add_argument("--square-queries", type=int, default=_DEFAULT.square_queries, help=_help("square_queries"))
    p.add_argument("--data-root", type=Path, help="local folder holding the dataset files (not needed for digits)")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table", help="output format")
    p.add_argument("--out", type=Path, help="write the output to this file instead of stdout")
    p.add_argument("--store", action="store_true", help="also store the results in the checkpoint's card.json")
    p.add_argument("--curve", type=_floats, metavar="EPS_LIST",
                   help="instead: robust accuracy vs these ε (first attack, first inference)")
    p.add_argument("--diagnose", action="store_true",
                   help="instead: gradient-masking diagnostics (PGD steps curve, PGD-20 vs AutoAttack, Square)")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")


def run(args: argparse.Namespace) -> int:
    from atld.checkpoints import load_checkpoint
    from atld.data import load_dataset
    from atld.device import resolve_device
    from atld.errors import ConfigError
    from atld.evaluate import (EvalReport, evaluate, masking_diagnostics, robust_accuracy_curve,
                               store_evaluation)

    config = EvalConfig(attacks=args.attacks, inferences=args.inference, limit=args.limit, batch_size=args.batch_size,
                        epsilon=args.epsilon, seed=args.seed, device=args.device, apgd_steps=args.apgd_steps,
                        square_queries=args.square_queries)  # validates every flag before any work
    if args.curve is not None and args.diagnose:
        raise ConfigError("give either --curve or --diagnose")
    run_ = load_checkpoint(args.checkpoint, device=resolve_device(config.device))
    data = load_dataset(run_.config.dataset, args.data_root)

    def progress(done: int, total: int, label: str) -> None:
        if not args.quiet:
            sys.stderr.write(f"[{done}/{total}] {label}\n")

    mode = (config.inferences or ("atld-",))[0]
    extra = ""
    if args.curve is not None:
        rows = robust_accuracy_curve(run_, args.curve, attack=config.attacks[0], inference=mode, limit=config.limit,
                                     data=data, seed=config.seed, batch_size=config.batch_size, device=config.device,
                                     progress=progress)
        report = EvalReport(rows, _meta(run_, config, rows))
    elif args.diagnose:
        diag = masking_diagnostics(run_, inference=mode, limit=config.limit, epsilon=config.epsilon, data=data,
                                   seed=config.seed, batch_size=config.batch_size, device=config.device,
                                   square_queries=config.square_queries)
        report = EvalReport(diag.rows, _meta(run_, config, diag.rows))
        report.meta["masking_findings"] = diag.findings
        report.meta["pgd_steps_curve"] = diag.steps_curve
        extra = "\n" + diag.to_text()
    else:
        report = evaluate(run_, config, data=data, progress=progress)
    if args.format == "table":
        text = report.to_table() + extra
    else:
        text = report.to_csv() if args.format == "csv" else report.to_json()
    if args.out is None:
        sys.stdout.write(text)
    else:
        args.out.write_text(text)
    if args.store:
        store_evaluation(args.checkpoint, report)
        sys.stderr.write(f"stored {len(report.rows)} rows in {args.checkpoint / 'card.json'} under 'evaluations'\n")
    return 0


def _meta(run, config: EvalConfig, rows: list[dict]) -> dict:
    import datetime as dt

    import torch

    return {"checkpoint": run.name, "path": str(run.path), "model_hash": run.model_hash,
            "dataset": run.config.dataset, "n": rows[0]["n"] if rows else 0, "seed": config.seed,
            "device": config.device, "torch": torch.__version__,
            "date": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat(), "config": config.to_dict()}
