"""Downloading MNIST-style files (atld.data.download) from a local HTTP server on 127.0.0.1 that
serves a tiny fake idx set: progress, checksums, failures as one line, the background Download
the app uses, and the CLI's --download path through load_dataset."""

from __future__ import annotations

import hashlib
import http.server
import threading
from functools import partial

import pytest
from torchvision.datasets import MNIST

from atld.data.download import Download, download_dataset, raw_folder
from atld.data.loaders import load_dataset
from atld.errors import DataError


@pytest.fixture
def mirror(tmp_path, tiny_idx_set, monkeypatch):
    """A local mirror of a tiny idx set; MNIST's mirrors and checksums point at it. Yields the
    served folder (delete a file there to make the mirror fail)."""
    served = tmp_path / "served"
    files = tiny_idx_set(served, n_train=5, n_test=3)
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(MNIST, "mirrors", [f"http://127.0.0.1:{server.server_address[1]}/"])
    monkeypatch.setattr(MNIST, "resources", [(name, hashlib.md5(data).hexdigest()) for name, data in files.items()])
    yield served
    server.shutdown()
    server.server_close()


def test_download_fetches_every_file_with_progress_and_the_loader_reads_them(mirror, tmp_path):
    events = []
    raw = download_dataset("mnist", tmp_path / "data", lambda *e: events.append(e))
    assert raw == raw_folder("mnist", tmp_path / "data")
    assert sorted(p.name for p in raw.iterdir()) == sorted(p.name for p in mirror.iterdir())  # no .part left
    assert events[-1][:2] == (4, 4) and any(e[2] > 0 and e[3] == e[2] for e in events)  # bytes of a whole file
    data = load_dataset("mnist", tmp_path / "data")
    assert len(data.y_train) == 5 and len(data.y_test) == 3


def test_the_cli_download_flag_goes_through_the_same_fetch(mirror, tmp_path):
    data = load_dataset("mnist", tmp_path / "fresh", download=True)
    assert len(data.y_test) == 3


def test_a_corrupted_file_fails_its_checksum_and_leaves_nothing(mirror, tmp_path):
    (mirror / "t10k-labels-idx1-ubyte.gz").write_bytes(b"not what was published")
    with pytest.raises(DataError, match="t10k-labels.*MD5 is not the published one.*try again") as info:
        download_dataset("mnist", tmp_path / "data")
    assert "\n" not in str(info.value)
    assert not any(p.name.endswith(".part") or p.name.startswith("t10k-labels")
                   for p in raw_folder("mnist", tmp_path / "data").iterdir())


def test_no_network_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setattr(MNIST, "mirrors", ["http://127.0.0.1:9/"])  # the discard port: connection refused
    with pytest.raises(DataError, match="could not download train-images-idx3-ubyte.gz .*internet connection"):
        download_dataset("mnist", tmp_path)


def test_cifar10_exact_cannot_be_downloaded(tmp_path):
    with pytest.raises(DataError, match="cannot be downloaded"):
        download_dataset("cifar10-exact", tmp_path)


def test_the_background_download_reports_progress_success_and_failure(mirror, tmp_path):
    job = Download("mnist", tmp_path / "data").start()
    assert job.wait(60) and job.finished and job.error is None
    assert job.fraction() == 1.0 and "downloaded (4 files)" in job.text()
    (mirror / "train-images-idx3-ubyte.gz").unlink()
    failed = Download("mnist", tmp_path / "other").start()
    assert failed.wait(60) and not failed.finished
    assert "HTTP 404" in failed.error and failed.text().startswith("mnist: download failed:")
