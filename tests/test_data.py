"""Datasets: the registry's defaults, the embedded digits split, and the torchvision loaders
reading tiny files that the tests write in the real on-disk formats."""

import gzip
import hashlib
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from atld.data import DATASETS, as_float01, augment_batch, get_spec, load_dataset
from atld.attacks.step import attack_step
from atld.errors import ConfigError, DataError


def test_registry_defaults_follow_the_paper_and_the_step_rule():
    assert get_spec("cifar10").epsilon == pytest.approx(8 / 255)
    assert attack_step(get_spec("cifar10").epsilon) == pytest.approx(2 / 255)  # the paper's step
    assert get_spec("svhn").imt_window == (0.3, 0.6)
    assert get_spec("mnist").epsilon == 0.3 and get_spec("fashion-mnist").epsilon == 0.1
    assert get_spec("digits").epsilon == 0.2
    assert get_spec("cifar100").gap_weight_scale == pytest.approx(0.1)  # s/10 for CIFAR-100
    for spec in DATASETS.values():
        assert 10 * attack_step(spec.epsilon) >= 2.5 * spec.epsilon - 1e-12  # PGD-10 covers 2.5 ε
        assert len(spec.mean) == len(spec.std) == spec.input_shape[0]
    assert get_spec("cifar10").augmentation == "crop-flip" and get_spec("svhn").augmentation == "none"


def test_unknown_dataset_is_a_clear_error():
    with pytest.raises(ConfigError, match="unknown dataset 'imagenet'"):
        get_spec("imagenet")


def test_digits_split_is_fixed_stratified_and_in_unit_range():
    a, b = load_dataset("digits"), load_dataset("digits")
    assert a.x_train.shape == (1347, 1, 8, 8) and a.x_test.shape == (450, 1, 8, 8)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert a.x_train.dtype == torch.float32 and 0 <= a.x_train.min() and a.x_train.max() <= 1
    counts = torch.bincount(a.y_test, minlength=10).double()
    share = torch.bincount(torch.cat([a.y_train, a.y_test]), minlength=10).double() / 1797
    assert torch.all((counts - 450 * share).abs() <= 1)  # stratified: each class in proportion
    # train and test images are disjoint
    train_rows = {tuple(r.tolist()) for r in a.x_train.flatten(1)}
    overlap = sum(tuple(r.tolist()) in train_rows for r in a.x_test.flatten(1))
    assert overlap < 5  # load_digits holds a handful of exact duplicates, nothing more


@pytest.mark.parametrize("name", ["mnist", "cifar10", "svhn", "cifar10-exact"])
def test_missing_root_says_how_to_get_the_data(name, tmp_path):
    with pytest.raises(DataError, match="--data-root|does not exist|cifar10_exact_subsets"):
        load_dataset(name, tmp_path / "nowhere")
    with pytest.raises(DataError, match="needs --data-root"):
        load_dataset(name, None)


def test_empty_root_is_a_data_error_not_a_traceback(tmp_path):
    with pytest.raises(DataError, match="could not load 'cifar10'.*--download"):
        load_dataset("cifar10", tmp_path)


def _write_idx(folder, prefix, images, labels, compress=False):
    folder.mkdir(parents=True, exist_ok=True)
    img = struct.pack(">IIII", 0x0803, len(images), 28, 28) + images.astype(np.uint8).tobytes()
    lab = struct.pack(">II", 0x0801, len(labels)) + labels.astype(np.uint8).tobytes()
    for name, payload in ((f"{prefix}-images-idx3-ubyte", img), (f"{prefix}-labels-idx1-ubyte", lab)):
        if compress:
            with gzip.open(folder / f"{name}.gz", "wb") as fh:
                fh.write(payload)
        else:
            (folder / name).write_bytes(payload)


@pytest.mark.parametrize("name,folder", [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")])
@pytest.mark.parametrize("compress", [False, True])
def test_idx_files_load_through_torchvision(tmp_path, name, folder, compress):
    rng = np.random.default_rng(0)
    tr_x, tr_y = rng.integers(0, 256, (7, 28, 28)), rng.integers(0, 10, 7)
    te_x, te_y = rng.integers(0, 256, (3, 28, 28)), rng.integers(0, 10, 3)
    raw = tmp_path / folder / "raw"
    _write_idx(raw, "train", tr_x, tr_y, compress)
    _write_idx(raw, "t10k", te_x, te_y, compress)
    data = load_dataset(name, tmp_path)
    assert data.x_train.shape == (7, 1, 28, 28) and data.x_train.dtype == torch.uint8
    assert torch.equal(data.x_train[:, 0], torch.from_numpy(tr_x.astype(np.uint8)))
    assert torch.equal(data.y_test, torch.from_numpy(te_y.astype(np.int64)))
    assert as_float01(data.x_test).max() <= 1.0
    if compress:  # the read-only .gz originals are left alone; the cache holds the idx files
        assert sorted(p.name for p in raw.iterdir()) == sorted(f"{p}-{k}-idx{n}-ubyte.gz" for p in ("train", "t10k")
                                                              for k, n in (("images", 3), ("labels", 1)))


def _md5(path):
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_python_batches_load_through_torchvision(tmp_path, monkeypatch, name):
    from torchvision.datasets import CIFAR10, CIFAR100

    cls = CIFAR10 if name == "cifar10" else CIFAR100
    folder = tmp_path / cls.base_folder
    folder.mkdir()
    rng = np.random.default_rng(1)
    label_key = "labels" if name == "cifar10" else "fine_labels"
    expected = {}
    train_list, test_list = [], []
    train_names = {entry[0] for entry in cls.train_list}
    for fname, _official_md5 in cls.train_list + cls.test_list:
        rows = rng.integers(0, 256, (2, 3072)).astype(np.uint8)
        labels = rng.integers(0, 10, 2).tolist()
        with open(folder / fname, "wb") as fh:
            pickle.dump({"data": rows, label_key: labels}, fh)
        expected[fname] = (rows, labels)
        (train_list if fname in train_names else test_list).append([fname, _md5(folder / fname)])
    meta_name = cls.meta["filename"]
    with open(folder / meta_name, "wb") as fh:
        pickle.dump({cls.meta["key"]: [f"class{i}" for i in range(10)]}, fh)
    # torchvision checks every file's md5 against the official release; point it at ours.
    monkeypatch.setattr(cls, "train_list", train_list)
    monkeypatch.setattr(cls, "test_list", test_list)
    monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": _md5(folder / meta_name)})
    data = load_dataset(name, tmp_path)
    n_train = 2 * len(train_list)
    assert data.x_train.shape == (n_train, 3, 32, 32) and data.x_test.shape == (2, 3, 32, 32)
    first_rows, first_labels = expected[train_list[0][0]]
    # rows are R, G, B planes of 32x32: NCHW after loading
    assert torch.equal(data.x_train[0].flatten(), torch.from_numpy(first_rows[0]))
    assert data.y_train[:2].tolist() == first_labels


def test_svhn_mat_files_load_through_torchvision(tmp_path, monkeypatch):
    import scipy.io
    from torchvision.datasets import SVHN

    rng = np.random.default_rng(2)
    split_list = {}
    for split, n in (("train", 5), ("test", 3)):
        x = rng.integers(0, 256, (32, 32, 3, n)).astype(np.uint8)
        y = np.array([[10], [1], [2], [10], [9]][:n], dtype=np.uint8)  # SVHN labels 1..10, 10 = digit 0
        fname = f"{split}_32x32.mat"
        scipy.io.savemat(tmp_path / fname, {"X": x, "y": y})
        split_list[split] = ["", fname, _md5(tmp_path / fname)]
    monkeypatch.setattr(SVHN, "split_list", {**SVHN.split_list, **split_list})
    data = load_dataset("svhn", tmp_path)
    assert data.x_train.shape == (5, 3, 32, 32)
    assert data.y_train.tolist() == [0, 1, 2, 0, 9]  # 10 -> 0, no official 1..10 hack needed


def test_cifar10_exact_subsets_npz(tmp_path):
    rng = np.random.default_rng(3)
    folder = tmp_path / "cifar10" / "exact"
    folder.mkdir(parents=True)
    arrays = {"test_data_first": rng.integers(0, 256, (4, 3072)).astype(np.uint8),
              "test_labels": rng.integers(0, 10, 10000), "train_labels": rng.integers(0, 10, 50000)}
    for k in range(1, 6):
        arrays[f"train_data_batch_{k}_data_first"] = rng.integers(0, 256, (k, 3072)).astype(np.uint8)
    np.savez(folder / "cifar10_exact_subsets.npz", **arrays)
    data = load_dataset("cifar10-exact", tmp_path)
    assert data.x_train.shape == (15, 3, 32, 32) and data.x_test.shape == (4, 3, 32, 32)
    # batch 3's first label is train_labels[20000]
    assert data.y_train[1 + 2].item() == arrays["train_labels"][20000]
    assert data.y_test.tolist() == arrays["test_labels"][:4].tolist()


def test_crop_flip_augmentation_is_a_shifted_window_of_the_padded_image():
    x = torch.rand(16, 3, 8, 8)
    g = torch.Generator().manual_seed(0)
    out = augment_batch(x, "crop-flip", g)
    assert out.shape == x.shape
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    for i in range(16):
        windows = [padded[i, :, dy:dy + 8, dx:dx + 8] for dy in range(9) for dx in range(9)]
        assert any(torch.equal(out[i], w) or torch.equal(out[i], w.flip(-1)) for w in windows)
    assert torch.equal(augment_batch(x, "none"), x)


def test_decompressed_idx_cache_never_serves_stale_files(tmp_path):
    """The .gz -> idx cache is keyed by the source files' content: new files, new data."""
    rng = np.random.default_rng(4)
    raw = tmp_path / "MNIST" / "raw"
    for round_ in range(2):
        x, y = rng.integers(0, 256, (5, 28, 28)), rng.integers(0, 10, 5)
        _write_idx(raw, "train", x, y, compress=True)
        _write_idx(raw, "t10k", x[:2], y[:2], compress=True)
        data = load_dataset("mnist", tmp_path)
        assert torch.equal(data.x_train[:, 0], torch.from_numpy(x.astype(np.uint8))), round_


# ----------------------------------------------------------------------------- idx files are validated

def _idx(dims: tuple[int, ...], payload: bytes, dtype: int = 0x08) -> bytes:
    return bytes([0, 0, dtype, len(dims)]) + struct.pack(f">{len(dims)}I", *dims) + payload


def _mnist_root(tmp_path, **override) -> None:
    """A tiny valid MNIST folder (3 train, 2 test images), with one file replaced by `override`."""
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    files = {"train-images-idx3-ubyte": _idx((3, 28, 28), bytes(3 * 784)),
             "train-labels-idx1-ubyte": _idx((3,), bytes([1, 2, 3])),
             "t10k-images-idx3-ubyte": _idx((2, 28, 28), bytes(2 * 784)),
             "t10k-labels-idx1-ubyte": _idx((2,), bytes([4, 5]))}
    files.update(override)
    for name, data in files.items():
        (raw / name).write_bytes(data)


BAD_IDX = {
    "more labels than images": ({"train-labels-idx1-ubyte": _idx((4,), bytes(4))}, "3 images but"),
    "a label out of range": ({"t10k-labels-idx1-ubyte": _idx((2,), bytes([4, 10]))}, "labels must be in 0..9"),
    "images of another size": ({"train-images-idx3-ubyte": _idx((3, 27, 27), bytes(3 * 729))},
                               "shape (27, 27), the dataset needs (28, 28)"),
    "float values": ({"train-images-idx3-ubyte": _idx((3, 28, 28), bytes(3 * 784 * 4), dtype=0x0D)},
                     "not an idx file of 3-D unsigned bytes"),
    "labels of two dimensions": ({"train-labels-idx1-ubyte": _idx((3, 1), bytes(3))}, "not an idx file of 1-D"),
    "bytes after the data": ({"train-images-idx3-ubyte": _idx((3, 28, 28), bytes(3 * 784 + 5))}, "2353+ bytes"),
    "fewer bytes than the header says": ({"train-images-idx3-ubyte": _idx((3, 28, 28), bytes(100))}, "100 bytes"),
    "a count over the dataset's bound": ({"train-images-idx3-ubyte": _idx((10**6, 28, 28), bytes(10))},
                                         "more than the 100000 allowed"),
    "an empty test split": ({"t10k-images-idx3-ubyte": _idx((0, 28, 28), b""),
                             "t10k-labels-idx1-ubyte": _idx((0,), b"")}, "has 0 images"),
}


@pytest.mark.parametrize("case", list(BAD_IDX))
def test_idx_files_that_disagree_are_refused(tmp_path, case):
    override, expected = BAD_IDX[case]
    _mnist_root(tmp_path, **override)
    with pytest.raises(DataError) as info:
        load_dataset("mnist", tmp_path)
    assert expected in str(info.value) and "\n" not in str(info.value), str(info.value)


def test_a_gz_that_inflates_far_beyond_its_header_is_read_no_further(tmp_path):
    """A 100 KB archive of 100 MB claiming 3 images: refused after reading 3 images' bytes plus one,
    with nothing written to disk (no decompressed copy is ever made)."""
    _mnist_root(tmp_path)
    raw = tmp_path / "MNIST" / "raw"
    (raw / "train-images-idx3-ubyte").unlink()
    with gzip.open(raw / "train-images-idx3-ubyte.gz", "wb", compresslevel=9) as fh:
        fh.write(_idx((3, 28, 28), b""))
        for _ in range(100):
            fh.write(bytes(2**20))
    assert (raw / "train-images-idx3-ubyte.gz").stat().st_size < 2**20
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with pytest.raises(DataError, match="its header says 2352"):
        load_dataset("mnist", tmp_path)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_the_shared_mnist_gz_files_read_directly_when_present():
    """The real MNIST copy in ../shared/data (read-only .gz) loads without a decompressed copy."""
    root = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
    if not (root / "MNIST" / "raw").is_dir():
        pytest.skip("../shared/data/mnist is not here (it never ships; this only checks it when present)")
    data = load_dataset("mnist", root)
    assert data.x_train.shape == (60000, 1, 28, 28) and data.y_test.shape == (10000,)
