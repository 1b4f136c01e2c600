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
size and checked by the codec before use; an entry that cannot be read, parsed or checked is a
miss and is removed. A folder that cannot be written is skipped (the result is still served from
memory).

Location: $ATLD_CACHE/views (`atld.config.settings`).
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Protocol

from atld.errors import DataError
from atld.fileio import atomic_write, read_regular

MAX_ENTRY_BYTES = 256 * 2**20  # an entry bigger than this is not ours


class Codec(Protocol):
    """How one view's result is written and read back: `decode` raises on anything it does not
    accept (a corrupt or foreign entry)."""
    suffix: str

    def encode(self, result) -> bytes: ...

    def decode(self, data: bytes): ...


class JsonCodec:
    """Results that are JSON values (numbers, strings, lists, dicts: gap numbers, plotly JSON)."""
    suffix = ".json"

    def encode(self, result) -> bytes:
        return json.dumps(result, allow_nan=True).encode()

    def decode(self, data: bytes):
        return json.loads(data)


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
            return codec.decode(read_regular(path, MAX_ENTRY_BYTES, DataError, path.name))
        except Exception:  # noqa: BLE001 - a corrupt, truncated or foreign entry is a miss, never an error
            with contextlib.suppress(OSError):
                path.unlink()
            return None

    def save(self, key: str, codec: Codec, result) -> None:
        """Write the entry atomically; a folder that cannot be written (full, read-only) is skipped."""
        with contextlib.suppress(OSError):
            self.directory.mkdir(parents=True, exist_ok=True)
            atomic_write(self.path(key, codec), codec.encode(result))
