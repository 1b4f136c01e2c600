"""Loading a registered dataset into memory as tensors (no DataLoader, no download by default).

Every loader returns an `ImageData`: four CPU tensors, images NCHW (uint8 in 0..255, or float32
already in [0, 1]) and int64 labels, checked by `check_image_data` against the dataset's spec
(shapes, dtypes, value and label ranges, counts) whatever file they came from. `as_float01` turns
a batch into float32 [0, 1].

`load_sample` reads a shipped test sample (`atld.data.samples`: the test split only, the train
split empty); `load_for_app` is the app's loader: the full data when it is under the data root,
else the shipped sample; `load_for_cli` the commands': the data root when one is given, else
the shipped sample (as the app does), else the one-line "needs --data-root" error.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from atld.vocab import Split, parse
from atld.data.availability import full_data_dir, has_full_data
from atld.data.idx import read_idx
from atld.data.registry import IDX_NAMES, DatasetSpec, get_spec
from atld.data.samples import read_sample, sample_path
from atld.errors import DataError

DIGITS_TEST_SIZE = 450  # 1,797 images -> 1,347 train / 450 test, stratified
DIGITS_SPLIT_SEED = 0  # fixed: every run and every checkpoint sees the same split
IDX_FILES = {"train": IDX_NAMES[:2], "test": IDX_NAMES[2:]}


@dataclass(frozen=True)
class ImageData:
    spec: DatasetSpec
    x_train: torch.Tensor  # [N, C, H, W] uint8 (0..255) or float32 in [0, 1]
    y_train: torch.Tensor  # [N] int64
    x_test: torch.Tensor
    y_test: torch.Tensor
    sample: bool = False  # the shipped test sample: the test split only (the train split is empty)

    def on_what(self) -> str:
        """Where numbers computed on these test images come from, for captions: "" for the full
        test set, else "on the shipped sample of N test images"."""
        return f"on the shipped sample of {len(self.y_test):,} test images" if self.sample else ""

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        if parse(Split, name, "split") is Split.TRAIN:
            return self.x_train, self.y_train
        return self.x_test, self.y_test


def as_float01(x: torch.Tensor) -> torch.Tensor:
    """Images as float32 in [0, 1]: uint8 is divided by 255, float is passed through."""
    return x.float().div_(255) if x.dtype == torch.uint8 else x.float()


def check_image_data(data: ImageData) -> ImageData:
    """Check every claim the loaded files make against the spec: image shape and dtype, values in
    [0, 1] for float images, one int64 label in [0, K) per image, non-empty splits of bounded size."""
    spec = data.spec
    for split, x, y in (("train", data.x_train, data.y_train), ("test", data.x_test, data.y_test)):
        where = f"{spec.name} {split} split"
        if x.dim() != 4 or tuple(x.shape[1:]) != tuple(spec.input_shape):
            raise DataError(f"{where}: images are {tuple(x.shape)}, the dataset needs [N, {spec.input_shape}]")
        if x.dtype not in (torch.uint8, torch.float32):
            raise DataError(f"{where}: images are {x.dtype}, expected uint8 or float32")
        if x.dtype == torch.float32 and len(x) and not (bool(torch.isfinite(x).all()) and 0 <= x.min() <= x.max() <= 1):
            raise DataError(f"{where}: float images must be finite and in [0, 1]")
        if y.dim() != 1 or len(y) != len(x) or y.dtype != torch.int64:
            raise DataError(f"{where}: {len(x)} images but labels of shape {tuple(y.shape)} ({y.dtype})")
        if data.sample and split == "train" and len(y) == 0:
            continue  # a shipped sample has no train split
        if not 1 <= len(y) <= spec.max_images:
            raise DataError(f"{where} has {len(y)} images; expected 1 to {spec.max_images}")
        if int(y.min()) < 0 or int(y.max()) >= spec.num_classes:
            raise DataError(f"{where}: labels must be in 0..{spec.num_classes - 1}, "
                            f"found {int(y.min())}..{int(y.max())}")
    return data


def load_dataset(name: str, root: str | os.PathLike | None = None, download: bool = False) -> ImageData:
    """Load `name` whole into CPU memory, validated (`check_image_data`).

    `root` is the local folder of the file-based datasets; `download=True` lets torchvision fetch
    missing files (only when the user asks). A missing root or file raises `DataError` with
    instructions."""
    spec = get_spec(name)
    if not spec.needs_root:
        return check_image_data(_load_digits(spec))
    if root is None:
        raise DataError(f"dataset {name!r} needs --data-root: a local folder holding {spec.source}"
                        f"{_download_hint(name)}")
    root = Path(root).expanduser()
    if not root.is_dir() and not download:
        raise DataError(f"data root {str(root)!r} does not exist; it should hold {spec.source}{_download_hint(name)}")
    loader = {"mnist": _load_idx, "fashion-mnist": _load_idx, "cifar10": _load_cifar,
              "cifar100": _load_cifar, "svhn": _load_svhn, "cifar10-exact": _load_cifar10_exact}[name]
    try:
        return check_image_data(loader(spec, root, download))
    except DataError as exc:
        raise DataError(f"could not load {name!r} from {str(root)!r}: {exc}") from None
    except (RuntimeError, OSError, KeyError, ValueError, AssertionError, TypeError, IndexError) as exc:
        # torchvision says "Dataset not found or corrupted" for missing or altered files
        raise DataError(f"could not load {name!r} from {str(root)!r} ({_one_line(exc)}); it should hold "
                        f"{spec.source}{_download_hint(name)}") from None


def load_sample(name: str, directory: str | os.PathLike) -> ImageData:
    """The shipped test sample of `name` in `directory` (`atld.data.samples`), validated like any
    stranger's file; its train split is empty."""
    spec = get_spec(name)
    sample = read_sample(sample_path(name, directory), spec)
    empty_x = torch.zeros((0, *spec.input_shape), dtype=torch.uint8)
    return check_image_data(ImageData(spec, empty_x, torch.zeros(0, dtype=torch.int64),
                                      torch.from_numpy(sample.images), torch.from_numpy(sample.labels), sample=True))


def load_for_app(name: str, root: str | os.PathLike | None, samples_dir: str | os.PathLike) -> ImageData:
    """The app's data: the full data set when it is under `root` (`has_full_data`), else the shipped
    test sample, else a DataError that says how to get the data in the app's terms."""
    if has_full_data(name, root):
        return load_dataset(name, root)
    if sample_path(name, samples_dir).is_file():
        return load_sample(name, samples_dir)
    spec = get_spec(name)
    how = "download it on the Home page (Datasets) or start" if spec.downloadable else "start"
    raise DataError(f"no {name} data on this server (no shipped sample, nothing under {str(root)!r}): {how} the "
                    f"app with ATLD_DATA_ROOT set to a folder holding {spec.source}")


def load_for_cli(name: str, root: str | os.PathLike | None, samples_dir: str | os.PathLike) -> ImageData:
    """The commands' data (`eval`, `embed`): `load_dataset(name, root)` when a root is given or
    the dataset needs none, else the shipped test sample in `samples_dir` when there is one
    (`ImageData.sample` is then True, and the command says so), else `load_dataset`'s error."""
    if root is not None or not get_spec(name).needs_root or not sample_path(name, samples_dir).is_file():
        return load_dataset(name, root)
    return load_sample(name, samples_dir)


def sample_notice(data: ImageData) -> str:
    """The line a command prints when it works on the shipped sample ("" on the full data)."""
    if not data.sample:
        return ""
    return (f"no --data-root: working {data.on_what()} of {data.spec.name} (the first images of its test set); "
            "give --data-root DIR for the full test set\n")


def _download_hint(name: str) -> str:
    if name == "cifar10-exact":
        return " (the exact subsets live in ../shared/data; they cannot be downloaded)"
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


def _load_idx(spec: DatasetSpec, root: Path, download: bool) -> ImageData:
    """MNIST / Fashion-MNIST from ROOT/<MNIST|FashionMNIST>/raw, plain or .gz, read by `read_idx`
    (`atld.data.download` fetches missing files, when asked)."""
    folder = "MNIST" if spec.name == "mnist" else "FashionMNIST"
    root = full_data_dir(spec.name, root) or root  # ROOT/MNIST/raw or ROOT/mnist/MNIST/raw
    raw = root / folder / "raw"
    if download and not all((raw / f).is_file() or (raw / f"{f}.gz").is_file()
                            for pair in IDX_FILES.values() for f in pair):
        from atld.data.download import download_dataset

        download_dataset(spec.name, root)
    if not raw.is_dir():
        raise DataError(f"no {folder}/raw folder")
    arrays = {}
    for split, (images, labels) in IDX_FILES.items():
        x = read_idx(raw / images, spec.input_shape[1:], spec.max_images)
        y = read_idx(raw / labels, (), spec.max_images)
        if len(x) != len(y):
            raise DataError(f"{images} holds {len(x)} images but {labels} {len(y)} labels")
        arrays[split] = (torch.from_numpy(x.copy()).unsqueeze(1), torch.from_numpy(y.astype(np.int64)))
    return ImageData(spec, *arrays["train"], *arrays["test"])


def _load_cifar(spec: DatasetSpec, root: Path, download: bool) -> ImageData:
    # torchvision unpickles the CIFAR batches only after their md5 matches the official release.
    from torchvision.datasets import CIFAR10, CIFAR100

    cls = CIFAR10 if spec.name == "cifar10" else CIFAR100
    if download:  # through the lab's guarded fetch, not torchvision's (atld.data.download)
        from atld.data.download import download_torchvision_files

        download_torchvision_files(spec.name, root)
    train = cls(str(root), train=True, download=False)
    test = cls(str(root), train=False, download=False)

    def images(ds) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2)))  # NHWC -> NCHW

    return ImageData(spec, images(train), torch.tensor(train.targets, dtype=torch.int64),
                     images(test), torch.tensor(test.targets, dtype=torch.int64))


def _load_svhn(spec: DatasetSpec, root: Path, download: bool) -> ImageData:
    from torchvision.datasets import SVHN

    # torchvision already maps label 10 to digit 0 (the official code's 1..10 hack is not needed).
    if download:  # through the lab's guarded fetch, not torchvision's (atld.data.download)
        from atld.data.download import download_torchvision_files

        download_torchvision_files(spec.name, root)
    train = SVHN(str(root), split="train", download=False)
    test = SVHN(str(root), split="test", download=False)
    return ImageData(spec, torch.from_numpy(np.ascontiguousarray(train.data)),
                     torch.from_numpy(train.labels.astype(np.int64)),
                     torch.from_numpy(np.ascontiguousarray(test.data)), torch.from_numpy(test.labels.astype(np.int64)))


def _load_cifar10_exact(spec: DatasetSpec, root: Path, download: bool) -> ImageData:
    if download:
        raise DataError("cifar10-exact cannot be downloaded; point --data-root at ../shared/data")
    candidates = [root / "cifar10" / "exact" / "cifar10_exact_subsets.npz", root / "cifar10_exact_subsets.npz",
                  root / "exact" / "cifar10_exact_subsets.npz"]
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        raise DataError(f"no cifar10_exact_subsets.npz under {str(root)!r}; point --data-root at ../shared/data")
    with np.load(path, allow_pickle=False) as z:
        x_test = _uint8_rows(z["test_data_first"])
        test_labels, train_labels = z["test_labels"].astype(np.int64), z["train_labels"].astype(np.int64)
        xs, ys = [], []
        for k in range(1, 6):  # batch k's labels start at 10,000 * (k - 1)
            rows = _uint8_rows(z[f"train_data_batch_{k}_data_first"])
            labels = train_labels[10000 * (k - 1): 10000 * (k - 1) + len(rows)]
            if len(labels) != len(rows):
                raise DataError(f"batch {k} has {len(rows)} images but only {len(labels)} labels")
            xs.append(rows)
            ys.append(labels)
    if len(test_labels) < len(x_test):
        raise DataError(f"{len(x_test)} test images but {len(test_labels)} labels")
    return ImageData(spec, torch.from_numpy(np.concatenate(xs)), torch.from_numpy(np.concatenate(ys)),
                     torch.from_numpy(x_test), torch.from_numpy(test_labels[: len(x_test)]))


def _uint8_rows(a: np.ndarray) -> np.ndarray:
    """CIFAR rows [N, 3072] of uint8 -> [N, 3, 32, 32]."""
    if a.dtype != np.uint8 or a.ndim != 2 or a.shape[1] != 3 * 32 * 32:
        raise DataError(f"expected uint8 rows of 3072 values, got {a.dtype} {a.shape}")
    return np.ascontiguousarray(a.reshape(-1, 3, 32, 32))
