"""Where the app finds checkpoints, and their cards, read only through one validated reader (Streamlit-free).

Runs come from the shipped checkpoints (ATLD_CHECKPOINTS_DIR, default `checkpoints/`) and the
runs directory (ATLD_RUNS_DIR, default `runs/`). Listing is torch-free, bounded and incremental:
one directory scan and one `lstat` per run (`atld.runs.card.scan_runs`), and a card is read and
validated (`read_card`: the full schema) only when its size, modification time or inode changed;
the listing keeps only a small summary per run (`card_summary`), in a least-recently-used cache
that evicts one entry at a time (no cliff: it used to clear itself at 1,000 cards and re-parse
every card on every rerun). Full cards are kept only for the few runs pages show (`card_of`), so
every card a page shows has passed the schema. Loading a model goes through
`atld.runs.store.load_checkpoint`, which checks everything else (tensors, budget)."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from atld.config.settings import settings
from atld.errors import CheckpointError
from atld.fileio import printable
from atld.runs.card import CARD, card_summary, read_card, scan_runs

MAX_CACHED_CARDS = 256  # full cards (the runs pages show); least recently used goes first
MAX_CACHED_SUMMARIES = 200_000  # a listing's summaries (a few hundred bytes each)

_cache: OrderedDict[Path, tuple[tuple[int, int, int], dict | None]] = OrderedDict()
_summaries: OrderedDict[Path, tuple[tuple[int, int, int], dict | None]] = OrderedDict()
_cache_lock = threading.Lock()


def _cached(table: OrderedDict, limit: int, path: Path, signature: tuple, make):
    """table[path] when its signature matches, else make() stored under it; at most `limit`
    entries, the least recently used evicted one at a time."""
    with _cache_lock:
        hit = table.get(path)
        if hit is not None and hit[0] == signature:
            table.move_to_end(path)
            return hit[1]
    value = make()
    with _cache_lock:
        table[path] = (signature, value)
        table.move_to_end(path)
        while len(table) > limit:
            table.popitem(last=False)
    return value


def _read_or_none(path: Path) -> dict | None:
    try:
        return read_card(path)
    except CheckpointError:
        return None


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
    model_hash: str  # SHA-256 of the model file (as its card claims it; the CSV export names it)
    imported: bool = False  # made by `python -m atld import` or Home's upload (its card has a "source" block)


def content_key(card: dict) -> str:
    """What a computation over this run depends on, as one SHA-256: the model file's hash (which
    loading verifies) and the run's config (IMT's ε, the architecture, the dataset). A retrained,
    resumed or edited run gets a new key; a copy of a run in another folder keeps it."""
    model = card.get("sha256", {}).get(card["files"]["model"], "")
    text = json.dumps({"model": model, "config": card["config"], "has_discriminator": card["has_discriminator"]},
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class RunRef:
    """A checkpoint as an argument of a cached computation: where it is, its `content_key` (the
    part of cache keys; the path is not) and `stamp`, its model file's size and modification time
    (also in the keys: a model file rewritten under an unchanged card is a different request). The
    worker that loads it checks the content key again."""
    path: str
    cache_key: str
    stamp: str = ""

    @classmethod
    def of(cls, run_dir: str | os.PathLike) -> RunRef:
        """The run at `run_dir` as it is now; CheckpointError when it has no valid card."""
        card = card_of(run_dir)
        if card is None:
            raise CheckpointError(f"{printable(run_dir, 200)!r} holds no valid run card")
        try:
            info = os.stat(Path(run_dir) / card["files"]["model"])
            stamp = f"{info.st_size}:{info.st_mtime_ns}"
        except OSError:
            stamp = "missing"  # loading says why, in one line
        return cls(str(run_dir), content_key(card), stamp)


def card_of(run_dir: str | os.PathLike) -> dict | None:
    """The validated card of `run_dir`, or None when it has none or it fails the schema. Re-read
    only when card.json's size, modification time or inode changed."""
    path = Path(run_dir)
    try:
        info = os.stat(path / CARD, follow_symlinks=False)
    except OSError:
        return None
    return _cached(_cache, MAX_CACHED_CARDS, path, (info.st_size, info.st_mtime_ns, info.st_ino),
                   lambda: _read_or_none(path))


def run_summary(path: Path, info: os.stat_result) -> dict | None:
    """`card_summary` of the run at `path` whose card's lstat is `info`, or None when its card
    fails the schema; the card is read again only when its size, mtime or inode changed."""
    def make():
        card = _read_or_none(path)
        return None if card is None else card_summary(card)

    return _cached(_summaries, MAX_CACHED_SUMMARIES, path, (info.st_size, info.st_mtime_ns, info.st_ino), make)


def discover_runs(dirs: list[tuple[str, Path]] | None = None) -> list[RunEntry]:
    """Every listable run under the given (source, directory) pairs, shipped first.

    Runs with no finished epoch yet and directories whose card fails the schema are skipped; a
    run that lists but fails the full check at load time shows that error instead."""
    if dirs is None:
        current = settings()
        dirs = [("shipped", current.checkpoints_dir), ("runs", current.runs_dir)]
    out: list[RunEntry] = []
    seen: set[tuple[int, int]] = set()
    for source, root in dirs:
        for path, info in scan_runs(root):
            real = (info.st_dev, info.st_ino)  # the same card reached twice (a folder listed under two roots)
            summary = run_summary(path, info)
            if real in seen or summary is None or (summary["epochs_done"] < 1 and not summary["imported"]):
                continue
            seen.add(real)
            out.append(RunEntry(path, f"{printable(path.name, 80)} ({'imported' if summary['imported'] else source})",
                                source, summary["dataset"], summary["method"], summary["status"],
                                summary["epochs_done"], summary["has_discriminator"], summary["model_hash"],
                                summary["imported"]))
    return out


def own_runs(entries: list[RunEntry], runs_dir=None) -> list[RunEntry]:
    """The listed runs (`atld.ui.runs.RunEntry`) the Train page may resume or delete: those of the
    runs directory `runs_dir` that carry the lab's marker (made by the app or the CLI), never a
    shipped checkpoint."""
    root = Path(runs_dir if runs_dir is not None else settings().runs_dir).resolve()
    return [r for r in entries if is_own_run(r, root)]


def is_own_run(entry: RunEntry, runs_dir=None) -> bool:
    """True for a run the app may write (resume, delete, store an evaluation into): one of the
    runs directory's that carries the lab's marker; never a shipped checkpoint."""
    from atld.runs.rundir import is_ours

    root = Path(runs_dir if runs_dir is not None else settings().runs_dir).resolve()
    shipped = settings().checkpoints_dir.resolve()
    return (entry.source == "runs" and entry.path.parent.resolve() == root
            and not entry.path.resolve().is_relative_to(shipped) and is_ours(entry.path))


# The checkpoint a first visit opens: the first of these shipped runs that exists (real data: MNIST),
# else the preferred run of FALLBACK_DATASET (digits: ships with scikit-learn, the fastest demo).
# The sidebar and the compute service's start-up pre-computation both read `default_run`.
DEFAULT_CHECKPOINTS = ("mnist-atld", "mnist-pgd-at")
FALLBACK_DATASET = "digits"


def default_run(runs: list[RunEntry]) -> RunEntry | None:
    """The checkpoint the app shows first (DEFAULT_CHECKPOINTS, else digits' preferred run)."""
    shipped = {r.path.name: r for r in runs if r.source == "shipped"}
    return next((shipped[n] for n in DEFAULT_CHECKPOINTS if n in shipped), None) \
        or preferred_run(runs, FALLBACK_DATASET)


def datasets_in_order(runs: list[RunEntry], extra: tuple[str, ...] = ()) -> list[str]:
    """The sidebar's datasets: the first visit's, digits, every dataset with a checkpoint, then `extra`
    (datasets with test images but no checkpoint yet)."""
    first = default_run(runs)
    return list(dict.fromkeys([first.dataset if first else FALLBACK_DATASET, FALLBACK_DATASET,
                               *(r.dataset for r in runs), *extra]))


def preferred_run(runs: list[RunEntry], dataset: str) -> RunEntry | None:
    """The checkpoint the sidebar picks for `dataset` by default: a shipped DEFAULT_CHECKPOINTS run,
    else its first ATLD run, else its first."""
    mine = [r for r in runs if r.dataset == dataset]
    by_name = {r.path.name: r for r in mine if r.source == "shipped"}
    return next((by_name[n] for n in DEFAULT_CHECKPOINTS if n in by_name), None) \
        or next((r for r in mine if r.method == "atld"), mine[0] if mine else None)


def comparison_run(runs: list[RunEntry], current: RunEntry) -> RunEntry | None:
    """The Latent explorer's default second checkpoint: a natural run of the same dataset if any."""
    others = [r for r in runs if r.dataset == current.dataset and r.path != current.path]
    return next((r for r in others if r.method == "natural"), others[0] if others else None)
