"""Downloading a dataset's files (MNIST, Fashion-MNIST: the registry's `downloadable` rows), with
progress and one-line errors; `Download` runs one in a background thread for the app.

The file list, mirrors and MD5 checksums are torchvision's (`MNIST.resources`, `MNIST.mirrors`,
read at call time). Each file is streamed to a temporary file beside its final place, checked
against its MD5 and bounded in size, then renamed: a failed or interrupted download leaves no
half file that could pass for data. Files already present are kept. The `.gz` files are kept as
they are (`atld.data.idx.read_idx` reads them directly)."""

from __future__ import annotations

import hashlib
import os
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
CHUNK = 64 * 1024
TIMEOUT_S = 30  # per connection attempt and per read
USER_AGENT = "atld-lab"  # some mirrors refuse Python's default agent

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
    try:
        raw.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create {printable(raw, 200)!r} for the download ({exc.strerror or exc})") from None
    for i, (filename, md5) in enumerate(resources):
        target = raw / filename
        if target.is_file() or target.with_suffix("").is_file():
            continue
        problems = []
        for mirror in mirrors:
            try:
                _fetch(mirror + filename, target, md5,
                       lambda done, total, i=i: progress and progress(i, len(resources), done, total), cancel)
                break
            except DataError as exc:
                problems.append(str(exc))
        else:
            raise DataError(f"could not download {filename} ({problems[-1] if problems else 'no mirror'}); "
                            "check the internet connection and try again")
        if progress:
            progress(i + 1, len(resources), 0, None)
    return raw


def _fetch(url: str, target: Path, md5: str, on_bytes: Callable[[int, int | None], None],
           cancel: threading.Event | None) -> None:
    part = target.with_name(f".{target.name}.part")
    digest, done = hashlib.md5(usedforsecurity=False), 0
    try:
        request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response, open(part, "wb") as out:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            if total is not None and total > MAX_DOWNLOAD_BYTES:
                raise DataError(f"{url} offers {total} bytes, more than the {MAX_DOWNLOAD_BYTES} allowed")
            on_bytes(0, total)
            while chunk := response.read(CHUNK):
                if cancel is not None and cancel.is_set():
                    raise DataError("download cancelled")
                done += len(chunk)
                if done > MAX_DOWNLOAD_BYTES:
                    raise DataError(f"{url} sent more than the {MAX_DOWNLOAD_BYTES} bytes allowed")
                digest.update(chunk)
                out.write(chunk)
                on_bytes(done, total)
        if digest.hexdigest() != md5:
            raise DataError(f"{url} sent a file whose MD5 is not the published one")
        os.replace(part, target)
    except urllib.error.HTTPError as exc:
        raise DataError(f"{url}: HTTP {exc.code}") from None
    except urllib.error.URLError as exc:
        raise DataError(f"{url}: {printable(exc.reason, 120)}") from None
    except (OSError, ValueError) as exc:  # timeouts, resets, a full disk
        raise DataError(f"{url}: {printable(exc, 120) or type(exc).__name__}") from None
    finally:
        part.unlink(missing_ok=True)


class Download:
    """One dataset download in a background thread, for the app: `start()`, then read `text()`,
    `running`, `error` (one line) and `finished` from any thread; `cancel()` stops it between chunks."""

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
