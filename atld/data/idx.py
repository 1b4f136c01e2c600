"""The idx format of MNIST and Fashion-MNIST, read and validated without trusting the file.

An idx file is a 4-byte magic (two zero bytes, the element type 0x08 = unsigned byte, the number
of dimensions), one big-endian uint32 per dimension, then the values. `read_idx` checks the
magic, the dimensions against what the dataset says they must be, the count against a bound, and
that the file holds exactly that many bytes, before anything is allocated. A `.gz` copy is read
through a decompressor that stops at that exact size, so a small archive that inflates to
gigabytes costs nothing (and nothing is written to disk).
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from atld.errors import DataError
from atld.fileio import open_regular

UBYTE = 0x08
MAX_IDX_FILE_BYTES = 2**31  # an uncompressed idx file (MNIST's largest is 47 MB)


def read_idx(path: Path, item_shape: tuple[int, ...], max_items: int) -> np.ndarray:
    """The uint8 array [N, *item_shape] stored in the idx file `path` (or `path` + ".gz").

    item_shape: () for labels, (28, 28) for MNIST images. Raises DataError for a file that is not
    such an idx file, that claims more than `max_items` items or whose size disagrees."""
    compressed = not path.is_file() and path.with_name(path.name + ".gz").is_file()
    source = path.with_name(path.name + ".gz") if compressed else path
    with open_regular(source, MAX_IDX_FILE_BYTES, DataError, source.name) as fd:
        with open(fd, "rb", closefd=False) as raw:
            stream = gzip.GzipFile(fileobj=raw) if compressed else raw
            try:
                return _parse(stream, source.name, item_shape, max_items)
            except (OSError, EOFError, zlib.error) as exc:  # a corrupt .gz
                raise DataError(f"{source.name} is not a readable idx file ({exc})") from None


def _parse(stream, name: str, item_shape: tuple[int, ...], max_items: int) -> np.ndarray:
    ndim = 1 + len(item_shape)
    head = stream.read(4 + 4 * ndim)
    if len(head) < 4 + 4 * ndim or head[:2] != b"\0\0" or head[2] != UBYTE or head[3] != ndim:
        raise DataError(f"{name} is not an idx file of {ndim}-D unsigned bytes")
    count, *dims = struct.unpack(f">{ndim}I", head[4:])
    if tuple(dims) != tuple(item_shape):
        raise DataError(f"{name} holds items of shape {tuple(dims)}, the dataset needs {tuple(item_shape)}")
    if count > max_items:
        raise DataError(f"{name} claims {count} items, more than the {max_items} allowed for this dataset")
    size = count * int(np.prod(item_shape, dtype=np.int64))
    data = stream.read(size + 1)  # one byte more than allowed: a longer file is an error, not a read
    if len(data) != size:
        raise DataError(f"{name} holds {len(data)}{'+' if len(data) > size else ''} bytes of data, "
                        f"its header says {size}")
    return np.frombuffer(data, dtype=np.uint8).reshape(count, *item_shape)
