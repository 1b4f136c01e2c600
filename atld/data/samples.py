"""The shipped test samples: a few real test images per dataset, so the app works offline at once
(torch-free).

Format (one file per dataset, `<samples dir>/<dataset>-test.npz`, written by
`checkpoints/make_samples.py`): an `np.savez_compressed` archive of exactly three arrays, no
pickled objects:

| array | dtype | shape | meaning |
|---|---|---|---|
| images | uint8 | [N, C, H, W] (the dataset's input shape) | pixels 0..255 |
| labels | int64 | [N] | class in 0..K-1 |
| source_indices | int64 | [N] | each image's index in the dataset's official test split, increasing |

with 1 <= N <= MAX_SAMPLE_IMAGES. `read_sample` treats a sample as a stranger's file: it checks the
file's size, the archive's members, each array's header (dtype, shape, and the size the member
claims) before reading any array data, then the labels and indices.
"""

from __future__ import annotations

import os
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from atld.data.registry import DatasetSpec
from atld.errors import DataError
from atld.fileio import open_regular

MAX_SAMPLE_IMAGES = 2_000  # images per shipped sample, at most
MAX_SAMPLE_BYTES = 32 * 2**20  # a sample file on disk (CIFAR: 2,000 x 3,072 bytes uncompressed is 6 MB)
MAX_NPY_HEADER = 4096  # bytes of an .npy header
ARRAYS = ("images", "labels", "source_indices")


@dataclass(frozen=True)
class Sample:
    images: np.ndarray  # [N, C, H, W] uint8
    labels: np.ndarray  # [N] int64
    source_indices: np.ndarray  # [N] int64, increasing


def sample_path(dataset: str, directory: str | os.PathLike) -> Path:
    """Where the shipped sample of `dataset` lives in `directory`."""
    return Path(directory) / f"{dataset}-test.npz"


def read_sample(path: str | os.PathLike, spec: DatasetSpec) -> Sample:
    """The validated sample at `path` for dataset `spec`; DataError with one line otherwise."""
    path = Path(path)
    what = f"the {spec.name} sample {path.name}"
    with open_regular(path, MAX_SAMPLE_BYTES, DataError, what) as fd:
        with open(fd, "rb", closefd=False) as f:
            try:
                with zipfile.ZipFile(f) as archive:
                    arrays = _read_members(archive, spec, what)
            except DataError:
                raise
            except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError, zlib.error,
                    NotImplementedError) as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise DataError(f"{what} is not a readable sample archive ({first[:200]})") from None
    sample = Sample(*(arrays[name] for name in ARRAYS))
    labels, idx = sample.labels, sample.source_indices
    if int(labels.min()) < 0 or int(labels.max()) >= spec.num_classes:
        raise DataError(f"{what}: labels must be in 0..{spec.num_classes - 1}, found "
                        f"{int(labels.min())}..{int(labels.max())}")
    if int(idx[0]) < 0 or (len(idx) > 1 and not bool((np.diff(idx) > 0).all())):
        raise DataError(f"{what}: source_indices must be non-negative and increasing")
    return sample


def _read_members(archive: zipfile.ZipFile, spec: DatasetSpec, what: str) -> dict[str, np.ndarray]:
    infos = {info.filename: info for info in archive.infolist()}
    if sorted(infos) != sorted(f"{name}.npy" for name in ARRAYS):
        shown = ", ".join(sorted(infos)[:5])[:200]
        raise DataError(f"{what} must hold exactly the arrays {', '.join(ARRAYS)}; it holds {shown or 'nothing'}")
    headers = {name: _header(archive, infos[f"{name}.npy"], what, name) for name in ARRAYS}
    n = headers["images"][0][0] if headers["images"][0] else 0
    expected = {"images": (np.dtype(np.uint8), (n, *spec.input_shape)), "labels": (np.dtype(np.int64), (n,)),
                "source_indices": (np.dtype(np.int64), (n,))}
    for name, (dtype, shape) in expected.items():
        got_shape, got_dtype = headers[name]
        if got_dtype != dtype or tuple(got_shape) != shape:
            raise DataError(f"{what}: {name} is {got_dtype} {tuple(got_shape)}, expected {dtype} {shape}")
    if not 1 <= n <= MAX_SAMPLE_IMAGES:
        raise DataError(f"{what} holds {n} images; a sample holds 1 to {MAX_SAMPLE_IMAGES}")
    out = {}
    for name in ARRAYS:
        info = infos[f"{name}.npy"]
        dtype, shape = expected[name]
        if info.file_size > MAX_NPY_HEADER + dtype.itemsize * int(np.prod(shape)):
            raise DataError(f"{what}: {name} claims {info.file_size} bytes, more than its header allows")
        with archive.open(info) as member:
            out[name] = np.lib.format.read_array(member, allow_pickle=False, max_header_size=MAX_NPY_HEADER)
    return out


def _header(archive: zipfile.ZipFile, info: zipfile.ZipInfo, what: str, name: str):
    """(shape, dtype) from the .npy header of one member, read without reading its data."""
    with archive.open(info) as member:
        version = np.lib.format.read_magic(member)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(member, max_header_size=MAX_NPY_HEADER)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(member, max_header_size=MAX_NPY_HEADER)
        else:
            raise DataError(f"{what}: {name} has an unsupported .npy version {version}")
    if fortran:
        raise DataError(f"{what}: {name} is stored in Fortran order; expected C order")
    return shape, dtype
