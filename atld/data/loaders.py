"""Loading a registered dataset into memory as tensors (no DataLoader, no download by default).

Every loader returns an `ImageData`: four CPU tensors, images NCHW (uint8 in 0..255, or float32
already in [0, 1]) and int64 labels. `as_float01` turns a batch into float32 [0, 1].
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from atld.data.registry import DatasetSpec, get_spec
from atld.errors import DataError

DIGITS_TEST_SIZE = 450  # 1,797 images -> 1,347 train / 450 test, stratified
DIGITS_SPLIT_SEED = 0  # fixed: every run and every checkpoint sees the same split


@dataclass(frozen=True)
class ImageData:
    spec: DatasetSpec
    x_train: torch.Tensor  # [N, C, H, W] uint8 (0..255) or float32 in [0, 1]
    y_train: torch.Tensor  # [N] int64
    x_test: torch.Tensor
    y_test: torch.Tensor

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        if name == "train":
            return self.x_train, self.y_train
        if name == "test":
            return self.x_test, self.y_test
        raise DataError(f"unknown split {name!r}; choose train or test")


def as_float01(x: torch.Tensor) -> torch.Tensor:
    """Images as float32 in [0, 1]: uint8 is divided by 255, float is passed through."""
    return x.float().div_(255) if x.dtype == torch.uint8 else x.float()


def load_dataset(name: str, root: str | os.PathLike | None = None, download: bool = False) -> ImageData:
    """Load `name` whole into CPU memory.

    `root` is the local folder for the torchvision datasets; `download=True` lets torchvision
    fetch missing files (only when the user asks). A missing root or file raises `DataError`
    with instructions.
    """
    spec = get_spec(name)
    if not spec.needs_root:
        return _load_digits(spec)
    if root is None:
        raise DataError(f"dataset {name!r} needs --data-root: a local folder holding {spec.source}"
                        f"{_download_hint(name)}")
    root = Path(root).expanduser()
    if not root.is_dir() and not download:
        raise DataError(f"data root {str(root)!r} does not exist; it should hold {spec.source}{_download_hint(name)}")
    loader = {"mnist": _load_idx, "fashion-mnist": _load_idx, "cifar10": _load_cifar,
              "cifar100": _load_cifar, "svhn": _load_svhn, "cifar10-exact": _load_cifar10_exact}[name]
    try:
        return loader(spec, root, download)
    except DataError:
        raise
    except (RuntimeError, OSError, KeyError, ValueError, AssertionError) as exc:
        # torchvision says "Dataset not found or corrupted" for missing or altered files, and
        # asserts on a malformed idx header.
        raise DataError(f"could not load {name!r} from {str(root)!r} ({_one_line(exc)}); it should hold "
                        f"{spec.source}{_download_hint(name)}") from None


def _download_hint(name: str) -> str:
    if name == "cifar10-exact":
        return " (see ../shared/data/README.md; it cannot be downloaded)"
    return "; add --download to let torchvision fetch it"


def _one_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _load_digits(spec: DatasetSpec) -> ImageData:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = torch.from_numpy(bunch.images.astype(np.float32) / 16.0).unsqueeze(1)  # 0..16 -> [0, 1]
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    idx_train, idx_test = train_test_split(
        np.arange(len(labels)), test_size=DIGITS_TEST_SIZE, random_state=DIGITS_SPLIT_SEED,
        stratify=bunch.target)
    idx_train, idx_test = torch.from_numpy(idx_train), torch.from_numpy(idx_test)
    return ImageData(spec, images[idx_train], labels[idx_train], images[idx_test], labels[idx_test])


def _cache_dir() -> Path:
    return Path(os.environ.get("ATLD_CACHE", Path.home() / ".cache" / "atld"))


def _load_idx(spec: DatasetSpec, root: Path, download: bool) -> ImageData:
    from torchvision.datasets import MNIST, FashionMNIST

    cls = MNIST if spec.name == "mnist" else FashionMNIST
    root = _with_unzipped_idx(root, cls.__name__)
    train = cls(str(root), train=True, download=download)
    test = cls(str(root), train=False, download=download)
    return ImageData(spec, train.data.unsqueeze(1).contiguous(), train.targets.long(),
                     test.data.unsqueeze(1).contiguous(), test.targets.long())


def _with_unzipped_idx(root: Path, folder: str) -> Path:
    """torchvision reads only uncompressed idx files. If ROOT/<folder>/raw has only the .gz
    copies (as ../shared/data does, read-only), decompress them once into the cache and read
    from there; the originals are never modified. The cache folder is keyed by the SHA-256 of the
    .gz files, so other (or altered) source files never reuse a stale decompressed copy."""
    raw = root / folder / "raw"
    gz = sorted(raw.glob("*-ubyte.gz")) if raw.is_dir() else []
    if not gz or all((raw / f.stem).exists() for f in gz):
        return root
    digest = hashlib.sha256()
    for f in gz:
        digest.update(f.name.encode() + b"\0")
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    cached = _cache_dir() / "idx" / f"{folder.lower()}-{digest.hexdigest()[:16]}"
    (cached / folder / "raw").mkdir(parents=True, exist_ok=True)
    for f in gz:
        target = cached / folder / "raw" / f.stem
        if not target.exists():
            tmp = target.with_suffix(".tmp")
            with gzip.open(f, "rb") as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst)
            os.replace(tmp, target)
    return cached


def _load_cifar(spec: DatasetSpec, root: Path, download: bool) -> ImageData:
    # torchvision unpickles the CIFAR batches only after their md5 matches the official release.
    from torchvision.datasets import CIFAR10, CIFAR100

    cls = CIFAR10 if spec.name == "cifar10" else CIFAR100
    train = cls(str(root), train=True, download=download)
    test = cls(str(root), train=False, download=download)

    def images(ds) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2)))  # NHWC -> NCHW

    return ImageData(spec, images(train), torch.tensor(train.targets, dtype=torch.int64),
                     images(test), torch.tensor(test.targets, dtype=torch.int64))


def _load_svhn(spec: DatasetSpec, root: Path, download: bool) -> ImageData:
    from torchvision.datasets import SVHN

    # torchvision already maps label 10 to digit 0 (the official code's 1..10 hack is not needed).
    train = SVHN(str(root), split="train", download=download)
    test = SVHN(str(root), split="test", download=download)
    return ImageData(spec, torch.from_numpy(np.ascontiguousarray(train.data)), torch.from_numpy(train.labels),
                     torch.from_numpy(np.ascontiguousarray(test.data)), torch.from_numpy(test.labels))


def _load_cifar10_exact(spec: DatasetSpec, root: Path, download: bool) -> ImageData:
    if download:
        raise DataError("cifar10-exact cannot be downloaded; point --data-root at ../shared/data")
    candidates = [root / "cifar10" / "exact" / "cifar10_exact_subsets.npz", root / "cifar10_exact_subsets.npz",
                  root / "exact" / "cifar10_exact_subsets.npz"]
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        raise DataError(f"no cifar10_exact_subsets.npz under {str(root)!r}; point --data-root at ../shared/data")
    with np.load(path, allow_pickle=False) as z:
        x_test = z["test_data_first"].reshape(-1, 3, 32, 32)
        y_test = z["test_labels"][: len(x_test)]
        train_labels = z["train_labels"]
        xs, ys = [], []
        for k in range(1, 6):  # batch k's labels start at 10,000 * (k - 1)
            rows = z[f"train_data_batch_{k}_data_first"].reshape(-1, 3, 32, 32)
            xs.append(rows)
            ys.append(train_labels[10000 * (k - 1): 10000 * (k - 1) + len(rows)])
    return ImageData(spec, torch.from_numpy(np.concatenate(xs)), torch.from_numpy(np.concatenate(ys).astype(np.int64)),
                     torch.from_numpy(np.ascontiguousarray(x_test)), torch.from_numpy(y_test.astype(np.int64)))
