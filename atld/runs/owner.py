"""Who may change a run from the shared app: the browser session that started it, or whoever
holds its owner key (torch-free).

The key is the random token the app hands out when it starts a training job (the Train page
keeps it in the session and in the page's address, so a reload or the same address in another
tab holds it too). The run directory keeps only a SHA-256 of it, in `.atld-owner`, written
exclusively when the app creates the run, so reading the folder does not reveal the key. A run
without that file (trained with `python -m atld train`, copied in, or shipped) has no owner in
the app: every session sees it read-only; the CLI is its owner's tool (`--resume`). Shipped
checkpoints are never writable from the app at all (`atld.jobs.JobManager.own_run`).
"""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path

from atld.errors import CheckpointError
from atld.fileio import printable, read_regular

OWNER_FILE = ".atld-owner"
_MAX_OWNER_BYTES = 256


def owner_digest(key: str) -> str:
    """What the run directory keeps of an owner key."""
    return hashlib.sha256(b"atld-owner-key:" + key.encode()).hexdigest()


def new_owner_key() -> str:
    return secrets.token_urlsafe(16)


def claim_owner(run_dir: Path, key: str) -> None:
    """Record `key` as the owner key of the run just created at `run_dir` (exclusive: a run has one
    owner, and an existing file or link there is never overwritten or followed)."""
    fd = os.open(Path(run_dir) / OWNER_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                 | getattr(os, "O_CLOEXEC", 0), 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(owner_digest(key) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def holds_owner_key(run_dir: str | os.PathLike, key: object) -> bool:
    """True when `key` is the owner key of the run at `run_dir` (compared in constant time). No
    key, no owner file, or an owner file that is not ours (a link, a FIFO, too big): False."""
    if not isinstance(key, str) or not key:
        return False
    try:
        stored = read_regular(Path(run_dir) / OWNER_FILE, _MAX_OWNER_BYTES, CheckpointError, OWNER_FILE)
    except CheckpointError:
        return False
    return secrets.compare_digest(stored.strip(), owner_digest(key).encode())


def require_owner(run_dir: Path, key: object, doing: str) -> None:
    """One line (CheckpointError) unless `key` is the owner key of the run at `run_dir`."""
    if not holds_owner_key(run_dir, key):
        raise CheckpointError(f"run {printable(Path(run_dir).name, 80)!r} was not started by this browser session: it "
                              f"is read-only here (only the session that started it, or whoever has its page address "
                              f"with its key, may {doing} it)")
