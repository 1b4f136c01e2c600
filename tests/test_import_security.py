"""The import door (`atld.runs.importer`) against hostile and broken weights files: every file is
refused in one line, nothing it carries runs, nothing is allocated for a claim before it is
checked, and nothing is written. Accepted files are in test_import.py."""

from __future__ import annotations

import io
import json
import os
import pickle
import pickletools
import struct
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import save as save_safetensors

from atld.cli import main
from atld.data.registry import get_spec
from atld.errors import ATLDError
from atld.models.registry import build_classifier
from atld.runs.importer import ALLOWED_GLOBALS, import_weights, pickle_globals

ARCH, DATASET = "rb-wrn-10-1", "cifar10"
MARKER = "payload-ran"


class FilePayload:
    """Unpickling it creates a file (builtins.open): the proof a payload ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


class ShellPayload:
    """Unpickling it runs a shell command (os.system) that creates a file."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


def _state(**changes) -> dict:
    torch.manual_seed(0)
    state = dict(build_classifier(ARCH, get_spec(DATASET)).state_dict())
    state.update(changes)
    return {k: v for k, v in state.items() if v is not None}


def _torch_bytes(obj, **kwargs) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf, **kwargs)
    return buf.getvalue()


def _safetensors_with_header(header: dict, data: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


def _huge_declared_tensor(_: Path) -> bytes:
    """A valid-looking safetensors file whose first tensor claims 2^40 float32 values (4 TiB)."""
    header = {"conv1.weight": {"dtype": "F32", "shape": [2**20, 2**20], "data_offsets": [0, 4 * 2**40]}}
    return _safetensors_with_header(header, b"\0" * 64)


def _huge_header_length(_: Path) -> bytes:
    return struct.pack("<Q", 2**40) + b"{" + b" " * 100


def _rezip(data: bytes, compress: bool = False, drop_pickle: bool = False) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            if drop_pickle and info.filename.endswith("data.pkl"):
                continue
            dst.writestr(info.filename, src.read(info.filename),
                         compress_type=zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED)
    return out.getvalue()


def _duplicate_member(d: Path) -> bytes:
    """An archive naming its pickle twice: a benign one and a payload. Readers differ on which they
    take (Python's zipfile the last, others the first), so the scan could check one and torch load
    the other."""
    data = _torch_bytes(_state())
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info.filename))
        with warnings.catch_warnings():  # zipfile warns about the duplicate we make on purpose
            warnings.simplefilter("ignore", UserWarning)
            dst.writestr(next(n for n in src.namelist() if n.endswith("/data.pkl")),
                         pickle.dumps(FilePayload(d / MARKER), protocol=2))
    return out.getvalue()


def _zip_bomb(_: Path) -> bytes:
    """A torch.save-shaped archive whose tensor member is deflated: 64 MiB of zeros in ~64 KiB."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        dst.writestr("archive/data.pkl", pickle.dumps({}, protocol=2))
        dst.writestr("archive/data/0", b"\0" * 64 * 2**20, compress_type=zipfile.ZIP_DEFLATED)
    return out.getvalue()


def _storage_size_lie(_: Path) -> bytes:
    """A torch.save archive whose pickle says its first storage holds 2^40 values (the file has a few
    hundred): the size the pickle claims against the bytes the archive holds."""
    data = _torch_bytes(_state())
    with zipfile.ZipFile(io.BytesIO(data)) as src:
        name = next(n for n in src.namelist() if n.endswith("/data.pkl"))
        pkl = src.read(name)
        members = {info.filename: src.read(info.filename) for info in src.infolist()}
    ops = list(pickletools.genops(pkl))
    for i, (op, _, pos) in enumerate(ops):  # the storage's element count follows its location, "cpu"
        if op.name.startswith("BININT") and any(a == "cpu" for _, a, _ in ops[max(0, i - 3):i]):
            width = {"BININT1": 1, "BININT2": 2, "BININT": 4}[op.name]
            pkl = pkl[:pos] + b"\x8a\x06" + (2**40).to_bytes(6, "little") + pkl[pos + 1 + width:]
            break
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        for member, content in members.items():
            dst.writestr(member, pkl if member == name else content)
    return out.getvalue()


def _truncated(data: bytes, keep: float) -> bytes:
    return data[:int(len(data) * keep)]


# name -> (the file's bytes, given the folder a payload would write its marker in; a fragment of the one line)
HOSTILE_IMPORTS = {
    "plain pickle with a __reduce__ payload (open)": (
        lambda d: pickle.dumps(FilePayload(d / MARKER)), "plain pickle"),
    "plain pickle with a __reduce__ payload (os.system)": (
        lambda d: pickle.dumps(ShellPayload(d / MARKER)), "plain pickle"),
    "protocol-0 pickle with a payload": (
        lambda d: pickle.dumps(ShellPayload(d / MARKER), protocol=0), "neither"),
    "torch.save archive with a payload beside the weights": (
        lambda d: _torch_bytes({"state_dict": _state(), "extra": FilePayload(d / MARKER)}), "needs io.open"),
    "torch.save archive with an os.system payload": (
        lambda d: _torch_bytes({"state_dict": _state(), "extra": ShellPayload(d / MARKER)}), "needs posix.system"),
    "torch.save archive, protocol 4 (STACK_GLOBAL), with a payload": (
        lambda d: _torch_bytes({"m": ShellPayload(d / MARKER)}, pickle_protocol=4), "posix.system"),
    "legacy (pre-1.6) torch.save format": (
        lambda d: _torch_bytes(_state(), _use_new_zipfile_serialization=False), "plain pickle"),
    "a whole pickled model object": (
        lambda d: _torch_bytes(build_classifier(ARCH, get_spec(DATASET))), "needs atld.models"),
    "truncated torch.save archive": (lambda d: _truncated(_torch_bytes(_state()), 0.6), "truncated"),
    "torch.save archive cut after its first bytes": (lambda d: _torch_bytes(_state())[:64], "truncated"),
    "truncated safetensors file": (lambda d: _truncated(save_safetensors(_state()), 0.7), "the header accounts for"),
    "safetensors file one byte short": (lambda d: save_safetensors(_state())[:-1], "the file has"),
    "safetensors file with bytes appended": (lambda d: save_safetensors(_state()) + b"\0" * 8, "the file has"),
    "a huge declared tensor": (_huge_declared_tensor, "the header accounts for 4398046511"),
    "a huge declared header": (_huge_header_length, "neither"),
    "a huge storage declared in a torch.save pickle": (_storage_size_lie, "does not match expected size"),
    "a huge tensor declared as a view (torch.save, stride 0)": (
        lambda d: _torch_bytes(_state(**{"fc.weight": torch.zeros(1).expand(2**20, 2**20)})),
        "shape mismatch for fc.weight: weights.pt has (1048576, 1048576)"),
    "two pickles of one name in the archive": (lambda d: _duplicate_member(d), "twice"),
    "a compressed member (zip bomb)": (_zip_bomb, "compressed"),
    "a zip that is no torch.save archive": (lambda d: _rezip(_torch_bytes(_state()), drop_pickle=True), "data.pkl"),
    "wrong shapes (another width)": (
        lambda d: _torch_bytes(_state(**{"fc.weight": torch.zeros(10, 128)})),
        "shape mismatch for fc.weight: weights.pt has (10, 128), rb-wrn-10-1 needs (10, 64)"),
    "wrong shapes (grey input channels)": (
        lambda d: _torch_bytes(_state(**{"conv1.weight": torch.zeros(16, 1, 3, 3)})), "shape mismatch for conv1"),
    "an extra key": (lambda d: _torch_bytes(_state(**{"fc2.weight": torch.zeros(3, 3)})),
                     "unexpected 'fc2.weight' of shape (3, 3); 0 missing, 1 unexpected"),
    "a missing key": (lambda d: _torch_bytes(_state(**{"fc.bias": None})),
                      "missing fc.bias of shape (10,); 1 missing, 0 unexpected"),
    "another architecture's file": (
        lambda d: _torch_bytes(build_classifier("rb-resnet18", get_spec(DATASET)).state_dict()), "no name fits"),
    "NaN weights (torch.save)": (
        lambda d: _torch_bytes(_state(**{"conv1.weight": torch.full((16, 3, 3, 3), float("nan"))})), "NaN"),
    "infinite weights (safetensors)": (
        lambda d: save_safetensors(_state(**{"fc.bias": torch.full((10,), float("inf"))})), "NaN or infinite"),
    "integer weights": (lambda d: _torch_bytes(_state(**{"fc.bias": torch.zeros(10, dtype=torch.int64)})),
                        "dtype of fc.bias"),
    "a value that is not a tensor": (lambda d: _torch_bytes({**_state(), "fc.bias": [0.0] * 10}), "not a tensor"),
    "a dict without weights": (lambda d: _torch_bytes({"epoch": 3, "acc": 0.9}), "without weights"),
    "a list instead of a state dict": (lambda d: _torch_bytes([torch.zeros(3)]), "not a state dict"),
    "an empty file": (lambda d: b"", "neither"),
    "random bytes": (lambda d: os.urandom(4096), "neither"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_IMPORTS))
def test_hostile_weights_are_refused_in_one_line_and_nothing_runs_or_is_written(tmp_path, case):
    make, fragment = HOSTILE_IMPORTS[case]
    payload_dir = tmp_path / "payload"
    payload_dir.mkdir()
    path = tmp_path / "weights.pt"
    path.write_bytes(make(payload_dir))
    runs = tmp_path / "runs"
    with pytest.raises(ATLDError) as err:
        import_weights(path, ARCH, DATASET, runs_root=runs, check_images=0)
    line = str(err.value)
    assert fragment in line and "\n" not in line and len(line) < 600
    assert not (payload_dir / MARKER).exists()  # the payload never ran
    assert not runs.exists()  # nothing written
    with pytest.raises(ATLDError):  # the app's path: the same bytes, uploaded
        import_weights(path.read_bytes(), ARCH, DATASET, runs_root=runs, source_name="upload.pt", check_images=0)
    assert not (payload_dir / MARKER).exists() and not runs.exists()


@pytest.mark.parametrize("payload", [FilePayload, ShellPayload])
def test_the_payloads_are_live(tmp_path, payload):
    """Unpickled by plain pickle, each payload does create its file: so "no marker" above means it
    did not run, not that it could not."""
    pickle.loads(pickle.dumps(payload(tmp_path / MARKER)))
    assert (tmp_path / MARKER).exists()


def test_torch_weights_only_would_refuse_the_payload_too(tmp_path):
    """The second wall: even a file that slipped past the opcode scan meets torch.load(weights_only=True)."""
    data = _torch_bytes({"extra": FilePayload(tmp_path / MARKER)})
    with pytest.raises(pickle.UnpicklingError):
        torch.load(io.BytesIO(data), weights_only=True)
    assert not (tmp_path / MARKER).exists()
    found = pickle_globals(_first_pickle(data), "x")
    assert ("io", "open") in found and ("io", "open") not in ALLOWED_GLOBALS


def _first_pickle(data: bytes) -> bytes:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return archive.read(next(n for n in archive.namelist() if n.endswith("/data.pkl")))


def test_files_that_are_not_regular_or_too_big_are_refused_before_reading(tmp_path):
    runs = tmp_path / "runs"
    sparse = tmp_path / "sparse.pt"
    with open(sparse, "wb") as f:
        f.truncate(5 * 2**30)  # 5 GiB, no blocks on disk
    fifo = tmp_path / "fifo.pt"
    os.mkfifo(fifo)  # reading it would block forever
    link = tmp_path / "link.pt"
    link.symlink_to(sparse)
    for path in (sparse, fifo, link, tmp_path / "absent.pt", tmp_path):
        with pytest.raises(ATLDError) as err:
            import_weights(path, ARCH, DATASET, runs_root=runs, check_images=0)
        assert "\n" not in str(err.value)
    with pytest.raises(ATLDError, match="more than the"):
        import_weights(b"\0" * (70 * 2**20), ARCH, DATASET, runs_root=runs, source_name="big.pt", check_images=0)
    assert not runs.exists()


@pytest.mark.parametrize("kwargs,fragment", [
    ({"arch": "resnet-9000"}, "unknown architecture"),
    ({"arch": "rb-wrn-94-20"}, "parameters, over the"),
    ({"dataset": "imagenet"}, "dataset"),
    ({"name": "../escape"}, "bad run name"),
    ({"name": "/abs"}, "bad run name"),
    ({"normalization": "0.5/0.5"}, "normalization needs 3"),
    ({"check_images": -1}, "check images"),
])
def test_bad_requests_are_one_line_before_the_file_is_read(tmp_path, kwargs, fragment):
    path = tmp_path / "w.pt"
    path.write_bytes(pickle.dumps(FilePayload(tmp_path / MARKER)))
    args = {"arch": ARCH, "dataset": DATASET, **kwargs}
    with pytest.raises(ATLDError, match=fragment):
        import_weights(path, args.pop("arch"), args.pop("dataset"), runs_root=tmp_path / "runs", **args)
    assert not (tmp_path / MARKER).exists() and not (tmp_path / "runs").exists()


def test_cli_refuses_a_payload_in_one_line_in_a_real_process(tmp_path):
    path = tmp_path / "robust_model.pth"
    path.write_bytes(_torch_bytes({"state_dict": _state(), "meta": ShellPayload(tmp_path / MARKER)}))
    proc = subprocess.run([sys.executable, "-m", "atld", "import", str(path), "--arch", ARCH, "--dataset", DATASET,
                           "--runs-dir", str(tmp_path / "runs")], capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("error: refusing robust_model.pth: it needs posix.system")
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert not (tmp_path / MARKER).exists() and not (tmp_path / "runs").exists()


def test_cli_refusals_exit_2(tmp_path, capsys):
    path = tmp_path / "w.pt"
    path.write_bytes(pickle.dumps(FilePayload(tmp_path / MARKER)))
    assert main(["import", str(path), "--arch", ARCH, "--dataset", DATASET, "--runs-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: refusing w.pt: it is a plain pickle") and not (tmp_path / MARKER).exists()
