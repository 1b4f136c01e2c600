"""Checkpoints are data, not code (issue 7, part 1).

Every hostile or malformed checkpoint below is tried twice: through the API (`load_checkpoint`)
and through the CLI (`python -m atld train --resume DIR`, in-process; one case also as a real
subprocess). Each must give a one-line `CheckpointError` (CLI: exit 2, one "error:" line on stderr,
no traceback); no pickle payload may run (it would create a marker file) and the directory must
not lose anything. The number of cases is `len(HOSTILE_CHECKPOINTS)`; docs/security.md lists them.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from atld.checkpoints import CARD, MODEL, TRAIN_STATE, load_checkpoint
from atld.cli import main as cli_main
from atld.data import ImageData, load_dataset
from atld.errors import CheckpointError, DataError
from atld.train import TrainConfig, train

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: these tiny models gain nothing from more, and on a busy 2-core machine
    idle OpenMP threads spin and burn several times the useful CPU time."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ----------------------------------------------------------------------------- hostile payloads

class _Payload:
    """Unpickling this object calls open(marker, "w"): it would create the marker file."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def evil_pickle(marker: Path) -> bytes:
    return pickle.dumps(_Payload(marker))


def evil_torch_zip(path: Path, marker: Path) -> None:
    """A `torch.save` file (zip + data.pkl) whose unpickling would run the payload."""
    torch.save({"state_dict": _Payload(marker)}, path)


def test_payloads_are_live(tmp_path):
    """Honesty check: the payloads really execute when unpickled, so "no marker" means something."""
    marker = tmp_path / "ran-pickle"
    pickle.loads(evil_pickle(marker))
    assert marker.exists()
    marker2 = tmp_path / "ran-zip"
    evil_torch_zip(tmp_path / "evil.pt", marker2)
    with zipfile.ZipFile(tmp_path / "evil.pt") as z:
        pkl = next(n for n in z.namelist() if n.endswith("data.pkl"))
        pickle.loads(z.read(pkl))
    assert marker2.exists()


# ----------------------------------------------------------------------------- a real tiny run

def tiny_digits(n_train: int = 100, n_test: int = 50) -> ImageData:
    d = load_dataset("digits")
    return ImageData(d.spec, d.x_train[:n_train], d.y_train[:n_train], d.x_test[:n_test], d.y_test[:n_test])


@pytest.fixture(scope="module")
def good_run(tmp_path_factory) -> Path:
    """A valid 1-epoch ATLD run (classifier + discriminator + training state)."""
    run_dir = tmp_path_factory.mktemp("good") / "run"
    config = TrainConfig(dataset="digits", method="atld", epochs=1, batch_size=50, eval_limit=0, device="cpu")
    train(config, data=tiny_digits(), run_dir=run_dir, name="good")
    load_checkpoint(run_dir, with_train_state=True)  # the base case loads
    return run_dir


# ----------------------------------------------------------------------------- mutation helpers

def _card(d: Path) -> dict:
    return json.loads((d / CARD).read_text())


def _write_card(d: Path, card) -> None:
    (d / CARD).write_text(json.dumps(card))


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _rehash(d: Path) -> None:
    """Make the card's SHA-256s match the files again (an attacker controls the card too)."""
    card = _card(d)
    card["sha256"] = {n: _sha(d / n) for n in (MODEL, TRAIN_STATE) if (d / n).is_file() and not (d / n).is_symlink()}
    _write_card(d, card)


def _edit_card(**changes):
    def mutate(d: Path, marker: Path) -> None:
        card = _card(d)
        for key, value in changes.items():
            node = card
            *path, last = key.split("__")
            for p in path:
                node = node[p]
            if value is _DELETE:
                del node[last]
            else:
                node[last] = value
        _write_card(d, card)
    return mutate


_DELETE = object()


def _edit_tensors(fn):
    def mutate(d: Path, marker: Path) -> None:
        tensors = load_file(str(d / MODEL))
        save_file(fn(tensors), str(d / MODEL))
        _rehash(d)
    return mutate


def _first_float(t: dict) -> str:
    return next(k for k, v in t.items() if k.startswith("classifier.") and v.is_floating_point() and v.dim() > 1)


def _with(t: dict, key: str, value: torch.Tensor) -> dict:
    return {**t, key: value}


def _replace_file(name: str, data_fn, rehash: bool):
    def mutate(d: Path, marker: Path) -> None:
        data = data_fn(d, marker)
        (d / name).unlink()
        (d / name).write_bytes(data)
        if rehash:
            _rehash(d)
    return mutate


def _only(name: str, data_fn):
    """Empty the directory and leave a single file (as a stranger's download might be)."""
    def mutate(d: Path, marker: Path) -> None:
        for p in d.iterdir():
            p.unlink()
        (d / name).write_bytes(data_fn(d, marker))
    return mutate


def _only_torch_zip(name: str):
    def mutate(d: Path, marker: Path) -> None:
        for p in d.iterdir():
            p.unlink()
        evil_torch_zip(d / name, marker)
    return mutate


def _pickle(d, marker):
    return evil_pickle(marker)


def _safetensors_header(header: dict, data: bytes = b"", declared_len: int | None = None) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw) if declared_len is None else declared_len) + raw + data


def _truncate(name: str, keep: float, rehash: bool):
    def mutate(d: Path, marker: Path) -> None:
        data = (d / name).read_bytes()
        (d / name).write_bytes(data[: int(len(data) * keep)])
        if rehash:
            _rehash(d)
    return mutate


def _flip(name: str, where: str, rehash: bool):
    def mutate(d: Path, marker: Path) -> None:
        data = bytearray((d / name).read_bytes())
        (header_len,) = struct.unpack("<Q", data[:8])
        pos = 8 + header_len // 2 if where == "header" else len(data) - 100
        for i in range(pos, pos + 8):
            data[i] ^= 0xFF
        (d / name).write_bytes(bytes(data))
        if rehash:
            _rehash(d)
    return mutate


def _sparse(name: str, size: int):
    """A file of `size` bytes that costs no disk (sparse): absurd sizes must be refused unread."""
    def mutate(d: Path, marker: Path) -> None:
        with open(d / name, "r+b") as fh:
            fh.truncate(size)
    return mutate


def _symlink_outside(name: str):
    def mutate(d: Path, marker: Path) -> None:
        outside = d.parent / f"outside-{name}"
        shutil.copy(d / name, outside)
        (d / name).unlink()
        (d / name).symlink_to(outside)
    return mutate


def _point_outside(field: str, target: str):
    def mutate(d: Path, marker: Path) -> None:
        shutil.copy(d / MODEL, d.parent / "model.safetensors")  # a valid file really is there
        card = _card(d)
        card["files"][field] = target
        _write_card(d, card)
    return mutate


def _remove(name: str):
    def mutate(d: Path, marker: Path) -> None:
        (d / name).unlink()
    return mutate


def _make_dir(name: str):
    def mutate(d: Path, marker: Path) -> None:
        (d / name).unlink()
        (d / name).mkdir()
    return mutate


def _other_arch_tensors(d: Path, marker: Path) -> None:
    """Valid tensors of a different architecture under the right names' prefix."""
    card = _card(d)
    card["arch"] = card["config"]["arch"] = "preact-resnet18"
    _write_card(d, card)


def _not_a_dir(d: Path, marker: Path) -> None:
    shutil.rmtree(d)
    d.write_bytes(evil_pickle(marker))


def _gone(d: Path, marker: Path) -> None:
    shutil.rmtree(d)


def _pickle_in_new_card(d: Path, marker: Path) -> None:
    """The interrupted-save slot (card.json.new) holds a pickle and card.json is gone."""
    (d / CARD).unlink()
    (d / f"{CARD}.new").write_bytes(evil_pickle(marker))


def _pickle_new_tensors(d: Path, marker: Path) -> None:
    """A pickle waiting in MODEL.new with a card.json.new that vouches for it."""
    (d / f"{MODEL}.new").write_bytes(evil_pickle(marker))
    card = _card(d)
    card["sha256"][MODEL] = _sha(d / f"{MODEL}.new")
    (d / f"{CARD}.new").write_text(json.dumps(card))


HOSTILE_CHECKPOINTS = {
    # --- pickles where a checkpoint is expected
    "pickle model.pt, no card": (_only("model.pt", _pickle), "pickle"),
    "pickle model.pth, no card": (_only("model.pth", _pickle), "pickle"),
    "pickle model.ckpt, no card": (_only("model.ckpt", _pickle), "pickle"),
    "torch.save zip model.pt, no card": (_only_torch_zip("model.pt"), "pickle"),
    "torch.save zip named model.safetensors, no card": (_only_torch_zip(MODEL), "no card.json"),
    "pickle named model.safetensors, hash updated": (_replace_file(MODEL, _pickle, True), "not a readable"),
    "pickle named model.safetensors, stale hash": (_replace_file(MODEL, _pickle, False), "SHA-256"),
    "pickle named train_state.safetensors, hash updated": (_replace_file(TRAIN_STATE, _pickle, True), "not a readable"),
    "pickle as card.json": (_replace_file(CARD, _pickle, False), "not valid JSON"),
    "pickle as card.json.new, no card.json": (_pickle_in_new_card, "no card.json"),
    "checkpoint path is a pickle file": (_not_a_dir, "no checkpoint directory"),
    # --- card.json: not JSON, wrong shape, schema violations
    "card.json truncated JSON": (_replace_file(CARD, lambda d, m: (d / CARD).read_bytes()[:100], False),
                                 "not valid JSON"),
    "card.json binary garbage": (_replace_file(CARD, lambda d, m: bytes(range(256)) * 4, False), "not valid JSON"),
    "card.json is a JSON list": (_replace_file(CARD, lambda d, m: b"[1, 2, 3]", False), "JSON object"),
    "card.json nested 100k deep": (_replace_file(CARD, lambda d, m: b"[" * 100_000 + b"]" * 100_000, False),
                                   "card.json"),
    "card.json over 16 MB": (_sparse(CARD, 17 * 2**20), "limit"),
    "card missing files": (_edit_card(files=_DELETE), "invalid card.json"),
    "card wrong format": (_edit_card(format="pytorch"), "invalid card.json"),
    "card wrong format_version": (_edit_card(format_version=99), "invalid card.json"),
    "card seed NaN": (_edit_card(seed=float("nan")), "invalid card.json"),
    "card epochs_done absurd": (_edit_card(epochs_done=10**12), "invalid card.json"),
    "card metrics not a list": (_edit_card(metrics="x" * 100), "invalid card.json"),
    "card status unknown": (_edit_card(status="pwned"), "invalid card.json"),
    "card sha256 not hex": (_edit_card(sha256={MODEL: "zz" * 32}), "invalid card.json"),
    "card files has extra entry": (_edit_card(files__code="payload.py"), "invalid card.json"),
    # --- card points outside its directory
    "card model path ../": (_point_outside("model", "../model.safetensors"), "invalid card.json"),
    "card model path absolute": (_point_outside("model", "/etc/passwd"), "invalid card.json"),
    "card model path in subdir": (_point_outside("model", "sub/model.safetensors"), "invalid card.json"),
    "card model path is ..": (_point_outside("model", ".."), "invalid card.json"),
    "card train_state path ../": (_point_outside("train_state", "../train_state.safetensors"), "invalid card.json"),
    "model.safetensors symlink outside": (_symlink_outside(MODEL), "refusing it"),
    "train_state.safetensors symlink outside": (_symlink_outside(TRAIN_STATE), "refusing it"),
    "card.json symlink outside": (_symlink_outside(CARD), "symbolic link"),
    # --- card contents that do not describe a buildable model
    "card arch differs from config": (_edit_card(arch="preact-resnet18"), "card says arch"),
    "card method differs from config": (_edit_card(method="natural"), "card says method"),
    "card config unknown arch": (_edit_card(arch="evilnet", config__arch="evilnet"), "unknown architecture"),
    "card config unknown dataset": (_edit_card(dataset="imagenet", config__dataset="imagenet"), "unknown dataset"),
    "card config unknown method": (_edit_card(method="backdoor", config__method="backdoor"), "unknown method"),
    "card config unknown field": (_edit_card(config__exec="import os"), "unknown config field"),
    "card config epochs as string": (_edit_card(config__epochs="3"), "config is invalid"),
    "card config lr huge integer": (_edit_card(config__lr=10**400), "config is invalid"),
    "card config device is a number": (_edit_card(config__device=7), "config is invalid"),
    "card config arch is a list": (_edit_card(arch=["x"], config__arch=["x"]), "card.json"),
    "card config channels_last not bool": (_edit_card(config__channels_last="yes"), "config is invalid"),
    "card config d_widths absurd": (_edit_card(config__d_widths=[16, 10**9]), "config is invalid"),
    "card config is a list": (_edit_card(config=[1, 2]), "invalid card.json"),
    "architecture does not match tensors": (_other_arch_tensors, "do not match the card's architecture"),
    "has_discriminator false, D tensors present": (_edit_card(has_discriminator=False), "discriminator tensors"),
    # --- tensor files: missing, sizes, corruption
    "model.safetensors missing": (_remove(MODEL), "missing"),
    "model.safetensors is a directory": (_make_dir(MODEL), "missing"),
    "card has no hash for the model": (_edit_card(sha256={}), "no SHA-256"),
    "model.safetensors over 4 GB (sparse)": (_sparse(MODEL, 5 * 2**30), "limit"),
    "model.safetensors empty, hash updated": (_replace_file(MODEL, lambda d, m: b"", True), "not a readable"),
    "safetensors header length 2^62": (_replace_file(MODEL, lambda d, m: _safetensors_header({}, declared_len=2**62),
                                                     True), "not a readable"),
    "safetensors header declares 2^80-element tensor": (
        _replace_file(MODEL, lambda d, m: _safetensors_header(
            {"classifier.x": {"dtype": "F32", "shape": [2**40, 2**40], "data_offsets": [0, 2**62]}}, b"\0" * 16),
            True), "not a readable"),
    "safetensors offsets beyond the file": (
        _replace_file(MODEL, lambda d, m: _safetensors_header(
            {"classifier.x": {"dtype": "F32", "shape": [4], "data_offsets": [0, 10**6]}}, b"\0" * 16),
            True), "not a readable"),
    "safetensors header not JSON": (_replace_file(MODEL, lambda d, m: struct.pack("<Q", 8) + b"\x80\x04evil", True),
                                    "not a readable"),
    "model truncated, hash updated": (_truncate(MODEL, 0.5, True), "not a readable"),
    "model truncated, stale hash": (_truncate(MODEL, 0.5, False), "SHA-256"),
    "train_state truncated, hash updated": (_truncate(TRAIN_STATE, 0.7, True), "not a readable"),
    "model bytes flipped in data, stale hash": (_flip(MODEL, "data", False), "SHA-256"),
    "model bytes flipped in header, hash updated": (_flip(MODEL, "header", True), "not a readable"),
    # --- tensors that parse but do not fit
    "tensor shape mismatch": (_edit_tensors(lambda t: _with(t, k := _first_float(t), torch.zeros(3, 3))),
                              "shape mismatch"),
    "tensor missing": (_edit_tensors(lambda t: {k: v for k, v in t.items() if k != _first_float(t)}), "missing"),
    "unexpected extra tensor": (_edit_tensors(lambda t: _with(t, "classifier.backdoor", torch.zeros(1))),
                                "unexpected"),
    "discriminator tensors missing": (_edit_tensors(lambda t: {k: v for k, v in t.items()
                                                               if k.startswith("classifier.")}), "missing"),
    "NaN weights": (_edit_tensors(lambda t: _with(t, k := _first_float(t), torch.full_like(t[k], float("nan")))),
                    "NaN"),
    "infinite weights": (_edit_tensors(lambda t: _with(t, k := _first_float(t), torch.full_like(t[k], float("inf")))),
                         "NaN or infinite"),
    "float64 weights": (_edit_tensors(lambda t: _with(t, k := _first_float(t), t[k].double())), "dtype mismatch"),
    "int32 weights": (_edit_tensors(lambda t: _with(t, k := _first_float(t), t[k].int())), "dtype mismatch"),
    # --- no directory
    "directory does not exist": (_gone, "no checkpoint directory"),
}


def _new_card_moves_outside(d: Path, marker: Path) -> None:
    """card.json.new asks the roll-forward to rename ../victim.safetensors.new over ../victim."""
    (d.parent / "victim.safetensors").write_bytes(b"victim")
    (d.parent / "victim.safetensors.new").write_bytes(evil_pickle(marker))
    card = _card(d)
    card["sha256"] = {"../victim.safetensors": _sha(d.parent / "victim.safetensors.new")}
    (d / f"{CARD}.new").write_text(json.dumps(card))


def _deep_new_card(d: Path, marker: Path) -> None:
    (d / f"{CARD}.new").write_bytes(b"{\"a\":" * 100_000)


# Hostile files in the interrupted-save slots (*.new): the roll-forward must ignore them, so the
# previous checkpoint loads unchanged and nothing outside the directory moves.
HOSTILE_SAVE_SLOTS = {
    "pickle as model.safetensors.new vouched by card.json.new": _pickle_new_tensors,
    "card.json.new renames a file outside the directory": _new_card_moves_outside,
    "card.json.new nested 100k deep": _deep_new_card,
    "card.json.new is a pickle": lambda d, m: (d / f"{CARD}.new").write_bytes(evil_pickle(m)),
}


@pytest.mark.parametrize("case", list(HOSTILE_SAVE_SLOTS))
def test_hostile_save_slot_ignored(good_run, tmp_path, case):
    d = tmp_path / "ckpt"
    shutil.copytree(good_run, d)
    marker = tmp_path / "PAYLOAD-RAN"
    outside_before = sorted(p.name for p in tmp_path.iterdir())
    HOSTILE_SAVE_SLOTS[case](d, marker)
    run = load_checkpoint(d, with_train_state=True)
    assert run.model_hash == _card(good_run)["sha256"][MODEL] == _sha(d / MODEL)
    assert not marker.exists(), "the pickle payload ran"
    assert not list(d.glob("*.new")), "the hostile slot was left behind"
    if case.startswith("card.json.new renames"):
        assert (tmp_path / "victim.safetensors").read_bytes() == b"victim"
    else:
        assert sorted(p.name for p in tmp_path.iterdir()) == outside_before


# Cases whose only hostile file is the training state, which only `train --resume` opens.
TRAIN_STATE_ONLY = {"pickle named train_state.safetensors, hash updated", "train_state.safetensors symlink outside",
                    "train_state truncated, hash updated"}
assert TRAIN_STATE_ONLY <= set(HOSTILE_CHECKPOINTS)


def _snapshot(d: Path) -> dict[str, str]:
    """Names and contents (hashes) of everything in `d`, to show that nothing was lost."""
    if not d.is_dir():
        return {}
    return {p.name: ("dir" if p.is_dir() else f"-> {os.readlink(p)}" if p.is_symlink()
                     else _sha(p) if p.stat().st_size < 2**25 else f"size {p.stat().st_size}")
            for p in sorted(d.iterdir())}


def _prepare(good_run: Path, tmp_path: Path, case: str) -> tuple[Path, Path, str]:
    mutate, expected = HOSTILE_CHECKPOINTS[case]
    d = tmp_path / "ckpt"
    shutil.copytree(good_run, d)
    marker = tmp_path / "PAYLOAD-RAN"
    mutate(d, marker)
    return d, marker, expected


def _kept(before: dict, after: dict, case: str) -> None:
    """Nothing is lost: only the interrupted-save slots (*.new) may be cleaned up."""
    assert {k: v for k, v in before.items() if not k.endswith(".new")} == after, case


@pytest.mark.parametrize("case", list(HOSTILE_CHECKPOINTS))
def test_hostile_checkpoint_refused_by_api(good_run, tmp_path, case):
    d, marker, expected = _prepare(good_run, tmp_path, case)
    before = _snapshot(d)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(d, with_train_state=True)
    message = str(info.value)
    assert message and "\n" not in message, message
    assert expected.lower() in message.lower(), message
    assert not marker.exists(), "the pickle payload ran"
    _kept(before, _snapshot(d), case)


def _cli_commands() -> dict[str, list[str]]:
    """The CLI commands that read a checkpoint, as far as they are built (DIR is replaced)."""
    import importlib.util

    commands = {"train": ["train", "--resume", "DIR", "--epochs", "2", "--quiet", "--device", "cpu"]}
    if importlib.util.find_spec("atld.cli.embed"):
        commands["embed"] = ["embed", "--checkpoint", "DIR", "--limit", "10", "--no-cache", "--out", "OUT"]
    if importlib.util.find_spec("atld.cli.eval"):
        commands["eval"] = ["eval", "--checkpoint", "DIR", "--limit", "10", "--device", "cpu", "--attacks", "natural",
                            "--quiet", "--out", "OUT"]
    return commands


CLI_COMMANDS = _cli_commands()


@pytest.mark.parametrize("command", list(CLI_COMMANDS))
@pytest.mark.parametrize("case", list(HOSTILE_CHECKPOINTS))
def test_hostile_checkpoint_refused_by_cli(good_run, tmp_path, case, command, capsys):
    if command != "train" and case in TRAIN_STATE_ONLY:
        pytest.skip(f"{command} never reads the training state, so this file is never opened")
    d, marker, _ = _prepare(good_run, tmp_path, case)
    before = _snapshot(d)
    argv = [str(d) if a == "DIR" else str(tmp_path / "out.csv") if a == "OUT" else a for a in CLI_COMMANDS[command]]
    code = cli_main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert not marker.exists(), "the pickle payload ran"
    assert not (tmp_path / "out.csv").exists()
    _kept(before, _snapshot(d), case)


def test_hostile_checkpoint_cli_subprocess_no_traceback(good_run, tmp_path):
    """A real process: exit 2, one stderr line, no traceback, payload not run."""
    d, marker, _ = _prepare(good_run, tmp_path, "pickle model.pt, no card")
    out = subprocess.run([sys.executable, "-m", "atld", "train", "--resume", str(d), "--quiet"],
                         cwd=REPO, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 2, out.stderr
    assert out.stderr.count("\n") == 1 and out.stderr.startswith("error: refusing 'model.pt'"), out.stderr
    assert "Traceback" not in out.stderr
    assert not marker.exists()


def test_good_run_still_loads_after_all_copies(good_run):
    """The fixture was copied, never modified: the original loads with every tensor finite."""
    run = load_checkpoint(good_run, with_train_state=True)
    assert run.discriminator is not None and run.card["epochs_done"] == 1
    assert all(torch.isfinite(p).all() for p in run.classifier.parameters())


def test_run_picker_skips_every_hostile_directory(good_run, tmp_path):
    """The app's checkpoint picker lists a runs folder full of hostile directories without
    crashing, without running anything, and offers only the good run."""
    runs_module = pytest.importorskip("atld.ui.runs")
    root = tmp_path / "runs"
    root.mkdir()
    shutil.copytree(good_run, root / "good")
    marker = tmp_path / "PAYLOAD-RAN"
    for i, (mutate, _) in enumerate(HOSTILE_CHECKPOINTS.values()):
        d = root / f"hostile-{i:02d}"
        shutil.copytree(good_run, d)
        mutate(d, marker)
    entries = runs_module.discover_runs([("runs", root)])
    listed = {e.path.name for e in entries}
    assert "good" in listed and not marker.exists()
    for name in listed - {"good"}:  # anything else offered must at least have a valid card
        assert json.loads((root / name / CARD).read_text())["format"] == "atld-run"


# ----------------------------------------------------------------------------- hostile dataset files

def _cifar_pickles(folder: str, names: list[str]):
    def make(root: Path, marker: Path) -> None:
        (root / folder).mkdir(parents=True)
        for name in names:
            (root / folder / name).write_bytes(evil_pickle(marker))
    return make


def _idx_files(folder: str, data_fn):
    def make(root: Path, marker: Path) -> None:
        raw = root / folder / "raw"
        raw.mkdir(parents=True)
        for name, dims in (("train-images-idx3-ubyte", 3), ("train-labels-idx1-ubyte", 1),
                           ("t10k-images-idx3-ubyte", 3), ("t10k-labels-idx1-ubyte", 1)):
            (raw / name).write_bytes(data_fn(dims))
    return make


def _evil_npz(root: Path, marker: Path) -> None:
    import numpy as np

    (root / "cifar10" / "exact").mkdir(parents=True)
    evil = np.array([_Payload(marker)], dtype=object)  # stored as a pickle inside the .npy
    np.savez(root / "cifar10" / "exact" / "cifar10_exact_subsets.npz", test_data_first=evil, test_labels=evil,
             train_labels=evil, **{f"train_data_batch_{k}_data_first": evil for k in range(1, 6)})


def _fake_gz(root: Path, marker: Path) -> None:
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        (raw / f"{name}.gz").write_bytes(evil_pickle(marker))


def _svhn_mats(root: Path, marker: Path) -> None:
    root.mkdir(parents=True)
    for name in ("train_32x32.mat", "test_32x32.mat"):
        (root / name).write_bytes(evil_pickle(marker))


_CIFAR10_FILES = [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch", "batches.meta"]
HOSTILE_DATASETS = {
    "cifar10 batches are pickle payloads": ("cifar10", _cifar_pickles("cifar-10-batches-py", _CIFAR10_FILES)),
    "cifar100 files are pickle payloads": ("cifar100", _cifar_pickles("cifar-100-python", ["train", "test", "meta"])),
    "cifar10-exact npz holds pickled object arrays": ("cifar10-exact", _evil_npz),
    "svhn .mat files are pickles": ("svhn", _svhn_mats),
    "mnist idx files are random bytes": ("mnist", _idx_files("MNIST", lambda dims: os.urandom(64))),
    "mnist idx headers declare absurd sizes": ("mnist", _idx_files("MNIST", lambda dims: struct.pack(
        ">I", 0x0800 + dims) + struct.pack(">" + "I" * dims, *[2**31 - 1] * dims) + b"\0" * 16)),
    "fashion-mnist .gz files are pickles": ("fashion-mnist", _fake_gz),
}


@pytest.mark.parametrize("case", list(HOSTILE_DATASETS))
def test_hostile_dataset_files_refused(tmp_path, case):
    """Dataset files are untrusted: torchvision checks CIFAR/SVHN MD5s before unpickling, the exact
    subsets are read with allow_pickle=False, idx files are parsed as bytes."""
    name, make = HOSTILE_DATASETS[case]
    root = tmp_path / "data"
    marker = tmp_path / "PAYLOAD-RAN"
    make(root, marker)
    with pytest.raises(DataError) as info:
        load_dataset(name, root)
    assert "\n" not in str(info.value) and str(root) in str(info.value)
    assert not marker.exists(), "the pickle payload ran"
