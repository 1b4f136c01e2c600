"""Where the app finds checkpoints: the shipped ones (`checkpoints/` beside app.py) and the app's
own runs directory (default `runs/`, or the environment variable ATLD_RUNS_DIR). Streamlit-free.

Listing is deliberately torch-free: the sidebar and the Home page only read `card.json` files
(`peek_card`), so the first page renders before torch is imported (importing torch takes 1.5 s on
an idle 2-core machine and several seconds on a busy one). Loading a model goes through
`atld.checkpoints.load_checkpoint`, which validates the card fully (schema, hashes, shapes)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

CARD = "card.json"  # the name atld.checkpoints writes (kept equal by test_app_logic)
MAX_CARD_BYTES = 16 * 2**20  # as atld.checkpoints: a bigger card is hostile or broken
_CARD_FIELDS = {"format": str, "method": str, "dataset": str, "arch": str, "config": dict, "seed": int,
                "epochs_done": int, "metrics": list, "files": dict, "has_discriminator": bool, "status": str}

APP_ROOT = Path(__file__).resolve().parents[2]  # the repository root, where app.py lives


def runs_dir() -> Path:
    """The directory the app trains into (ATLD_RUNS_DIR, else <repo>/runs)."""
    return Path(os.environ.get("ATLD_RUNS_DIR") or APP_ROOT / "runs")


def shipped_dir() -> Path:
    """The shipped checkpoints (ATLD_CHECKPOINTS_DIR, else <repo>/checkpoints)."""
    return Path(os.environ.get("ATLD_CHECKPOINTS_DIR") or APP_ROOT / "checkpoints")


@dataclass(frozen=True)
class RunEntry:
    """One checkpoint the picker can offer. `label` is unique among the entries of one listing."""
    path: Path
    label: str  # shown in the picker, e.g. "digits-atld (shipped)"
    source: str  # "shipped" | "runs"
    dataset: str
    method: str
    status: str  # the card's status: finished | stopped | running | diverged
    epochs_done: int
    has_discriminator: bool
    model_hash: str  # SHA-256 of model.safetensors (part of every cache key)


def peek_card(run_dir: str | os.PathLike) -> dict | None:
    """The card of a run directory for display, or None when it is not a plausible run (missing,
    a symbolic link, too large, not JSON, a required field missing or of the wrong type). Reads
    one small JSON file; never touches tensors (load_checkpoint checks everything else)."""
    path = Path(run_dir) / CARD
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > MAX_CARD_BYTES:
            return None
        card = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError):  # RecursionError: a deeply nested (hostile) card
        return None
    if not isinstance(card, dict) or card.get("format") != "atld-run":
        return None
    for key, kind in _CARD_FIELDS.items():
        value = card.get(key)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            return None
    return card


def _run_dirs(root: Path) -> list[Path]:
    """Directories directly under `root` holding a card, sorted by name (as atld.checkpoints.list_runs)."""
    if not root.is_dir():
        return []
    return [p for p in sorted(root.iterdir()) if p.is_dir() and not p.is_symlink() and (p / CARD).is_file()]


def discover_runs(dirs: list[tuple[str, Path]] | None = None) -> list[RunEntry]:
    """Every loadable run under the given (source, directory) pairs, shipped first.

    Runs with no finished epoch yet and directories whose card is not a plausible run card are
    skipped; a run that lists but fails the full check at load time shows that error instead."""
    if dirs is None:
        dirs = [("shipped", shipped_dir()), ("runs", runs_dir())]
    out: list[RunEntry] = []
    seen: set[Path] = set()
    for source, root in dirs:
        for path in _run_dirs(root):
            real = path.resolve()
            if real in seen:
                continue
            seen.add(real)
            card = peek_card(path)
            if card is None or card["epochs_done"] < 1:
                continue
            out.append(RunEntry(path, f"{path.name} ({source})", source, card["dataset"], card["method"],
                                card["status"], card["epochs_done"], card["has_discriminator"],
                                (card.get("sha256") or {}).get(str(card["files"].get("model")), "")))
    return out
