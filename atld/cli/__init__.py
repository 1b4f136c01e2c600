"""Command line: `python -m atld <command> ...`.

Each command is a module of this package with `add_arguments(parser)` and `run(args) -> int`;
its flags are generated from the config dataclass it builds (`atld.config.fields`). Every user
error (`ATLDError`, a bad flag, a bad environment setting, an OS error) exits non-zero with one
line on stderr, never a traceback."""

from __future__ import annotations

import argparse
import importlib
import sys

from atld.config.settings import settings
from atld.errors import ATLDError
from atld.fileio import os_error_line, printable
from atld.vocab import METHOD_NAMES

COMMANDS = {
    "train": ("atld.cli.train", f"train a classifier ({', '.join(METHOD_NAMES)}) and save a run directory"),
    "eval": ("atld.cli.eval", "evaluate a checkpoint under attacks and IMT inference"),
    "embed": ("atld.cli.embed", "project natural and perturbed latents to 2-D and compute gap numbers"),
    "import": ("atld.cli.import_", "import a weights file (.safetensors, or torch.save read with weights_only) as a "
                                   "run"),
}


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad flag in one line (no usage dump) and exits with status 2."""

    def error(self, message: str):
        sys.stderr.write(f"error: {printable(message, 400)} (see {self.prog} --help)\n")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m atld", description="ATLD lab: train, attack and inspect robust classifiers.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    for name, (module, help_text) in COMMANDS.items():
        mod = importlib.import_module(module)
        p = sub.add_parser(name, help=help_text, description=help_text,
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings()  # a bad ATLD_* environment variable is reported before any work
        return int(args._run(args) or 0)
    except ATLDError as exc:
        sys.stderr.write(f"error: {printable(exc, 1000)}\n")
        return 2
    except OSError as exc:  # e.g. writing --out on a full disk
        sys.stderr.write(f"error: {os_error_line(exc, args.command)}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted\n")
        return 130
