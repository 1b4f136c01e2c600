"""`python -m atld eval`: evaluate a checkpoint under attacks × inference modes (docs/evaluation.md).

    python -m atld eval --checkpoint checkpoints/digits-atld --attacks natural,pgd20,autoattack,adaptive \\
        --inference atld-,atld,atld+ --limit 200 --format table --store
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from atld.config.eval import EvalConfig
from atld.config.fields import add_flags, from_flags
from atld.config.vocab import OutputFormat
from atld.errors import ConfigError


def _floats(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text[:60]!r}") from None
    if not 1 <= len(values) <= 100:
        raise argparse.ArgumentTypeError("expected 1 to 100 numbers")
    return values


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", type=Path, required=True, metavar="DIR",
                   help="run directory (card.json + safetensors files)")
    p.add_argument("--data-root", type=Path, help="local folder holding the dataset files (not needed for digits)")
    p.add_argument("--format", choices=tuple(OutputFormat), default=OutputFormat.TABLE, help="output format")
    p.add_argument("--out", type=Path, help="write the output to this file instead of stdout")
    p.add_argument("--store", action="store_true", help="also store the results in the checkpoint's card.json")
    p.add_argument("--curve", type=_floats, metavar="EPS_LIST",
                   help="instead: robust accuracy vs these ε (first attack, first inference)")
    p.add_argument("--diagnose", action="store_true",
                   help="instead: gradient-masking diagnostics (PGD steps curve, PGD-20 vs AutoAttack, Square)")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    add_flags(p, EvalConfig)


def run(args: argparse.Namespace) -> int:
    from atld.device import resolve_device
    from atld.evaluate import EvalReport, evaluate, masking_diagnostics, robust_accuracy_curve, store_evaluation
    from atld.fileio import atomic_write, check_output_file, now_iso
    from atld.runs.rundir import RunWriter
    from atld.runs.store import load_checkpoint

    config = from_flags(EvalConfig, args)  # validates every flag before any work
    if args.curve is not None and args.diagnose:
        raise ConfigError("give either --curve or --diagnose")
    if args.out is not None:
        check_output_file(args.out)
    if args.store:  # a run we may write, checked before the work rather than after it
        RunWriter.claim(args.checkpoint, new=False).close()
    device = resolve_device(config.device)
    run_ = load_checkpoint(args.checkpoint, device=device)

    from atld.data.loaders import load_dataset

    data = load_dataset(run_.config.dataset, args.data_root)

    def progress(done: int, total: int, label: str) -> None:
        if not args.quiet:
            sys.stderr.write(f"[{done}/{total}] {label}\n")

    mode = (config.inferences or ("atld-",))[0]
    extra = ""
    common = dict(limit=config.limit, data=data, seed=config.seed, batch_size=config.batch_size, device=config.device)
    if args.curve is not None:
        rows = robust_accuracy_curve(run_, args.curve, attack=config.attacks[0], inference=mode, progress=progress,
                                     **common)
        report = EvalReport(rows, _meta(run_, config, rows, now_iso()))
    elif args.diagnose:
        diag = masking_diagnostics(run_, inference=mode, epsilon=config.epsilon, square_queries=config.square_queries,
                                   **common)
        report = EvalReport(diag.rows, _meta(run_, config, diag.rows, now_iso()))
        report.meta["masking_findings"] = diag.findings
        report.meta["pgd_steps_curve"] = diag.steps_curve
        extra = "\n" + diag.to_text()
    else:
        report = evaluate(run_, config, data=data, progress=progress)
    fmt = OutputFormat(args.format)
    text = (report.to_table() + extra if fmt is OutputFormat.TABLE
            else report.to_csv() if fmt is OutputFormat.CSV else report.to_json())
    if args.out is None:
        sys.stdout.write(text)
    else:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(args.out, text.encode())
    if args.store:
        store_evaluation(args.checkpoint, report)
        sys.stderr.write(f"stored {len(report.rows)} rows in {args.checkpoint / 'card.json'} under 'evaluations'\n")
    return 0


def _meta(run, config: EvalConfig, rows: list[dict], date: str) -> dict:
    import torch

    return {"checkpoint": run.name, "path": str(run.path), "model_hash": run.model_hash,
            "dataset": run.config.dataset, "n": rows[0]["n"] if rows else 0, "seed": config.seed,
            "device": config.device, "torch": torch.__version__, "date": date, "config": config.to_dict()}
