"""Results of the app's views on disk (torch-free, Streamlit-free): a view registered with
`persist=<codec>` (`atld.ui.service.view`) is written once, by the worker that computed it, to
`<directory>/<request key><codec.suffix>`, and read back by every later request of any server on
the machine, in the server itself, without a worker and without torch. So the first view of a
shipped checkpoint draws at once on a fresh server once any server has computed it (the start-up
pre-computation does that on the first start).

The request key is the service's (`atld.ui.service.request_key`): the view's name and version and
every argument, a checkpoint by its content and its model file's size and modification time. A
changed checkpoint file or setting is therefore a different key, a miss.

Entries are data, never code: JSON, or NumPy arrays read with `allow_pickle=False`, bounded in
size. Each entry starts with one header line that carries the full request key it was computed
for, the store's format version and the lab's version (`entry_header`), and is used only when
that header is exactly the one the request expects: an entry copied, renamed or swapped to
another key's name is a miss. Its body is then checked by the view's codec against the view's
schema (`atld.ui.view_schemas`). An entry that cannot be read, parsed or checked is a miss and is
removed (it is computed again). A folder that cannot be written is skipped (the result is still
served from memory).

Location: $ATLD_CACHE/views (`atld.config.settings`).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import atld
from atld.errors import DataError
from atld.fileio import atomic_write, read_regular

MAX_ENTRY_BYTES = 256 * 2**20  # an entry bigger than this is not ours
STORE_FORMAT = "atld-view"
STORE_VERSION = 2  # 2: entries carry their key (1 had none: every old entry is a miss)


def entry_header(key: str) -> bytes:
    """The first line of the entry stored under `key`: what it was computed for."""
    return json.dumps({"format": STORE_FORMAT, "version": STORE_VERSION, "key": key, "lab": atld.__version__},
                      sort_keys=True).encode() + b"\n"


class Codec(Protocol):
    """How one view's result is written and read back: `decode` raises on anything it does not
    accept (a corrupt or foreign entry)."""
    suffix: str

    def encode(self, result) -> bytes: ...

    def decode(self, data: bytes): ...


class JsonCodec:
    """Results that are JSON values (numbers, strings, lists, dicts: gap numbers, plotly JSON).
    `check(value)` raises on a value that does not fit the view's schema (`atld.ui.view_schemas`);
    without one, any JSON value is accepted (`JSON`, for views whose every value is fine)."""
    suffix = ".json"

    def __init__(self, check: Callable[[object], None] | None = None):
        self.check = check

    def encode(self, result) -> bytes:
        return json.dumps(result, allow_nan=True).encode()

    def decode(self, data: bytes):
        value = json.loads(data)
        if self.check is not None:
            self.check(value)
        return value


JSON = JsonCodec()


class ResultStore:
    """`load(key, codec)` -> the stored result or None (a miss); `save(key, codec, result)`."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory).expanduser()

    def path(self, key: str, codec: Codec) -> Path:
        return self.directory / f"{key}{codec.suffix}"

    def has(self, key: str, codec: Codec) -> bool:
        return self.path(key, codec).is_file()

    def load(self, key: str, codec: Codec):
        path = self.path(key, codec)
        if not path.is_file():
            return None
        try:
            data = read_regular(path, MAX_ENTRY_BYTES, DataError, path.name)
            header = entry_header(key)
            if not data.startswith(header):
                raise ValueError("an entry computed for another key, version or format")
            return codec.decode(data[len(header):])
        except Exception:  # noqa: BLE001 - a corrupt, truncated or foreign entry is a miss, never an error
            with contextlib.suppress(OSError):
                path.unlink()
            return None

    def save(self, key: str, codec: Codec, result) -> None:
        """Write the entry atomically; a folder that cannot be written (full, read-only) is skipped."""
        with contextlib.suppress(OSError):
            self.directory.mkdir(parents=True, exist_ok=True)
            atomic_write(self.path(key, codec), entry_header(key) + codec.encode(result))
