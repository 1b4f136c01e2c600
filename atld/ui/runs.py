"""Where the app finds checkpoints, and the one validated view of their cards (Streamlit-free).

Runs come from the shipped checkpoints (ATLD_CHECKPOINTS_DIR, default `checkpoints/`) and the
runs directory (ATLD_RUNS_DIR, default `runs/`). Listing is torch-free and cheap on every rerun:
a card is read and validated (`atld.runs.card.read_card`: the full schema) only when its file's
size, modification time or inode changed since the last look; pages get cards only through
`card_of`, so every card they show has passed the schema. Loading a model goes through
`atld.runs.store.load_checkpoint`, which checks everything else (tensors, budget)."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

from atld.config.settings import settings
from atld.errors import CheckpointError
from atld.fileio import printable
from atld.runs.card import CARD, list_runs, read_card

MAX_CACHED_CARDS = 1000

_cache: dict[Path, tuple[tuple[int, int, int], dict | None]] = {}
_cache_lock = threading.Lock()


@dataclass(frozen=True)
class RunEntry:
    """One checkpoint the picker can offer. `label` is unique among the entries of one listing."""
    path: Path
    label: str  # shown in the picker, e.g. "digits-atld (shipped)"
    source: str  # "shipped" | "runs"
    dataset: str
    method: str
    status: str  # the card's status: finished | stopped | running | diverged | failed
    epochs_done: int
    has_discriminator: bool
    model_hash: str  # SHA-256 of the model file (part of every cache key)


def card_of(run_dir: str | os.PathLike) -> dict | None:
    """The validated card of `run_dir`, or None when it has none or it fails the schema. Re-read
    only when card.json's size, modification time or inode changed."""
    path = Path(run_dir)
    try:
        info = os.stat(path / CARD, follow_symlinks=False)
    except OSError:
        return None
    signature = (info.st_size, info.st_mtime_ns, info.st_ino)
    with _cache_lock:
        hit = _cache.get(path)
    if hit is not None and hit[0] == signature:
        return hit[1]
    try:
        card = read_card(path)
    except CheckpointError:
        card = None
    with _cache_lock:
        if len(_cache) >= MAX_CACHED_CARDS:
            _cache.clear()
        _cache[path] = (signature, card)
    return card


def discover_runs(dirs: list[tuple[str, Path]] | None = None) -> list[RunEntry]:
    """Every listable run under the given (source, directory) pairs, shipped first.

    Runs with no finished epoch yet and directories whose card fails the schema are skipped; a
    run that lists but fails the full check at load time shows that error instead."""
    if dirs is None:
        current = settings()
        dirs = [("shipped", current.checkpoints_dir), ("runs", current.runs_dir)]
    out: list[RunEntry] = []
    seen: set[Path] = set()
    for source, root in dirs:
        for path in list_runs(root):
            real = path.resolve()
            card = card_of(path)
            if real in seen or card is None or card["epochs_done"] < 1:
                continue
            seen.add(real)
            out.append(RunEntry(path, f"{printable(path.name, 80)} ({source})", source, card["dataset"],
                                card["method"], card["status"], card["epochs_done"], card["has_discriminator"],
                                card.get("sha256", {}).get(card["files"]["model"], "")))
    return out
