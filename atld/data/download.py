"""Downloading a dataset's files (MNIST, Fashion-MNIST: the registry's `downloadable` rows), with
progress and one-line errors; `Download` runs one in a background thread for the app.

The file list, mirrors and MD5 checksums are torchvision's (`MNIST.resources`, `MNIST.mirrors`,
read at call time). The `.gz` files are kept as they are (`atld.data.idx.read_idx` reads them).

Mirrors and the data folder are untrusted (docs/security.md, "Downloads"):
- Files are written only through a descriptor of the raw folder (opened without following a
  link), to a fresh temporary name created exclusively (`O_CREAT | O_EXCL | O_NOFOLLOW`), checked
  against the published MD5 and bounded in size, then renamed: a planted link or file at any
  name is never written through, and a failed download leaves no half file that could pass for
  data. A link, folder or FIFO where a dataset file (or the dataset's folder) should be is
  refused in one line; our own leftovers are removed and a file whose MD5 is wrong is fetched
  again (a later download repairs what it can).
- Every file has an overall deadline (DEADLINE_S) and a minimum rate (MIN_RATE bytes/s over
  RATE_WINDOW_S); a watchdog thread ends the connection when either fails or the download is
  cancelled, so Cancel takes effect within POLL_S even while a read or a connect waits (reads
  return whatever has arrived, at most CHUNK bytes). Every network failure (refused, reset, timed
  out, a cut-off chunked response, a bad status, too many redirects) is one DataError line.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import http.client
import os
import re
import secrets
import select
import socket
import stat
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from atld.data.registry import get_spec
from atld.errors import DataError
from atld.fileio import printable

MAX_DOWNLOAD_BYTES = 64 * 2**20  # one file (MNIST's largest .gz is 9.9 MB)
CHUNK = 64 * 1024  # at most this per read; a read returns what has arrived
STALL_S = 30.0  # connect, and the longest wait for any byte
DEADLINE_S = 15 * 60.0  # one file, from the request to its last byte
MIN_RATE = 16 * 1024  # bytes per second, averaged over RATE_WINDOW_S (MNIST's 9.9 MB in 10 min)
RATE_WINDOW_S = 30.0
POLL_S = 0.2  # how often the watchdog looks: Cancel, the deadline and the rate take effect within this
USER_AGENT = "atld-lab"  # some mirrors refuse Python's default agent
PART = re.compile(r"^\..+\.part(-[0-9a-f]{16})?$")  # our temporary names (the old fixed one included)

# (files done, files in all, bytes of the current file done, its size or None when unknown)
ProgressFn = Callable[[int, int, int, "int | None"], None]


def _torchvision_class(dataset: str):
    from torchvision.datasets import MNIST, FashionMNIST

    return {"mnist": MNIST, "fashion-mnist": FashionMNIST}[dataset]


def raw_folder(dataset: str, root: str | os.PathLike) -> Path:
    """Where the files of `dataset` go under `root` (torchvision's layout: ROOT/MNIST/raw)."""
    return Path(root).expanduser() / _torchvision_class(dataset).__name__ / "raw"


def download_dataset(dataset: str, root: str | os.PathLike, progress: ProgressFn | None = None,
                     cancel: threading.Event | None = None) -> Path:
    """Fetch every missing file of `dataset` into `raw_folder(dataset, root)`; returns that folder.
    DataError with one line when the dataset cannot be downloaded or no mirror delivers a file."""
    spec = get_spec(dataset)
    if not spec.downloadable:
        raise DataError(f"{dataset} cannot be downloaded by the lab; it needs a data root holding {spec.source}")
    cls = _torchvision_class(dataset)
    resources, mirrors = list(cls.resources), list(cls.mirrors)
    raw = raw_folder(dataset, root)
    with _open_raw(raw) as raw_fd:
        _remove_leftovers(raw_fd)
        for i, (filename, md5) in enumerate(resources):
            if _present(raw_fd, raw, filename, md5):
                continue
            problems = []
            for mirror in mirrors:
                if cancel is not None and cancel.is_set():
                    raise DataError("download cancelled")
                try:
                    _fetch(mirror + filename, raw_fd, filename, md5,
                           lambda done, total, i=i: progress and progress(i, len(resources), done, total), cancel)
                    break
                except DataError as exc:
                    if cancel is not None and cancel.is_set():
                        raise DataError("download cancelled") from None
                    problems.append(str(exc))
            else:
                raise DataError(f"could not download {filename} ({problems[-1] if problems else 'no mirror'}); "
                                "check the internet connection and try again")
            if progress:
                progress(i + 1, len(resources), 0, None)
    return raw


@contextlib.contextmanager
def _open_raw(raw: Path, checked: tuple[Path, ...] | None = None):
    """A descriptor of the raw folder, made if missing; the dataset's folder and the raw folder
    (or the folders `checked`) must be real folders (a planted link there would send every file
    elsewhere)."""
    for folder in (raw.parent, raw) if checked is None else checked:
        if folder.is_symlink():
            raise DataError(f"{printable(folder, 200)!r} is a symbolic link; refusing to download through it "
                            "(remove the link, or give --data-root the real folder)")
    try:
        raw.mkdir(parents=True, exist_ok=True)
        fd = os.open(raw, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise DataError(f"cannot create {printable(raw, 200)!r} for the download ({exc.strerror or exc})") from None
    try:
        yield fd
    finally:
        os.close(fd)


def _remove_leftovers(raw_fd: int) -> None:
    """Remove our temporary files an interrupted download left (links with those names too:
    unlinking a link never touches what it points at)."""
    for name in os.listdir(raw_fd):
        if PART.match(name):
            with contextlib.suppress(OSError):
                info = os.lstat(name, dir_fd=raw_fd)
                if stat.S_ISREG(info.st_mode) or stat.S_ISLNK(info.st_mode):
                    os.unlink(name, dir_fd=raw_fd)


def _present(raw_fd: int, raw: Path, filename: str, md5: str, max_bytes: int = MAX_DOWNLOAD_BYTES,
             uncompressed: bool = True) -> bool:
    """Whether `filename` is already there and right: a regular file with the published MD5 (or
    its uncompressed form, a regular file). A link, folder, FIFO... there is one line; a file with
    another MD5 (truncated, corrupt) is fetched again."""
    for name in (filename, filename.removesuffix(".gz")) if uncompressed else (filename,):
        try:
            info = os.lstat(name, dir_fd=raw_fd)
        except FileNotFoundError:
            continue
        if not stat.S_ISREG(info.st_mode):
            kind = "a symbolic link" if stat.S_ISLNK(info.st_mode) else "not a regular file"
            raise DataError(f"{printable(raw / name, 200)!r} is {kind}; refusing to follow or replace it "
                            "(remove it and download again)")
        if name != filename:
            return True  # an uncompressed copy (no published checksum to check it against)
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), dir_fd=raw_fd)
        except OSError:
            return False
        with os.fdopen(fd, "rb") as fh:
            if info.st_size <= max_bytes and \
                    hashlib.file_digest(fh, lambda: hashlib.md5(usedforsecurity=False)).hexdigest() == md5:
                return True
    return False


ARCHIVE_MAX_BYTES = 512 * 2**20  # CIFAR's archive is 163 MB, SVHN's train file 182 MB


def download_torchvision_files(dataset: str, root: str | os.PathLike, cancel: threading.Event | None = None) -> None:
    """What `train --download` fetches for CIFAR-10/100 and SVHN, through the same guarded fetch as
    MNIST (exclusive temporary files, links refused, a deadline, a minimum rate, MD5 checked)
    instead of torchvision's own download, which writes through a planted link and has no
    deadline. CIFAR's archive is then unpacked with tarfile's "data" filter (no links, devices,
    absolute paths or members that land outside the root, a planted link on the way included);
    torchvision then reads the files with download=False."""
    import tarfile

    from torchvision.datasets import CIFAR10, CIFAR100, SVHN

    root = Path(root).expanduser().resolve()  # the folder the user named (a link there is theirs); below it, none
    if dataset in ("cifar10", "cifar100"):
        cls = CIFAR10 if dataset == "cifar10" else CIFAR100
        base = root / cls.base_folder
        if base.is_symlink():
            raise DataError(f"{printable(base, 200)!r} is a symbolic link; refusing to download through it")
        if base.is_dir():
            with _open_raw(base, checked=(base,)) as fd:
                if all(_present(fd, base, name, md5, ARCHIVE_MAX_BYTES, uncompressed=False)
                       for name, md5 in (*cls.train_list, *cls.test_list)):
                    return
        files = [(cls.url, cls.filename, cls.tgz_md5)]
    elif dataset == "svhn":
        files = [tuple(SVHN.split_list[split]) for split in ("train", "test")]
    else:
        raise DataError(f"{dataset} is not downloaded through torchvision")
    with _open_raw(root, checked=()) as fd:
        _remove_leftovers(fd)
        for url, filename, md5 in files:
            if not _present(fd, root, filename, md5, ARCHIVE_MAX_BYTES, uncompressed=False):
                _fetch(url, fd, filename, md5, lambda done, total: None, cancel, ARCHIVE_MAX_BYTES)
    if dataset != "svhn":
        try:
            with tarfile.open(root / cls.filename, "r:gz") as archive:
                archive.extractall(root, filter="data")
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise DataError(f"cannot unpack {cls.filename}: {printable(exc, 160)}") from None


class _Watch:
    """The watchdog of one file's transfer: ends its connection (shuts its sockets) when the
    download is cancelled, the deadline passes or the rate stays under MIN_RATE; `reason` says why."""

    def __init__(self, cancel: threading.Event | None):
        self.cancel, self.started = cancel, time.monotonic()
        self.reason: str | None = None
        self.sockets: list[socket.socket] = []
        self.samples: list[tuple[float, int]] = [(self.started, 0)]
        self.done = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="atld-download-watch", daemon=True)

    def __enter__(self) -> _Watch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def check(self) -> str | None:
        """Why the transfer must end now, or None."""
        now = time.monotonic()
        if self.cancel is not None and self.cancel.is_set():
            return "download cancelled"
        if now - self.started > DEADLINE_S:
            return f"not finished within {DEADLINE_S:g} s"
        self.samples.append((now, self.done))
        while len(self.samples) > 1 and self.samples[1][0] <= now - RATE_WINDOW_S:
            self.samples.pop(0)
        since, then = self.samples[0]
        if now - self.started >= RATE_WINDOW_S and now - since >= RATE_WINDOW_S \
                and (self.done - then) < MIN_RATE * (now - since):
            return (f"the mirror sent {(self.done - then) / (now - since) / 1024:.1f} KiB/s over the last "
                    f"{now - since:.0f} s, under the {MIN_RATE / 1024:g} KiB/s minimum")
        return None

    def _run(self) -> None:
        while not self._stop.wait(POLL_S):
            reason = self.check()
            if reason is not None:
                self.reason = reason
                for sock in list(self.sockets):
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)
                return

    def connect(self, address, timeout=None, source_address=None, **_):
        """`socket.create_connection` that the watchdog can end while it waits."""
        host, port = address
        problem: OSError | None = None
        for family, kind, proto, _name, addr in socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM):
            sock = socket.socket(family, kind, proto)
            try:
                sock.setblocking(False)
                err = sock.connect_ex(addr)
                limit = time.monotonic() + (STALL_S if timeout is None else min(timeout, STALL_S))
                while err in (errno.EINPROGRESS, errno.EALREADY, errno.EWOULDBLOCK):
                    if self.reason is not None or time.monotonic() > limit:
                        raise TimeoutError(errno.ETIMEDOUT, self.reason or "connection timed out")
                    if select.select([], [sock], [], POLL_S)[1]:
                        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    raise OSError(err, os.strerror(err))
                sock.settimeout(STALL_S if timeout is None else min(timeout, STALL_S))
                self.sockets.append(sock)
                return sock
            except OSError as exc:
                sock.close()
                problem = exc
        raise problem or OSError(errno.EHOSTUNREACH, "no address")


def _opener(watch: _Watch) -> urllib.request.OpenerDirector:
    """urllib's opener (proxies and redirects as usual) whose connections the watchdog can end."""

    class Http(http.client.HTTPConnection):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._create_connection = watch.connect

    class Https(http.client.HTTPSConnection):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._create_connection = watch.connect

    class HttpHandler(urllib.request.HTTPHandler):
        def http_open(self, req):
            return self.do_open(Http, req)

    class HttpsHandler(urllib.request.HTTPSHandler):
        def https_open(self, req):
            return self.do_open(Https, req, context=self._context)

    return urllib.request.build_opener(HttpHandler, HttpsHandler)


def _fetch(url: str, raw_fd: int, filename: str, md5: str, on_bytes: Callable[[int, int | None], None],
           cancel: threading.Event | None, max_bytes: int = MAX_DOWNLOAD_BYTES) -> None:
    part = f".{filename}.part-{secrets.token_hex(8)}"
    digest = hashlib.md5(usedforsecurity=False)
    created = False
    try:
        with _Watch(cancel) as watch:
            try:
                request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
                with _opener(watch).open(request, timeout=STALL_S) as response:
                    length = response.headers.get("Content-Length")
                    total = int(length) if length and length.isdigit() else None
                    if total is not None and total > max_bytes:
                        raise DataError(f"{url} offers {total} bytes, more than the {max_bytes} allowed")
                    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                                 | getattr(os, "O_CLOEXEC", 0), 0o644, dir_fd=raw_fd)
                    created = True
                    with os.fdopen(fd, "wb") as out:
                        on_bytes(0, total)
                        while chunk := response.read1(CHUNK):
                            if watch.reason is not None:
                                break
                            watch.done += len(chunk)
                            if watch.done > max_bytes:
                                raise DataError(f"{url} sent more than the {max_bytes} bytes allowed")
                            digest.update(chunk)
                            out.write(chunk)
                            on_bytes(watch.done, total)
                        out.flush()
                        os.fsync(out.fileno())
            except DataError:
                raise
            except Exception:  # noqa: BLE001 - every network failure is one line (below)
                if watch.reason is None:
                    raise
        if watch.reason is not None:
            raise DataError(f"{url}: {watch.reason}")
        if total is not None and watch.done != total:
            raise DataError(f"{url}: the connection closed after {watch.done} of {total} bytes")
        if digest.hexdigest() != md5:
            raise DataError(f"{url} sent a file whose MD5 is not the published one")
        os.replace(part, filename, src_dir_fd=raw_fd, dst_dir_fd=raw_fd)
        created = False
    except DataError:
        raise
    except urllib.error.HTTPError as exc:
        raise DataError(f"{url}: HTTP {exc.code}") from None
    except urllib.error.URLError as exc:
        raise DataError(f"{url}: {printable(exc.reason, 120)}") from None
    except http.client.IncompleteRead as exc:
        raise DataError(f"{url}: the response was cut off ({len(exc.partial)} bytes of a chunk missing)") from None
    except (OSError, ValueError, http.client.HTTPException) as exc:  # timeouts, resets, a full disk, bad framing
        raise DataError(f"{url}: {printable(exc, 120) or type(exc).__name__}") from None
    except Exception as exc:  # noqa: BLE001 - whatever else a mirror can provoke is one line too
        raise DataError(f"{url}: {type(exc).__name__}: {printable(exc, 120)}") from None
    finally:
        if created:
            with contextlib.suppress(OSError):
                os.unlink(part, dir_fd=raw_fd)


class Download:
    """One dataset download in a background thread, for the app: `start()`, then read `text()`,
    `running`, `error` (one line) and `finished` from any thread; `cancel()` ends it within POLL_S
    (the watchdog ends the connection even while a read waits), which frees the slot."""

    def __init__(self, dataset: str, root: str | os.PathLike):
        self.dataset, self.root = dataset, Path(root)
        self.files_done, self.files_total, self.bytes_done, self.bytes_total = 0, 0, 0, None
        self.error: str | None = None
        self.finished = False
        self.started_at = time.monotonic()
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Download:
        self._thread = threading.Thread(target=self._run, name=f"atld-download-{self.dataset}", daemon=True)
        self._thread.start()
        return self

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the end; True when it ended."""
        if self._thread is not None:
            self._thread.join(timeout)
        return not self.running

    def cancel(self) -> None:
        self._cancel.set()

    def fraction(self) -> float:
        if not self.files_total:
            return 0.0
        part = self.bytes_done / self.bytes_total if self.bytes_total else 0.0
        return min(1.0, (self.files_done + part) / self.files_total)

    def text(self) -> str:
        """One line of progress, e.g. "file 2 of 4 · 1.2 of 9.9 MB"."""
        if self.error and self._cancel.is_set():
            return f"{self.dataset}: download cancelled (the files already fetched are kept)"
        if self.error:
            return f"{self.dataset}: download failed: {self.error}"
        if self.finished:
            return f"{self.dataset}: downloaded ({self.files_total} files) into {self.root}"
        size = f" of {self.bytes_total / 1e6:.1f}" if self.bytes_total else ""
        current = min(self.files_done + 1, max(self.files_total, 1))
        return f"file {current} of {self.files_total or '?'} · {self.bytes_done / 1e6:.1f}{size} MB"

    def _progress(self, files_done: int, files_total: int, bytes_done: int, bytes_total: int | None) -> None:
        self.files_done, self.files_total, self.bytes_done, self.bytes_total = (files_done, files_total, bytes_done,
                                                                                 bytes_total)

    def _run(self) -> None:
        try:
            self.files_total = len(_torchvision_class(self.dataset).resources)
            download_dataset(self.dataset, self.root, self._progress, self._cancel)
            self.files_done, self.finished = self.files_total, True
        except DataError as exc:
            self.error = str(exc)
        except Exception as exc:  # noqa: BLE001 - a background thread must report, not die silently
            self.error = f"{type(exc).__name__}: {printable(exc, 200)}"
