"""Hostile mirrors and hostile data folders (`atld.data.download`), against servers on 127.0.0.1
only, every test bounded in time: planted links are never written through (a later download
repairs what it can), and every download has a deadline, a minimum rate and a Cancel that
takes effect within a second or two, with every network failure one line (docs/security.md,
"Downloads")."""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time

import pytest
from torchvision.datasets import MNIST

import atld.data.download as dl
from atld.cli import main as cli_main
from atld.data.download import Download, download_dataset, raw_folder
from atld.errors import DataError


# ----------------------------------------------------------------------------- a scriptable server

class RawServer:
    """A TCP server on 127.0.0.1 that answers every connection with `behaviour(conn, path)`."""

    def __init__(self, behaviour):
        self.behaviour = behaviour
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn):
        try:
            conn.settimeout(10)
            request = b""
            while b"\r\n\r\n" not in request:
                got = conn.recv(4096)
                if not got:
                    return
                request += got
            path = request.split(b" ")[1].decode()
            self.behaviour(conn, path, self.stop)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self):
        self.stop.set()
        self.thread.join(2)
        self.sock.close()


def _files(tiny_idx_set, tmp_path):
    return tiny_idx_set(tmp_path / "published", n_train=5, n_test=3)


@pytest.fixture
def serve(monkeypatch, tiny_idx_set, tmp_path):
    """serve(behaviour): point MNIST's mirrors at a RawServer; returns the published files."""
    servers = []
    files = _files(tiny_idx_set, tmp_path)
    monkeypatch.setattr(MNIST, "resources", [(n, hashlib.md5(d).hexdigest()) for n, d in files.items()])

    def start(behaviour):
        server = RawServer(lambda conn, path, stop: behaviour(conn, path, stop, files))
        servers.append(server)
        monkeypatch.setattr(MNIST, "mirrors", [f"http://127.0.0.1:{server.port}/"])
        return files

    yield start
    for s in servers:
        s.close()


def honest(conn, path, stop, files):
    body = files.get(path.rsplit("/", 1)[-1])
    if body is None:
        conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        return
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)


def drip(interval):
    def behaviour(conn, path, stop, files):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\nConnection: close\r\n\r\n")
        while not stop.wait(interval):
            conn.sendall(b"x")
    return behaviour


def silent(conn, path, stop, files):
    stop.wait(30)  # accepts, reads the request, never answers


def fast_forever(conn, path, stop, files):
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 60000000\r\nConnection: close\r\n\r\n")
    while not stop.wait(0.01):
        conn.sendall(b"x" * 2000)


def chunked_cut(conn, path, stop, files):
    conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                 b"64\r\n" + b"y" * 10)  # a chunk of 100 bytes, 10 sent, then the connection ends


def chunked_garbage(conn, path, stop, files):
    conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\nabc")


def length_cut(conn, path, stop, files):
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\nConnection: close\r\n\r\n" + b"z" * 10)


def not_http(conn, path, stop, files):
    conn.sendall(b"\x00\x01garbage that is not a status line\r\n\r\n")


def reset(conn, path, stop, files):
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST on close


def redirect_loop(conn, path, stop, files):
    conn.sendall(b"HTTP/1.1 302 Found\r\nLocation: " + path.encode() + b"\r\nContent-Length: 0\r\n\r\n")


@pytest.fixture
def quick(monkeypatch):
    """Short limits so every failure comes within seconds."""
    monkeypatch.setattr(dl, "STALL_S", 4.0)
    monkeypatch.setattr(dl, "DEADLINE_S", 2.0)
    monkeypatch.setattr(dl, "MIN_RATE", 2000)
    monkeypatch.setattr(dl, "RATE_WINDOW_S", 1.0)


# ----------------------------------------------------------------------------- deadlines and failures

NETWORK_FAILURES = {
    "a byte every 0.3 s (under the minimum rate)": (drip(0.3), "under the 1.95312 KiB/s minimum"),
    "headers, then silence": (silent, "KiB/s"),
    "fast enough, but never done (the deadline)": (fast_forever, "not finished within 2 s"),
    "a chunked response cut off mid-chunk": (chunked_cut, "cut off"),
    "a chunk size that is not a number": (chunked_garbage, "http://127.0.0.1"),
    "a Content-Length response cut off": (length_cut, "the connection closed after 10 of 5000 bytes"),
    "not HTTP at all": (not_http, "http://127.0.0.1"),
    "a reset connection": (reset, "http://127.0.0.1"),
    "a redirect to itself, for ever": (redirect_loop, "http://127.0.0.1"),
}


@pytest.mark.parametrize("case", list(NETWORK_FAILURES))
def test_every_network_failure_is_one_line_within_its_limits(serve, quick, tmp_path, case):
    behaviour, expected = NETWORK_FAILURES[case]
    serve(behaviour)
    start = time.monotonic()
    with pytest.raises(DataError) as err:
        download_dataset("mnist", tmp_path / "data")
    seconds = time.monotonic() - start
    message = str(err.value)
    assert "\n" not in message and message.startswith("could not download train-images") and expected in message, \
        message
    assert seconds < 6, f"{case} took {seconds:.1f} s"
    raw = raw_folder("mnist", tmp_path / "data")
    assert not list(raw.iterdir())  # no half file, no temporary file


@pytest.mark.parametrize("behaviour", [drip(5.0), silent], ids=["slow drip", "silent"])
def test_cancel_stops_the_app_download_within_two_seconds_and_frees_its_slot(serve, tmp_path, behaviour):
    serve(behaviour)
    job = Download("mnist", tmp_path / "data").start()
    time.sleep(0.6)  # in the middle of a read that waits for the next byte
    assert job.running
    start = time.monotonic()
    job.cancel()
    assert job.wait(2.0), "Cancel did not stop the download within 2 s"
    assert time.monotonic() - start < 2.0 and not job.running and not job.finished
    assert job.error and "cancelled" in job.error and "\n" not in job.text()
    assert not list(raw_folder("mnist", tmp_path / "data").iterdir())


def test_the_cli_reports_a_cut_off_download_in_one_line(serve, quick, tmp_path, capsys):
    serve(chunked_cut)
    code = cli_main(["train", "--dataset", "mnist", "--data-root", str(tmp_path / "data"), "--download",
                     "--epochs", "1", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: ") and "cut off" in err, err
    assert "Traceback" not in err and not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------- planted links

def _victim(tmp_path):
    victim = tmp_path / "outside" / "victim"
    victim.parent.mkdir()
    victim.write_bytes(b"precious")
    return victim


def test_links_planted_at_our_temporary_names_are_never_followed(serve, tmp_path, monkeypatch):
    files = serve(honest)
    victim = _victim(tmp_path)
    raw = raw_folder("mnist", tmp_path / "data")
    raw.mkdir(parents=True)
    for name in files:  # the old fixed temporary name of every file
        (raw / f".{name}.part").symlink_to(victim)
    fixed = "0123456789abcdef"  # a guessed "fresh" name: the exclusive create refuses it
    (raw / f".train-images-idx3-ubyte.gz.part-{fixed}").symlink_to(victim)
    tokens = iter([fixed])
    real = dl.secrets.token_hex
    monkeypatch.setattr(dl.secrets, "token_hex", lambda n: next(tokens, None) or real(n))
    monkeypatch.setattr(dl, "_remove_leftovers", lambda fd: None)  # the attacker plants after the clean-up
    with pytest.raises(DataError, match="File exists"):
        download_dataset("mnist", tmp_path / "data")
    assert victim.read_bytes() == b"precious"
    monkeypatch.undo()
    serve(honest)
    MNIST.resources = [(n, hashlib.md5(d).hexdigest()) for n, d in files.items()]
    download_dataset("mnist", tmp_path / "data")  # a later download repairs: leftovers gone, files right
    assert victim.read_bytes() == b"precious"
    assert sorted(p.name for p in raw.iterdir()) == sorted(files)
    assert all((raw / n).read_bytes() == d for n, d in files.items())


@pytest.mark.parametrize("where", ["train-images-idx3-ubyte.gz", "train-images-idx3-ubyte", "folder", "fifo",
                                  "raw folder", "dataset folder"])
def test_a_link_or_special_file_where_a_file_should_be_is_one_line(serve, tmp_path, where):
    files = serve(honest)
    victim = _victim(tmp_path)
    root = tmp_path / "data"
    raw = raw_folder("mnist", root)
    if where == "dataset folder":
        root.mkdir()
        (root / "MNIST").symlink_to(victim.parent)
    elif where == "raw folder":
        raw.parent.mkdir(parents=True)
        raw.symlink_to(victim.parent)
    else:
        raw.mkdir(parents=True)
        if where == "folder":
            (raw / "train-images-idx3-ubyte.gz").mkdir()
        elif where == "fifo":
            os.mkfifo(raw / "train-images-idx3-ubyte.gz")
        else:
            (raw / where).symlink_to(victim)
    with pytest.raises(DataError) as err:
        download_dataset("mnist", root)
    message = str(err.value)
    assert "\n" not in message and ("symbolic link" in message or "not a regular file" in message), message
    assert victim.read_bytes() == b"precious" and sorted(p.name for p in victim.parent.iterdir()) == ["victim"]
    del files


def test_a_later_download_repairs_truncated_files_and_our_leftovers(serve, tmp_path):
    files = serve(honest)
    raw = raw_folder("mnist", tmp_path / "data")
    raw.mkdir(parents=True)
    name = "train-labels-idx1-ubyte.gz"
    (raw / name).write_bytes(files[name][:5])  # a truncated file of an earlier, broken download
    (raw / f".{name}.part-{'a' * 16}").write_bytes(b"half")
    download_dataset("mnist", tmp_path / "data")
    assert sorted(p.name for p in raw.iterdir()) == sorted(files)
    assert (raw / name).read_bytes() == files[name]


def test_the_app_cancels_a_hanging_download_and_frees_its_slot(app_env, serve, monkeypatch, tmp_path):
    from atld.ui import server
    from tests.support import start_app

    serve(silent)
    monkeypatch.setenv("ATLD_DATA_ROOT", str(tmp_path / "data"))
    at = start_app()
    at.button(key="dl_data_mnist").click().run()
    assert not at.exception
    job = server.current_download("mnist")
    assert job is not None and job.running
    at.button(key="dl_cancel_mnist").click().run()
    assert job.wait(2.0) and not job.running and "cancelled" in job.error
    at.run()
    assert not at.exception and any("download cancelled" in e.value for e in at.error)
    assert at.button(key="dl_data_mnist") is not None  # the slot is free: a new download can start
    at.button(key="dl_data_mnist").click().run()
    again = server.current_download("mnist")
    assert again is not job and again.running
    again.cancel()
    assert again.wait(2.0)


# ----------------------------------------------------------------------------- CIFAR and SVHN (`train --download`)

@pytest.fixture
def fake_cifar(monkeypatch, tmp_path):
    """CIFAR-10's archive and checksums replaced by a tiny archive of the same layout, served on
    127.0.0.1; returns (archive bytes, the served behaviour's server)."""
    import io
    import tarfile

    from torchvision.datasets import CIFAR10

    members = {f"cifar-10-batches-py/{n}": f"batch {n}".encode() for n in ("data_batch_1", "test_batch")}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    archive = buf.getvalue()

    def behaviour(conn, path, stop):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(archive) + archive)

    server = RawServer(behaviour)
    monkeypatch.setattr(CIFAR10, "url", f"http://127.0.0.1:{server.port}/cifar-10-python.tar.gz")
    monkeypatch.setattr(CIFAR10, "tgz_md5", hashlib.md5(archive).hexdigest())
    monkeypatch.setattr(CIFAR10, "train_list", [["data_batch_1", hashlib.md5(b"batch data_batch_1").hexdigest()]])
    monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", hashlib.md5(b"batch test_batch").hexdigest()]])
    yield members
    server.close()


@pytest.mark.parametrize("plant", ["none", "archive link", "batch link", "batch folder link"])
def test_cifar_downloads_go_through_the_guarded_fetch(fake_cifar, tmp_path, plant):
    victim = _victim(tmp_path)
    root = tmp_path / "data"
    root.mkdir()
    if plant == "archive link":
        (root / "cifar-10-python.tar.gz").symlink_to(victim)
    elif plant == "batch link":
        (root / "cifar-10-batches-py").mkdir()
        (root / "cifar-10-batches-py" / "data_batch_1").symlink_to(victim)
    elif plant == "batch folder link":
        (root / "cifar-10-batches-py").symlink_to(victim.parent)
    if plant == "none":
        dl.download_torchvision_files("cifar10", root)
        assert (root / "cifar-10-batches-py" / "data_batch_1").read_bytes() == b"batch data_batch_1"
        dl.download_torchvision_files("cifar10", root)  # all there and right: nothing fetched, nothing changed
    else:
        with pytest.raises(DataError) as err:
            dl.download_torchvision_files("cifar10", root)
        assert "\n" not in str(err.value)
        assert "symbolic link" in str(err.value)
    assert victim.read_bytes() == b"precious" and sorted(p.name for p in victim.parent.iterdir()) == ["victim"]
