"""The shipped test samples (atld.data.samples), the availability of each dataset
(atld.data.availability) and the app's loader that falls back to the sample (load_for_app)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

from atld.data.availability import all_availability, has_full_data
from atld.runs.card import shipped_checkpoints
from atld.data.loaders import load_for_app, load_sample
from atld.data.registry import get_spec
from atld.data.samples import MAX_SAMPLE_IMAGES, read_sample, sample_path
from atld.errors import DataError

REPO = Path(__file__).resolve().parents[1]
SHIPPED_SAMPLES = REPO / "checkpoints" / "samples"


def write_sample(directory: Path, name: str = "mnist", n: int = 5, **override) -> Path:
    spec = get_spec(name)
    arrays = {"images": np.zeros((n, *spec.input_shape), np.uint8), "labels": np.arange(n, dtype=np.int64) % 10,
              "source_indices": np.arange(n, dtype=np.int64)}
    arrays.update(override)
    path = sample_path(name, directory)
    np.savez_compressed(path, **arrays)
    return path


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist", "cifar10-exact"])
def test_every_shipped_sample_loads_as_a_test_split(name):
    data = load_sample(name, SHIPPED_SAMPLES)
    assert data.sample and len(data.x_train) == 0 and len(data.y_train) == 0
    assert 1 <= len(data.y_test) <= MAX_SAMPLE_IMAGES and data.x_test.dtype.is_floating_point is False
    assert tuple(data.x_test.shape[1:]) == data.spec.input_shape
    assert len(set(data.y_test.tolist())) == 10  # every class appears
    assert data.on_what() == f"on the shipped sample of {len(data.y_test):,} test images"
    assert sample_path(name, SHIPPED_SAMPLES).stat().st_size < 2 * 2**20


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=True)
    return buf.getvalue()


def test_a_sample_written_by_hand_loads(tmp_path):
    write_sample(tmp_path, n=7)
    assert len(read_sample(sample_path("mnist", tmp_path), get_spec("mnist")).labels) == 7


@pytest.mark.parametrize("case, message", [
    ("wrong_shape", "images is uint8 .*expected uint8 \\(3, 1, 28, 28\\)"),
    ("wrong_dtype", "images is float32"),
    ("too_many", "holds 2001 images"),
    ("label_range", "labels must be in 0..9"),
    ("indices_not_increasing", "source_indices must be"),
    ("pickle", "images is object"),
    ("extra_member", "exactly the arrays"),
    ("truncated", "not a readable sample archive"),
    ("not_a_zip", "not a readable sample archive"),
    ("labels_short", "labels is int64 \\(2,\\)"),
])
def test_a_hostile_sample_is_one_clear_line(tmp_path, case, message):
    spec = get_spec("mnist")
    if case == "wrong_shape":
        path = write_sample(tmp_path, n=3, images=np.zeros((3, 1, 28, 27), np.uint8))
    elif case == "wrong_dtype":
        path = write_sample(tmp_path, n=3, images=np.zeros((3, 1, 28, 28), np.float32))
    elif case == "too_many":
        path = write_sample(tmp_path, n=MAX_SAMPLE_IMAGES + 1)
    elif case == "label_range":
        path = write_sample(tmp_path, n=3, labels=np.array([0, 10, 2], np.int64))
    elif case == "indices_not_increasing":
        path = write_sample(tmp_path, n=3, source_indices=np.array([0, 2, 2], np.int64))
    elif case == "labels_short":
        path = write_sample(tmp_path, n=3, labels=np.array([0, 1], np.int64))
    elif case in ("pickle", "extra_member"):
        path = sample_path("mnist", tmp_path)
        with zipfile.ZipFile(path, "w") as z:
            images = np.empty((3, 1, 28, 28), object) if case == "pickle" else np.zeros((3, 1, 28, 28), np.uint8)
            z.writestr("images.npy", _npy(images))
            z.writestr("labels.npy", _npy(np.zeros(3, np.int64)))
            z.writestr("source_indices.npy", _npy(np.arange(3, dtype=np.int64)))
            if case == "extra_member":
                z.writestr("evil.npy", _npy(np.zeros(1)))
    elif case == "truncated":
        path = write_sample(tmp_path, n=50)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:
        path = sample_path("mnist", tmp_path)
        path.write_bytes(b"\x00" * 100)
    with pytest.raises(DataError, match=message) as info:
        read_sample(path, spec)
    assert "\n" not in str(info.value)


def test_a_member_claiming_more_bytes_than_its_header_is_refused_before_reading(tmp_path):
    path = sample_path("mnist", tmp_path)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("images.npy", _npy(np.zeros((2, 1, 28, 28), np.uint8)) + b"\0" * 10_000_000)  # a small bomb
        z.writestr("labels.npy", _npy(np.zeros(2, np.int64)))
        z.writestr("source_indices.npy", _npy(np.arange(2, dtype=np.int64)))
    with pytest.raises(DataError, match="claims .* bytes, more than its header allows"):
        read_sample(path, get_spec("mnist"))


def test_availability_reports_checkpoints_sample_and_full_data(tmp_path, app_checkpoints):
    samples, root = tmp_path / "samples", tmp_path / "data"
    samples.mkdir()
    write_sample(samples, "fashion-mnist")
    raw = root / "mnist" / "MNIST" / "raw"  # one folder per dataset, as in a shared data folder
    raw.mkdir(parents=True)
    for f in get_spec("mnist").data_files[:3]:
        (root / "mnist" / f).write_bytes(b"")
    assert not has_full_data("mnist", root)  # one file missing
    (root / "mnist" / (get_spec("mnist").data_files[3] + ".gz")).write_bytes(b"")
    assert has_full_data("mnist", root) and has_full_data("digits", None) and not has_full_data("mnist", None)
    shipped = shipped_checkpoints(app_checkpoints)
    assert shipped == {"digits-atld": "digits", "digits-natural": "digits"}
    table = all_availability(data_root=root, samples_dir=samples, checkpoints=shipped)
    assert table["digits"].checkpoints == ("digits-atld", "digits-natural") and table["digits"].full_data
    assert table["mnist"].full_data and table["mnist"].sample is None and table["mnist"].downloadable
    assert table["fashion-mnist"].sample is not None and not table["fashion-mnist"].full_data
    assert table["fashion-mnist"].summary() == "no checkpoint · sample only"
    assert not table["cifar10-exact"].usable and not table["cifar10-exact"].downloadable


def test_the_app_loader_prefers_the_full_data_and_falls_back_to_the_sample(tmp_path, tiny_idx_set):
    samples = tmp_path / "samples"
    samples.mkdir()
    write_sample(samples, "mnist", n=4)
    data = load_for_app("mnist", tmp_path / "nothing", samples)
    assert data.sample and len(data.y_test) == 4 and len(data.y_train) == 0
    assert not load_for_app("digits", None, samples).sample
    with pytest.raises(DataError, match="no fashion-mnist data .*download it on the Home page"):
        load_for_app("fashion-mnist", tmp_path / "nothing", samples)
    with pytest.raises(DataError, match="no cifar10-exact data .*ATLD_DATA_ROOT") as info:
        load_for_app("cifar10-exact", None, samples)
    assert "download" not in str(info.value)
    tiny_idx_set(tmp_path / "data" / "mnist" / "MNIST" / "raw", n_train=6, n_test=2)  # the full data wins
    data = load_for_app("mnist", tmp_path / "data", samples)
    assert not data.sample and len(data.y_train) == 6 and len(data.y_test) == 2 and data.on_what() == ""
