"""Careful file I/O shared by every module that touches disk (torch-free).

Files named by strangers are data: `open_regular` opens a path only if it is a regular file (no
symbolic link, FIFO, device or directory; a FIFO never blocks the reader) and no bigger than a
stated limit. Writes are atomic: `atomic_write` writes a uniquely named temporary file in the
target's directory, fsyncs it and renames it into place, so a reader sees the old file or the
new one, never half of one. Every `OSError` that reaches a user becomes one line through
`os_error_line`.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import hashlib
import io
import os
import re
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path

from atld.errors import ATLDError, ConfigError

TEMP_SUFFIX = re.compile(r"\.tmp-[0-9a-f]{16}$")  # the suffix of every temporary file we write
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # C0 (but tab, newline) and C1 controls, DEL


def now_iso() -> str:
    """The current UTC time, to the second, ISO 8601 (what cards and reports record)."""
    return _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat()


def printable(text: object, limit: int = 300) -> str:
    """`text` safe to print on a terminal or a page: control characters (terminal escape codes)
    become '?', newlines become spaces, and it is cut to `limit` characters."""
    out = _CONTROL.sub("?", str(text)).replace("\n", " ").replace("\t", " ")
    return out if len(out) <= limit else out[: limit - 1] + "…"


def os_error_line(exc: OSError, doing: str) -> str:
    """One line for an OS error met while `doing` something ("saving epoch 3 to runs/x")."""
    reason = exc.strerror or type(exc).__name__
    if exc.errno == errno.ENOSPC:
        reason = "no space left on the device"
    elif exc.errno in (errno.EACCES, errno.EPERM):
        reason = "permission denied"
    elif exc.errno == errno.EROFS:
        reason = "read-only file system"
    where = f" ({printable(exc.filename, 120)})" if exc.filename else ""
    return f"{doing} failed: {reason}{where}"


@contextlib.contextmanager
def open_regular(path: str | os.PathLike, max_bytes: int, error: type[ATLDError], what: str) -> Iterator[int]:
    """A read-only file descriptor of `path`, which must be a regular file (not a link, FIFO,
    device or directory) of at most `max_bytes`; otherwise `error` with one line. Closed after."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise error(f"{what} is missing ({printable(path, 200)})") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise error(f"{what} is a symbolic link; refusing it ({printable(path, 200)})") from None
        raise error(os_error_line(exc, f"reading {what}")) from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise error(f"{what} is missing ({printable(path, 200)} is a directory)")
        if not stat.S_ISREG(info.st_mode):
            raise error(f"{what} is not a regular file (a FIFO, socket or device); refusing it "
                        f"({printable(path, 200)})")
        if info.st_size > max_bytes:
            raise error(f"{what} is {info.st_size} bytes, over the {max_bytes}-byte limit; refusing it")
        yield fd
    finally:
        os.close(fd)


def read_regular(path: str | os.PathLike, max_bytes: int, error: type[ATLDError], what: str) -> bytes:
    """The bytes of a regular file of at most `max_bytes` (see `open_regular`)."""
    with open_regular(path, max_bytes, error, what) as fd:
        chunks, size = [], 0
        while chunk := _read(fd, 1 << 20, error, what):
            size += len(chunk)
            if size > max_bytes:  # it grew while we read
                raise error(f"{what} is over the {max_bytes}-byte limit; refusing it")
            chunks.append(chunk)
        return b"".join(chunks)


def _read(fd: int, n: int, error: type[ATLDError], what: str) -> bytes:
    try:
        return os.read(fd, n)
    except OSError as exc:
        raise error(os_error_line(exc, f"reading {what}")) from None


def sha256_fd(fd: int) -> str:
    """SHA-256 of an open file from its start."""
    h = hashlib.sha256()
    os.lseek(fd, 0, os.SEEK_SET)
    while chunk := os.read(fd, 1 << 20):
        h.update(chunk)
    return h.hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes (a file we chose to read; strangers' files go through open_regular)."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def fsync_dir(path: str | os.PathLike) -> None:
    """Make a rename in `path` durable (best effort: some file systems refuse directory fsync)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def temp_path(final: Path) -> Path:
    """A fresh temporary name beside `final` (the pattern `cleanup_temps` removes)."""
    return final.with_name(f"{final.name}.tmp-{secrets.token_hex(8)}")


def atomic_write(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically: a new, exclusive temporary file, fsynced, renamed into
    place. On any failure the temporary file is removed and the previous `path` is untouched."""
    path = Path(path)
    tmp = temp_path(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o644)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def cleanup_temps(directory: Path) -> list[str]:
    """Remove the temporary files an interrupted write of ours left in `directory`: regular files
    whose names end in our temporary suffix (never links, FIFOs or folders). Returns their names."""
    removed = []
    for entry in os.scandir(directory):
        if TEMP_SUFFIX.search(entry.name) and entry.is_file(follow_symlinks=False):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)
                removed.append(entry.name)
    return removed


def check_output_file(path: str | os.PathLike, what: str = "--out") -> Path:
    """Fail before any work if `path` cannot be written as a file: not a directory, its folder
    exists (or can be made under an existing, writable one)."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{what} {printable(path, 200)!r} is a directory; give a file name")
    if path.is_symlink():
        raise ConfigError(f"{what} {printable(path, 200)!r} is a symbolic link; refusing to write through it")
    check_creatable(path.parent, what)
    return path


def check_creatable(directory: Path, what: str) -> None:
    """The nearest existing ancestor of `directory` must be a writable directory."""
    existing = directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"cannot create {what} under {printable(existing, 200)!r}: it is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot write {what} under {printable(existing, 200)!r}: permission denied")


def parse_npz(data: bytes, max_bytes: int) -> dict:
    """The arrays of an `.npz` file's bytes, refusing pickled objects and archives whose arrays
    would decompress to more than `max_bytes`."""
    import numpy as np

    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        if sum(info.file_size for info in z.zip.infolist()) > max_bytes:
            raise ValueError("entry too large")
        return {k: z[k] for k in z.files}


def npz_bytes(arrays: dict, compress: bool = True) -> bytes:
    """Arrays as the bytes of an `.npz` file (what `parse_npz` reads back)."""
    import numpy as np

    buf = io.BytesIO()
    (np.savez_compressed if compress else np.savez)(buf, **arrays)
    return buf.getvalue()
