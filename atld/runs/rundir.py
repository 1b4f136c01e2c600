"""Writing a run directory: only ours, only one writer at a time, never over the user's files
(torch-free).

A run directory is *ours* when it holds the marker file `.atld-run` with the lab's content; it is
written there when the directory is created, exclusively (`create_run_dir`). Every write goes
through a `RunWriter` (`claim`), which
- refuses a directory that is not ours ("choose another folder"), a new run over an existing one
  ("use --resume"), and a run that another process or thread is writing (an exclusive,
  non-blocking `flock` on the marker, held until `close`);
- checks that the directory can really be written (a probe file) before any work starts;
- then, and only then, finishes what an interrupted save of ours left behind: it removes our
  temporary files (`*.tmp-<hex>`) and tensor files of ours that the card no longer names, both
  only if they are regular files. Readers (`atld.runs.card.read_card`, `atld.runs.store`) never
  do any of this.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
from pathlib import Path

from atld.errors import CheckpointError, ConfigError
from atld.fileio import (check_creatable, cleanup_temps, fsync_dir, now_iso, open_regular, os_error_line, printable,
                         temp_path)
from atld.runs.card import CARD, MARKER, TENSOR_FILE, card_files, read_card, write_card
from atld.runs.owner import OWNER_FILE

MARKER_CONTENT = b'{"format": "atld-run-dir", "version": 1}\n'


def _shown(path: Path) -> str:
    return repr(printable(path, 200))


def is_ours(run_dir: str | os.PathLike) -> bool:
    """True if `run_dir` carries the lab's marker (a regular file with the expected content)."""
    try:
        with open_regular(Path(run_dir) / MARKER, 4096, CheckpointError, MARKER) as fd:
            return os.read(fd, 4097) == MARKER_CONTENT
    except CheckpointError:
        return False


def create_run_dir(path: str | os.PathLike) -> Path:
    """Make `path` a new, empty run directory of ours. Exclusive: FileExistsError if anything is
    already there (a folder, a file, a link), so two creators can never share one directory."""
    path = Path(path)
    check_creatable(path.parent, "the run directory")
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkdir(path)
    fd = os.open(path / MARKER, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "wb") as fh:
        fh.write(MARKER_CONTENT)
        fh.flush()
        os.fsync(fh.fileno())
    fsync_dir(path)
    return path


class RunWriter:
    """The right to write one run directory (see the module docstring). Use as a context manager
    or call `close()`; every method raises CheckpointError with one line on an OS error."""

    def __init__(self, run_dir: Path, lock_fd: int):
        self.path, self._fd = run_dir, lock_fd

    # ------------------------------------------------------------------ opening

    @classmethod
    def claim(cls, run_dir: str | os.PathLike, *, new: bool) -> RunWriter:
        """Open `run_dir` for writing. new=True: a new run (`train --out`): the directory is created
        if absent; an existing one must be ours and hold no run yet. new=False: an existing run of
        ours (`--resume`, storing an evaluation)."""
        run_dir = Path(run_dir)
        if new and not run_dir.exists() and not run_dir.is_symlink():
            try:
                create_run_dir(run_dir)
            except FileExistsError:
                pass  # made by someone else a moment ago: the checks below decide
            except OSError as exc:
                raise CheckpointError(os_error_line(exc, f"creating {_shown(run_dir)}")) from None
        if run_dir.is_symlink() or not run_dir.is_dir():
            what = "exists and is not a directory" if run_dir.exists() or run_dir.is_symlink() else "does not exist"
            raise (ConfigError if new else CheckpointError)(f"{_shown(run_dir)} {what}")
        if not is_ours(run_dir):
            raise ConfigError(f"{_shown(run_dir)} exists and is not a run directory of the lab (no {MARKER}); "
                              "refusing to write into it: choose another folder")
        writer = cls(run_dir, cls._lock(run_dir))
        try:
            has_card = (run_dir / CARD).exists() or (run_dir / CARD).is_symlink()
            if new and has_card:
                raise ConfigError(f"{_shown(run_dir)} already holds a run; use --resume {printable(run_dir, 200)} "
                                  "or choose another folder")
            if not new and not has_card:
                raise CheckpointError(f"{_shown(run_dir)} holds no saved run yet (no {CARD}); nothing to resume")
            writer._probe()
            writer.recover()
        except BaseException:
            writer.close()
            raise
        return writer

    @staticmethod
    def _lock(run_dir: Path) -> int:
        fd = os.open(run_dir / MARKER, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise CheckpointError(f"{_shown(run_dir)} is being written by another process or training job; "
                                      "wait for it to finish or choose another folder") from None
            raise CheckpointError(os_error_line(exc, f"locking {_shown(run_dir)}")) from None
        return fd

    def _probe(self) -> None:
        """Fail now, not after an epoch of work, if the directory cannot be written."""
        probe = temp_path(self.path / "probe")
        try:
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
            os.write(fd, b"0")
            os.close(fd)
            probe.unlink()
        except OSError as exc:
            raise CheckpointError(os_error_line(exc, f"writing to {_shown(self.path)}")) from None

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the lock
            self._fd = None

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ writing

    def card(self) -> dict | None:
        """The committed card, or None before the first save."""
        return read_card(self.path) if (self.path / CARD).exists() else None

    def recover(self) -> list[str]:
        """Remove what interrupted saves of ours left: temporary files, and tensor files of ours
        the card does not name (written before a crash at the commit point, or replaced by a
        later save). Only regular files; returns their names."""
        try:
            removed = cleanup_temps(self.path)
            card = self.card()
            named = set(card_files(card)) if card is not None else set()
            for entry in os.scandir(self.path):
                if TENSOR_FILE.match(entry.name) and entry.name not in named and entry.is_file(follow_symlinks=False):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.path)
                        removed.append(entry.name)
        except OSError as exc:
            raise CheckpointError(os_error_line(exc, f"cleaning up {_shown(self.path)}")) from None
        return removed

    def check_space(self, nbytes: int, doing: str) -> None:
        """Fail early if the file system has less than `nbytes` free."""
        try:
            free = shutil.disk_usage(self.path).free
        except OSError as exc:
            raise CheckpointError(os_error_line(exc, doing)) from None
        if free < nbytes:
            raise CheckpointError(f"{doing} needs about {nbytes / 2**20:.1f} MiB, but only {free / 2**20:.1f} MiB "
                                  f"are free on the device of {_shown(self.path)}")

    def commit(self, card: dict) -> dict:
        """Make `card` the run's card (the commit point of a save), then remove the files the
        previous card named and this one does not."""
        previous = self.card()
        card = {**card, "updated": now_iso()}
        card.setdefault("created", card["updated"])
        write_card(self.path, card)
        # Committed. What the previous card named goes now; a failure here leaves files the next
        # writer removes (`recover`), never a broken run.
        for name in set(card_files(previous) if previous else ()) - set(card_files(card)):
            target = self.path / name
            with contextlib.suppress(OSError):
                if target.is_file() and not target.is_symlink():
                    target.unlink()
        fsync_dir(self.path)
        return card

    def update(self, **fields) -> dict:
        """Merge `fields` into the committed card (e.g. status, evaluations); tensors untouched."""
        card = self.card()
        if card is None:
            raise CheckpointError(f"{_shown(self.path)} holds no card to update")
        try:
            return self.commit({**card, **fields})
        except OSError as exc:
            raise CheckpointError(os_error_line(exc, f"updating {_shown(self.path / CARD)}")) from None


def update_card(run_dir: str | os.PathLike, **fields) -> dict:
    """Atomically merge `fields` into the card of an existing run of ours (taking its writer lock)."""
    with RunWriter.claim(run_dir, new=False) as writer:
        return writer.update(**fields)


def remove_if_unused(run_dir: Path) -> bool:
    """Remove a run directory of ours that never saved anything (only its marker and our temporary
    files are in it) and that nobody is writing; True if removed. Used when a new run fails
    before its first epoch, so that it leaves no folder behind."""
    try:
        writer = RunWriter(run_dir, RunWriter._lock(run_dir))
    except (CheckpointError, OSError):
        return False
    with writer:
        try:
            cleanup_temps(run_dir)
            if {e.name for e in os.scandir(run_dir)} - {OWNER_FILE} != {MARKER}:
                return False
            (run_dir / OWNER_FILE).unlink(missing_ok=True)
            (run_dir / MARKER).unlink()
            run_dir.rmdir()
        except OSError:
            return False
    return True
