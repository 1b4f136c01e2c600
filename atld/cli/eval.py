"""`python -m atld eval`: evaluate a checkpoint under attacks × inference modes (docs/evaluation.md).

    python -m atld eval --checkpoint checkpoints/digits-atld --attacks natural,pgd20,autoattack,adaptive \\
        --inference atld-,atld,atld+ --limit 200 --format table --store
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from atld.config.eval import EvalConfig
from atld.config.fields import add_flags, from_flags
from atld.vocab import OutputFormat
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
    p.add_argument("--data-root", type=Path, help="local folder holding the dataset files "
                                                   "(default: the shipped test sample; not needed for digits)")
    p.add_argument("--format", choices=tuple(OutputFormat), default=OutputFormat.TABLE, help="output format")
    p.add_argument("--out", type=Path, help="write the output to this file instead of stdout ('-': stdout)")
    p.add_argument("--store", action="store_true", help="also store the results in the checkpoint's card.json")
    p.add_argument("--curve", type=_floats, metavar="EPS_LIST",
                   help="instead: robust accuracy vs these ε, for every attack and inference mode given (without "
                        "--attacks: pgd20, autoattack and, for IMT, adaptive)")
    p.add_argument("--diagnose", action="store_true",
                   help="instead: gradient-masking diagnostics on every inference mode (PGD steps curve with "
                        "restarts, PGD-20 vs AutoAttack, the adaptive attack through IMT, Square); without --attacks "
                        "it runs what every check needs")
    p.add_argument("--discriminator-only", action="store_true",
                   help="instead: only D's check (its AUC per batch and per image, IMT's step against the reversed "
                        "and a random step, the training-perturbation diagnostic); with --store it is written to "
                        "the card")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    add_flags(p, EvalConfig)


class ProgressBar:
    """A tqdm bar on stderr fed by `ProgressEvent`s: the attack run, its part and batch, the share
    of the work done and the time left; a line with the seconds of every finished part."""

    def __init__(self, enabled: bool):
        from tqdm import tqdm

        self.bar = tqdm(total=100, file=sys.stderr, disable=not enabled, dynamic_ncols=True, mininterval=0,
                        bar_format="{percentage:3.0f}%|{bar:16}| {desc}")

    def __call__(self, event) -> None:
        if event.part_seconds is not None:
            self.bar.write(f"  {event.task} · {event.part}: {event.images} images, {event.part_seconds:.1f} s",
                           file=sys.stderr)
        self.bar.n = round(100 * event.fraction, 2)
        self.bar.set_description_str(event.text(), refresh=True)

    def close(self) -> None:
        self.bar.close()


def run(args: argparse.Namespace) -> int:
    from atld.data.loaders import load_for_cli, sample_notice
    from atld.device import resolve_device
    from atld.evaluate import EvalReport, evaluate, masking_diagnostics, robust_accuracy_curve, store_evaluation
    from atld.evaluate.diagnostics import diagnostic_attacks
    from atld.evaluate.runner import discriminator_report, inference_modes, report_meta
    from atld.fileio import check_output_file, write_output
    from atld.runs.rundir import RunWriter
    from atld.runs.store import load_checkpoint

    import torch

    from atld.config.settings import settings

    config = from_flags(EvalConfig, args)  # validates every flag before any work
    # deliberate: on a shared CPU two OpenMP threads spin-wait for each other (AutoAttack ran 18x slower)
    torch.set_num_threads(settings().torch_threads)
    if sum((args.curve is not None, args.diagnose, args.discriminator_only)) > 1:
        raise ConfigError("give at most one of --curve, --diagnose and --discriminator-only")
    check_output_file(args.out, "--out")
    if args.store:  # a run we may write, checked before the work rather than after it
        RunWriter.claim(args.checkpoint, new=False).close()
    device = resolve_device(config.device)
    run_ = load_checkpoint(args.checkpoint, device=device)
    data = load_for_cli(run_.config.dataset, args.data_root, settings().samples_dir)
    sys.stderr.write(sample_notice(data))
    modes = inference_modes(run_, config)
    bar = ProgressBar(not args.quiet)
    extra = ""
    try:
        if args.curve is not None:
            if args.attacks is None:  # the upper bound beside the numbers to trust
                imt = any(m != "atld-" for m in modes)
                config = replace(config, attacks=("pgd20", "autoattack", *(("adaptive",) if imt else ())))
            rows = robust_accuracy_curve(run_, args.curve, attack=config.attacks, inference=modes, limit=config.limit,
                                         data=data, seed=config.seed, batch_size=config.batch_size,
                                         device=config.device, progress=bar)
            eps = run_.spec.epsilon_or_default(config.epsilon)
            report = EvalReport(rows, report_meta(run_, config, eps, device, rows[0]["n"] if rows else 0))
        elif args.diagnose:
            if args.attacks is None:
                config = replace(config, attacks=diagnostic_attacks(modes))
            diag = masking_diagnostics(run_, config, data=data, progress=bar)
            report = EvalReport(diag.rows, {**diag.meta, "masking_findings": diag.findings,
                                            "pgd_steps_curve": diag.steps_curve})
            steps = [f for f in diag.findings if f["check"] == "pgd-steps"]  # the rows' findings are in the table
            extra = "\nPGD steps curve:\n" + "".join(("[!] " if f["flagged"] else "[ok] ") + f["message"] + "\n"
                                                   for f in steps)
        elif args.discriminator_only:
            report = discriminator_report(run_, config, data=data, progress=bar)
        else:
            report = evaluate(run_, config, data=data, progress=bar)
    finally:
        bar.close()
    if run_.imported:  # an imported model: say where it came from, beside its verdict
        _note_import(run_, report, args.quiet)
    fmt = OutputFormat(args.format)
    text = (report.to_table() + extra if fmt is OutputFormat.TABLE
            else report.to_csv() if fmt is OutputFormat.CSV else report.to_json())
    write_output(args.out, text, "--out")
    if args.store:
        store_evaluation(args.checkpoint, report)
        where = args.checkpoint / "card.json"
        if report.rows:
            sys.stderr.write(f"stored {len(report.rows)} rows in {where} under 'evaluations'\n")
        if report.meta.get("discriminator"):
            sys.stderr.write(f"stored D's check in {where} under 'discriminator_check'\n")
    return 0


def _note_import(run_, report, quiet: bool) -> None:
    """An imported run's provenance in the report's meta and, unless quiet, one line on stderr."""
    from atld.fileio import printable

    source = run_.card["source"]
    report.meta.update(method=run_.method, source=source)
    if not quiet:
        check = source.get("sample_check")
        acc = f"; clean accuracy on its import sample {100 * check['accuracy']:.1f}%" if check else ""
        sys.stderr.write(f"imported model: {printable(source['file'], 120)} (sha256 {source['sha256'][:16]}…, "
                         f"{source['architecture']}, normalization {printable(source['normalization']['name'], 40)})"
                         f"{acc}; no discriminator, so only the bare classifier is evaluated\n")
