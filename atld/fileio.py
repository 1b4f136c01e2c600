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
    place. On any failure the temporary file is removed and the previous `path` is untouched.
    Only a regular file (or nothing) is ever replaced: a link, FIFO, socket, device or folder at
    `path` is an OSError and stays as it was."""
    path = Path(path)
    tmp = temp_path(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o644)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        _refuse_special(path)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def _refuse_special(path: Path) -> None:
    """OSError unless `path` is missing or a regular file (what `os.replace` may replace)."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISREG(info.st_mode):
        raise OSError(errno.EEXIST, f"not a regular file ({_kind(info.st_mode)}); refusing to replace it", str(path))


def _kind(mode: int) -> str:
    return ("a symbolic link" if stat.S_ISLNK(mode) else "a directory" if stat.S_ISDIR(mode)
            else "a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
            else "a character device" if stat.S_ISCHR(mode) else "a block device" if stat.S_ISBLK(mode)
            else "a regular file" if stat.S_ISREG(mode) else "a special file")


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


# ----------------------------------------------------------------------------- output files (--out, --html)
# What a command's output flag may name (docs/security.md, "Output files"):
# - "-" and /dev/stdout (also /dev/fd/1, /proc/self/fd/1): standard output; /dev/stderr (/dev/fd/2,
#   /proc/self/fd/2): standard error, even when it is redirected to a file;
# - nothing yet, or a regular file: written atomically (a temporary file renamed into place);
# - a character device (/dev/null, a terminal) or a FIFO (a pipe, process substitution's /dev/fd/N):
#   written INTO, opened for writing without creating or truncating, never replaced; a FIFO that
#   no process reads is refused at once rather than waited for;
# - a symbolic link is followed only to a character device or a FIFO (as /dev/stderr and /dev/fd/N
#   are); a link to a regular file, a folder or nothing is refused (replacing it would replace the
#   link, writing through it would write where the link was planted);
# - a folder, a socket or a block device (a disk) is refused.
STDOUT_NAMES = frozenset({"-", "/dev/stdout", "/dev/fd/1", "/proc/self/fd/1"})
STDERR_NAMES = frozenset({"/dev/stderr", "/dev/fd/2", "/proc/self/fd/2"})  # standard error, wherever it goes


def is_stdout(path: str | os.PathLike | None) -> bool:
    """True when an output flag means standard output (not given, "-" or /dev/stdout)."""
    return path is None or os.fspath(path) in STDOUT_NAMES


def _stream_name(path) -> str | None:
    return "stdout" if is_stdout(path) else "stderr" if os.fspath(path) in STDERR_NAMES else None


def _writable_into(mode: int) -> bool:
    return stat.S_ISCHR(mode) or stat.S_ISFIFO(mode)


def check_output_file(path: str | os.PathLike | None, what: str = "--out") -> Path | None:
    """Fail before any work if `path` cannot be an output (see above): one ConfigError line that
    names the flag `what`. Returns the path (None for standard output)."""
    if _stream_name(path) is not None:
        return None
    path = Path(path)
    shown_ = f"{what} {printable(path, 200)!r}"
    try:
        info = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):  # a folder on the way is missing or a file: said below
        info = None
    except OSError as exc:
        raise ConfigError(os_error_line(exc, f"checking {what}")) from None
    if info is None or stat.S_ISREG(info.st_mode):
        check_creatable(path.parent, what)
        return path
    if stat.S_ISDIR(info.st_mode):
        raise ConfigError(f"{shown_} is a directory; give a file name")
    if stat.S_ISLNK(info.st_mode):
        try:
            target = os.stat(path)
        except OSError:
            target = None
        if target is None or not _writable_into(target.st_mode):
            what_it_is = "a dangling link" if target is None else f"a link to {_kind(target.st_mode)}"
            raise ConfigError(f"{shown_} is a symbolic link ({what_it_is}); refusing to write through it or "
                              "replace it: give the file itself")
        return path
    if not _writable_into(info.st_mode):
        raise ConfigError(f"{shown_} is {_kind(info.st_mode)}; refusing to write into it or replace it")
    return path


def same_output(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """True when two output flags name one file: both standard output, one path spelt two ways
    (`./x`, `d/../x`, a link in a folder on the way), or one file under two names (a hard link)."""
    if _stream_name(a) is not None or _stream_name(b) is not None:
        return _stream_name(a) == _stream_name(b)
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_distinct_outputs(outputs: dict[str, str | os.PathLike | None]) -> None:
    """Refuse two output flags that name the same file (e.g. `--out X --html X`): one would
    silently replace the other."""
    given = [(flag, p) for flag, p in outputs.items() if p is not None]
    for i, (flag_a, a) in enumerate(given):
        for flag_b, b in given[i + 1:]:
            if same_output(a, b):
                raise ConfigError(f"{flag_a} and {flag_b} name the same file ({printable(b, 200)!r}); give two "
                                  "different files")


def write_output(path: str | os.PathLike | None, text: str, what: str = "--out") -> str:
    """Write a command's output `text` where the flag `what` says (see above); returns where, in
    words. Every failure is one ConfigError line naming `what` (a full disk, /dev/full, a FIFO
    nobody reads, anything that is not ours to replace)."""
    import sys

    stream = _stream_name(path)
    if stream is not None:
        out = sys.stdout if stream == "stdout" else sys.stderr
        out.write(text)
        out.flush()
        return "standard output" if stream == "stdout" else "standard error"
    path = check_output_file(path, what)
    data = text.encode()
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        info = None
    try:
        if info is None or stat.S_ISREG(info.st_mode):
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, data)
        else:
            _write_into(path, data, what)
    except OSError as exc:
        raise ConfigError(os_error_line(exc, f"writing {what}")) from None
    return str(path)


def _write_into(path: Path, data: bytes, what: str) -> None:
    """Write into a character device or a FIFO: opened for writing (never created, truncated or
    replaced); a FIFO nobody reads is refused instead of blocking."""
    flags = os.O_WRONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ENXIO:
            raise ConfigError(f"{what} {printable(path, 200)!r} is a FIFO that no process reads (or a socket); "
                              "refusing to wait for one") from None
        raise
    try:
        info = os.fstat(fd)
        if not _writable_into(info.st_mode):  # it changed since it was checked
            raise ConfigError(f"{what} {printable(path, 200)!r} is {_kind(info.st_mode)}; refusing to write into it")
        os.set_blocking(fd, True)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


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
