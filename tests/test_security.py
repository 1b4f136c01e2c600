"""Checkpoints are data, not code: every claim a run directory makes is checked before anything is
allocated or trusted, and reading one never writes.

Every hostile or malformed checkpoint below is built by the test (after a mutation the card is
re-hashed, as an attacker would) and tried through the API (`load_checkpoint`) and through every
CLI command that reads a checkpoint (`train --resume`, `eval`, `embed`; in-process, one case also
as a real subprocess). Each must give a one-line `CheckpointError` (CLI: exit 2, one "error:" line
on stderr, no traceback); no pickle payload may run (it would create a marker file), and nothing
in the directory may change (reads never write). The number of cases is
`len(HOSTILE_CHECKPOINTS)`; docs/security.md lists what they cover.
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

from atld.cli import main as cli_main
from atld.config.train import TrainConfig
from atld.data.loaders import load_dataset
from atld.errors import CheckpointError, DataError
from atld.runs.card import CARD, MARKER
from atld.runs.rundir import RunWriter
from atld.runs.store import load_checkpoint
from atld.train.trainer import train

REPO = Path(__file__).resolve().parents[1]


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

@pytest.fixture(scope="module")
def good_run(tmp_path_factory, small_digits) -> Path:
    """A valid 1-epoch ATLD run (classifier + discriminator + training state)."""
    run_dir = tmp_path_factory.mktemp("good") / "run"
    config = TrainConfig(dataset="digits", method="atld", epochs=1, batch_size=50, eval_limit=0, device="cpu")
    train(config, data=small_digits(100, 50), run_dir=run_dir, name="good")
    load_checkpoint(run_dir, with_train_state=True)  # the base case loads
    return run_dir


# ----------------------------------------------------------------------------- mutation helpers

def _card(d: Path) -> dict:
    return json.loads((d / CARD).read_text())


def _write_card(d: Path, card) -> None:
    (d / CARD).write_text(json.dumps(card))


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _file(d: Path, target: str) -> Path:
    """target: "model" or "train_state" (the file the card names) or a plain file name."""
    return d / _card(d)["files"][target] if target in ("model", "train_state") else d / target


def _rehash(d: Path) -> None:
    """Make the card's SHA-256s match the files again (an attacker controls the card too)."""
    card = _card(d)
    names = [n for n in card["files"].values() if n]
    card["sha256"] = {n: _sha(d / n) for n in names if (d / n).is_file() and not (d / n).is_symlink()}
    _write_card(d, card)


_DELETE = object()


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


def _edit_tensors(fn, target: str = "model"):
    def mutate(d: Path, marker: Path) -> None:
        path = _file(d, target)
        tensors = load_file(str(path))
        save_file(fn(tensors), str(path))
        _rehash(d)
    return mutate


def _first_float(t: dict) -> str:
    return next(k for k, v in t.items() if k.startswith("classifier.") and v.is_floating_point() and v.dim() > 1)


def _with(t: dict, key: str, value: torch.Tensor) -> dict:
    return {**t, key: value}


def _without(t: dict, key: str) -> dict:
    return {k: v for k, v in t.items() if k != key}


def _replace_file(target: str, data_fn, rehash: bool):
    def mutate(d: Path, marker: Path) -> None:
        path = _file(d, target)
        data = data_fn(d, marker)
        path.unlink()
        path.write_bytes(data)
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


def _truncate(target: str, keep: float, rehash: bool):
    def mutate(d: Path, marker: Path) -> None:
        path = _file(d, target)
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * keep)])
        if rehash:
            _rehash(d)
    return mutate


def _flip(target: str, where: str, rehash: bool):
    def mutate(d: Path, marker: Path) -> None:
        path = _file(d, target)
        data = bytearray(path.read_bytes())
        (header_len,) = struct.unpack("<Q", data[:8])
        pos = 8 + header_len // 2 if where == "header" else len(data) - 100
        for i in range(pos, pos + 8):
            data[i] ^= 0xFF
        path.write_bytes(bytes(data))
        if rehash:
            _rehash(d)
    return mutate


def _sparse(target: str, size: int):
    """A file of `size` bytes that costs no disk (sparse): absurd sizes must be refused unread."""
    def mutate(d: Path, marker: Path) -> None:
        with open(_file(d, target), "r+b") as fh:
            fh.truncate(size)
    return mutate


def _symlink_outside(target: str):
    def mutate(d: Path, marker: Path) -> None:
        path = _file(d, target)
        outside = d.parent / f"outside-{path.name}"
        shutil.copy(path, outside)
        path.unlink()
        path.symlink_to(outside)
    return mutate


def _fifo(target: str):
    def mutate(d: Path, marker: Path) -> None:
        path = _file(d, target)
        path.unlink()
        os.mkfifo(path)
    return mutate


def _point_outside(field: str, target: str):
    def mutate(d: Path, marker: Path) -> None:
        shutil.copy(_file(d, "model"), d.parent / "model.safetensors")  # a valid file really is there
        card = _card(d)
        card["files"][field] = target
        _write_card(d, card)
    return mutate


def _remove(target: str):
    def mutate(d: Path, marker: Path) -> None:
        _file(d, target).unlink()
    return mutate


def _make_dir(target: str):
    def mutate(d: Path, marker: Path) -> None:
        path = _file(d, target)
        path.unlink()
        path.mkdir()
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
    """An old-style interrupted-save slot (card.json.new) holds a pickle and card.json is gone."""
    (d / CARD).unlink()
    (d / f"{CARD}.new").write_bytes(evil_pickle(marker))


def _card_and_config(**changes):
    """The same change to the card's top level and to its config (as a consistent forgery)."""
    return _edit_card(**changes, **{f"config__{k}": v for k, v in changes.items()})


def _natural_with_d(d: Path, marker: Path) -> None:
    """An ATLD run relabelled "natural" but still claiming (and holding) a discriminator."""
    card = _card(d)
    card["method"] = card["config"]["method"] = "natural"
    _write_card(d, card)


_STATE_KEY = "optim.classifier.9.momentum_buffer"  # a conv weight's buffer: [64, 32, 3, 3]

HOSTILE_CHECKPOINTS = {
    # --- pickles where a checkpoint is expected
    "pickle model.pt, no card": (_only("model.pt", _pickle), "pickle"),
    "pickle model.pth, no card": (_only("model.pth", _pickle), "pickle"),
    "pickle model.ckpt, no card": (_only("model.ckpt", _pickle), "pickle"),
    "torch.save zip model.pt, no card": (_only_torch_zip("model.pt"), "pickle"),
    "torch.save zip named model.safetensors, no card": (_only_torch_zip("model.safetensors"), "no card.json"),
    "pickle as the model file, hash updated": (_replace_file("model", _pickle, True), "not a readable"),
    "pickle as the model file, stale hash": (_replace_file("model", _pickle, False), "SHA-256"),
    "pickle as the train state file, hash updated": (_replace_file("train_state", _pickle, True), "not a readable"),
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
    "card.json with NaN": (_replace_file(CARD, lambda d, m: (d / CARD).read_bytes().replace(b'"seed": 0',
                                                                                             b'"seed": NaN'), False),
                           "not valid JSON"),
    "card.json over 16 MB": (_sparse(CARD, 17 * 2**20), "limit"),
    "card.json is a FIFO": (_fifo(CARD), "not a regular file"),
    "card.json is a directory": (_make_dir(CARD), "is a directory"),
    "card missing files": (_edit_card(files=_DELETE), "invalid card.json"),
    "card wrong format": (_edit_card(format="pytorch"), "invalid card.json"),
    "card wrong format_version": (_edit_card(format_version=99), "invalid card.json"),
    "card seed NaN": (_edit_card(seed=float("nan")), "not valid JSON"),
    "card seed 2^64": (_edit_card(seed=2**64), "invalid card.json"),
    "card epochs_done absurd": (_edit_card(epochs_done=10**12), "invalid card.json"),
    "card metrics not a list": (_edit_card(metrics="x" * 100), "invalid card.json"),
    "card metrics a list of numbers": (_edit_card(metrics=[1.0, 2.0]), "invalid card.json"),
    "card metric is a string": (_edit_card(metrics=[{"loss": "low"}]), "invalid card.json"),
    "card evaluation row without n": (_edit_card(evaluations={"format": "atld-eval", "version": 1, "rows": [
        {"attack": "pgd20", "inference": "atld-", "protocol": "direct", "accuracy": 0.5, "correct": 5,
         "ci_low": 0.2, "ci_high": 0.8, "epsilon": 0.2}]}), "invalid card.json"),
    "card message with terminal escapes": (_edit_card(message="\x1b[2J\x1b[31mowned"), "invalid card.json"),
    "card unknown top-level field": (_edit_card(payload="x"), "invalid card.json"),
    "card status unknown": (_edit_card(status="pwned"), "invalid card.json"),
    "card sha256 not hex": (_edit_card(sha256={"model.safetensors": "zz" * 32}), "invalid card.json"),
    "card files has extra entry": (_edit_card(files__code="payload.py"), "invalid card.json"),
    "card files name one file twice": (lambda d, m: _edit_card(files__train_state=_card(d)["files"]["model"])(d, m),
                                       "same file"),
    # --- card points outside its directory
    "card model path ../": (_point_outside("model", "../model.safetensors"), "invalid card.json"),
    "card model path absolute": (_point_outside("model", "/etc/passwd"), "invalid card.json"),
    "card model path in subdir": (_point_outside("model", "sub/model.safetensors"), "invalid card.json"),
    "card model path is ..": (_point_outside("model", ".."), "invalid card.json"),
    "card train_state path ../": (_point_outside("train_state", "../train_state.safetensors"), "invalid card.json"),
    "model file symlink outside": (_symlink_outside("model"), "refusing it"),
    "train state file symlink outside": (_symlink_outside("train_state"), "refusing it"),
    "card.json symlink outside": (_symlink_outside(CARD), "symbolic link"),
    # --- card contents that do not describe a buildable model, or one too big to build
    "card arch differs from config": (_edit_card(arch="preact-resnet18"), "card says arch"),
    "card method differs from config": (_edit_card(method="natural"), "card says method"),
    "card config unknown arch": (_card_and_config(arch="evilnet"), "unknown architecture"),
    "card config unknown dataset": (_card_and_config(dataset="imagenet"), "unknown dataset"),
    "card config unknown method": (_card_and_config(method="backdoor"), "unknown method"),
    "card config unknown field": (_edit_card(config__exec="import os"), "unknown config field"),
    "card config epochs as string": (_edit_card(config__epochs="3"), "config is invalid"),
    "card config lr huge integer": (_edit_card(config__lr=10**400), "config is invalid"),
    "card config device is a number": (_edit_card(config__device=7), "config is invalid"),
    "card config arch is a list": (_card_and_config(arch=["x"]), "card.json"),
    "card config channels_last not bool": (_edit_card(config__channels_last="yes"), "config is invalid"),
    "card config d_widths absurd": (_edit_card(config__d_widths=[16, 10**9]), "config is invalid"),
    "card config is a list": (_edit_card(config=[1, 2]), "invalid card.json"),
    "card names wrn-994-20 (24 GiB)": (_card_and_config(arch="wrn-994-20"), "parameters, over"),
    "card names a huge discriminator": (_edit_card(config__d_widths=[8192] * 16, config__d_blocks=64),
                                        "parameters, over"),
    "card names a discriminator of 10^6 layers": (_edit_card(config__d_widths=[16] * 10**6), "config is invalid"),
    "card batch size 1 for ATLD": (_edit_card(config__batch_size=1), "batch size must be >= 2"),
    "architecture does not match tensors": (_other_arch_tensors, "do not match the card's architecture"),
    "has_discriminator false, D tensors present": (_edit_card(has_discriminator=False), "discriminator tensors"),
    "natural run claiming a discriminator": (_natural_with_d, "has_discriminator=True but method 'natural'"),
    # --- tensor files: missing, sizes, corruption
    "model file missing": (_remove("model"), "missing"),
    "model file is a directory": (_make_dir("model"), "missing"),
    "model file is a FIFO": (_fifo("model"), "not a regular file"),
    "card has no hash for the model": (_edit_card(sha256={}), "no SHA-256"),
    "model file over 4 GB (sparse)": (_sparse("model", 5 * 2**30), "limit"),
    "model file empty, hash updated": (_replace_file("model", lambda d, m: b"", True), "not a readable"),
    "safetensors header length 2^62": (_replace_file("model", lambda d, m: _safetensors_header({}, declared_len=2**62),
                                                     True), "not a readable"),
    "safetensors header declares 2^80-element tensor": (
        _replace_file("model", lambda d, m: _safetensors_header(
            {"classifier.x": {"dtype": "F32", "shape": [2**40, 2**40], "data_offsets": [0, 2**62]}}, b"\0" * 16),
            True), "not a readable"),
    "safetensors offsets beyond the file": (
        _replace_file("model", lambda d, m: _safetensors_header(
            {"classifier.x": {"dtype": "F32", "shape": [4], "data_offsets": [0, 10**6]}}, b"\0" * 16),
            True), "not a readable"),
    "safetensors overlapping tensors": (
        _replace_file("model", lambda d, m: _safetensors_header(
            {"classifier.a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
             "classifier.b": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 16),
            True), "not a readable"),
    "safetensors header not JSON": (_replace_file("model", lambda d, m: struct.pack("<Q", 8) + b"\x80\x04evil", True),
                                    "not a readable"),
    "model truncated, hash updated": (_truncate("model", 0.5, True), "not a readable"),
    "model truncated, stale hash": (_truncate("model", 0.5, False), "SHA-256"),
    "train_state truncated, hash updated": (_truncate("train_state", 0.7, True), "not a readable"),
    "model bytes flipped in data, stale hash": (_flip("model", "data", False), "SHA-256"),
    "model bytes flipped in header, hash updated": (_flip("model", "header", True), "not a readable"),
    # --- tensors that parse but do not fit
    "tensor shape mismatch": (_edit_tensors(lambda t: _with(t, _first_float(t), torch.zeros(3, 3))),
                              "shape mismatch"),
    "tensor missing": (_edit_tensors(lambda t: _without(t, _first_float(t))), "missing"),
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
    # --- training state that does not fit the optimizer it is meant for (a wrong buffer given
    #     to the fused SGD kernel writes past its end)
    "momentum buffer of 1 element": (_edit_tensors(lambda t: _with(t, _STATE_KEY, torch.zeros(1)), "train_state"),
                                     "shape mismatch"),
    "momentum buffer of 3 elements": (_edit_tensors(lambda t: _with(t, _STATE_KEY, torch.zeros(3)), "train_state"),
                                      "shape mismatch"),
    "momentum buffer float64": (_edit_tensors(lambda t: _with(t, _STATE_KEY, t[_STATE_KEY].double()), "train_state"),
                                "dtype mismatch"),
    "momentum buffer NaN": (_edit_tensors(lambda t: _with(t, _STATE_KEY, torch.full_like(t[_STATE_KEY], float("nan"))),
                                          "train_state"), "NaN"),
    "momentum buffer missing": (_edit_tensors(lambda t: _without(t, _STATE_KEY), "train_state"), "missing"),
    "momentum buffer of a parameter that does not exist": (
        _edit_tensors(lambda t: _with(t, "optim.classifier.999.momentum_buffer", torch.zeros(1)), "train_state"),
        "unexpected"),
    "RNG state missing": (_edit_tensors(lambda t: _without(t, "rng.generator"), "train_state"), "missing"),
    "RNG state of the wrong size": (
        _edit_tensors(lambda t: _with(t, "rng.generator", torch.zeros(7, dtype=torch.uint8)), "train_state"),
        "shape mismatch"),
    "RNG state float": (_edit_tensors(lambda t: _with(t, "rng.generator", t["rng.generator"].float()), "train_state"),
                        "dtype mismatch"),
    "step count disagrees with the card": (
        _edit_tensors(lambda t: _with(t, "epochs_done", torch.tensor([7])), "train_state"), "epoch 7"),
    # --- no directory
    "directory does not exist": (_gone, "no checkpoint directory"),
}

# Cases whose only hostile file is the training state, which only `train --resume` opens.
TRAIN_STATE_ONLY = {"pickle as the train state file, hash updated", "train state file symlink outside",
                    "train_state truncated, hash updated", "momentum buffer of 1 element",
                    "momentum buffer of 3 elements", "momentum buffer float64", "momentum buffer NaN",
                    "momentum buffer missing", "momentum buffer of a parameter that does not exist",
                    "RNG state missing", "RNG state of the wrong size", "RNG state float",
                    "step count disagrees with the card"}
assert TRAIN_STATE_ONLY <= set(HOSTILE_CHECKPOINTS)


def _snapshot(d: Path) -> dict[str, str]:
    """Names and contents (hashes) of everything in `d`, to show that nothing changed."""
    if not d.is_dir():
        return {"(file)": _sha(d)} if d.is_file() else {}
    out = {}
    for p in sorted(d.iterdir()):
        if p.is_symlink():
            out[p.name] = f"-> {os.readlink(p)}"
        elif p.is_dir():
            out[p.name] = "dir"
        elif not p.is_file():
            out[p.name] = "special"
        else:
            out[p.name] = _sha(p) if p.stat().st_size < 2**25 else f"size {p.stat().st_size}"
    return out


def _prepare(good_run: Path, tmp_path: Path, case: str) -> tuple[Path, Path, str]:
    mutate, expected = HOSTILE_CHECKPOINTS[case]
    d = tmp_path / "ckpt"
    shutil.copytree(good_run, d)
    marker = tmp_path / "PAYLOAD-RAN"
    mutate(d, marker)
    return d, marker, expected


@pytest.mark.parametrize("case", list(HOSTILE_CHECKPOINTS))
def test_hostile_checkpoint_refused_by_api(good_run, tmp_path, case):
    d, marker, expected = _prepare(good_run, tmp_path, case)
    before, outside = _snapshot(d), _snapshot(tmp_path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(d, with_train_state=True)
    message = str(info.value)
    assert message and "\n" not in message and "\x1b" not in message, message
    assert expected.lower() in message.lower(), message
    assert not marker.exists(), "the pickle payload ran"
    assert _snapshot(d) == before and _snapshot(tmp_path) == outside, "a read changed files"


CLI_COMMANDS = {
    "train": ["train", "--resume", "DIR", "--epochs", "2", "--quiet", "--device", "cpu"],
    "embed": ["embed", "--checkpoint", "DIR", "--limit", "10", "--no-cache", "--out", "OUT"],
    "eval": ["eval", "--checkpoint", "DIR", "--limit", "10", "--device", "cpu", "--attacks", "natural", "--quiet",
             "--out", "OUT"],
}


# embed and eval never read the training state, so a hostile training-state file is a case for train only
CLI_CASES = [(case, command) for command in CLI_COMMANDS for case in HOSTILE_CHECKPOINTS
             if command == "train" or case not in TRAIN_STATE_ONLY]


@pytest.mark.parametrize("case, command", CLI_CASES)
def test_hostile_checkpoint_refused_by_cli(good_run, tmp_path, case, command, capsys):
    d, marker, _ = _prepare(good_run, tmp_path, case)
    before = _snapshot(d)
    argv = [str(d) if a == "DIR" else str(tmp_path / "out.csv") if a == "OUT" else a for a in CLI_COMMANDS[command]]
    code = cli_main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "\x1b" not in err, err
    assert not marker.exists(), "the pickle payload ran"
    assert not (tmp_path / "out.csv").exists()
    assert _snapshot(d) == before, "the command changed the run"


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


@pytest.mark.parametrize("size", [1, 3])
def test_a_wrong_momentum_buffer_is_one_line_not_a_crash(tmp_path, size):
    """The reproduction of the fused-SGD memory corruption: a buffer of the wrong size in the
    shipped natural run's training state, the card re-hashed, `train --resume` in a real process.
    It used to crash (SIGSEGV) or to train on a corrupted heap; now it is refused before loading."""
    d = tmp_path / "run"
    shutil.copytree(REPO / "checkpoints" / "digits-natural", d)
    _edit_tensors(lambda t: _with(t, _STATE_KEY, torch.zeros(size)), "train_state")(d, tmp_path / "unused")
    out = subprocess.run([sys.executable, "-m", "atld", "train", "--resume", str(d), "--epochs", "31", "--quiet"],
                         cwd=REPO, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 2, (out.returncode, out.stderr[-500:])
    assert out.stderr.count("\n") == 1 and "shape mismatch for optim.classifier.9.momentum_buffer" in out.stderr
    assert _card(d)["epochs_done"] == 30


def test_good_run_still_loads_after_all_copies(good_run):
    """The fixture was copied, never modified: the original loads with every tensor finite."""
    run = load_checkpoint(good_run, with_train_state=True)
    assert run.discriminator is not None and run.card["epochs_done"] == 1
    assert all(torch.isfinite(p).all() for p in run.classifier.parameters())


def test_run_picker_skips_every_hostile_directory(good_run, tmp_path):
    """The app's checkpoint picker lists a runs folder full of hostile directories without
    crashing, hanging or running anything, and offers only runs whose card passes the schema."""
    from atld.ui.runs import discover_runs

    root = tmp_path / "runs"
    root.mkdir()
    shutil.copytree(good_run, root / "good")
    marker = tmp_path / "PAYLOAD-RAN"
    for i, (mutate, _) in enumerate(HOSTILE_CHECKPOINTS.values()):
        d = root / f"hostile-{i:02d}"
        shutil.copytree(good_run, d)
        mutate(d, marker)
    entries = discover_runs([("runs", root)])
    listed = {e.path.name for e in entries}
    assert "good" in listed and not marker.exists()
    for name in listed - {"good"}:  # anything else offered must have a valid card
        assert json.loads((root / name / CARD).read_text())["format"] == "atld-run"


# ----------------------------------------------------------------------------- what readers leave alone

def _fifo_named(name: str):
    return lambda d: os.mkfifo(d / name)


def _dir_named(name: str):
    return lambda d: (d / name).mkdir()


def _orphan_pickle(d: Path) -> None:
    (d / "model-0123456789abcdef.safetensors").write_bytes(evil_pickle(d.parent / "PAYLOAD-RAN"))


def _orphan_link(d: Path) -> None:
    (d.parent / "victim.safetensors").write_bytes(b"victim")
    (d / "train_state-0123456789abcdef.safetensors").symlink_to(d.parent / "victim.safetensors")


def _old_slots(d: Path) -> None:
    """The slots of the previous save protocol: a card.json.new vouching for a pickle."""
    (d / "model.safetensors.new").write_bytes(evil_pickle(d.parent / "PAYLOAD-RAN"))
    card = _card(d)
    card["sha256"] = {"model.safetensors": _sha(d / "model.safetensors.new")}
    (d / f"{CARD}.new").write_text(json.dumps(card))


# Things in a run directory that look like leftovers of a save. Readers never touch any of them
# (no hang, no traceback, no deletion); a writer of ours removes only the regular files it could
# have written itself (our temporary and tensor-file names) and leaves the rest where it is.
SAVE_LEFTOVERS = {
    "a FIFO named like a temporary card": (_fifo_named(f"{CARD}.tmp-0123456789abcdef"), False),
    "a FIFO named card.json.new": (_fifo_named(f"{CARD}.new"), False),
    "a directory named like a temporary card": (_dir_named(f"{CARD}.tmp-0123456789abcdef"), False),
    "a directory named card.json.new": (_dir_named(f"{CARD}.new"), False),
    "an old-style card.json.new vouching for a pickle": (_old_slots, False),
    "a pickle named like an unreferenced model file": (_orphan_pickle, True),
    "a symlink named like an unreferenced train state": (_orphan_link, False),
    "a regular temporary file of ours": (lambda d: (d / "model.safetensors.tmp-0123456789abcdef").write_bytes(b"x"),
                                         True),
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", list(SAVE_LEFTOVERS))
def test_reads_never_write_and_writers_remove_only_their_own_files(good_run, tmp_path, case):
    d = tmp_path / "ckpt"
    shutil.copytree(good_run, d)
    make, removed_by_writer = SAVE_LEFTOVERS[case]
    make(d)
    before, outside = _snapshot(d), _snapshot(tmp_path)
    run = load_checkpoint(d, with_train_state=True)  # the last complete save, whatever lies beside it
    assert run.model_hash == _card(good_run)["sha256"][_card(good_run)["files"]["model"]]
    assert cli_main(["eval", "--checkpoint", str(d), "--limit", "5", "--attacks", "natural", "--quiet",
                     "--device", "cpu", "--out", str(tmp_path / "e.csv"), "--format", "csv"]) == 0
    (tmp_path / "e.csv").unlink()
    assert _snapshot(d) == before and _snapshot(tmp_path) == outside, "a read changed files"
    with RunWriter.claim(d, new=False) as writer:  # opening the run to write it finishes what is ours
        writer.recover()
    after = _snapshot(d)
    changed = {k for k in before if after.get(k) != before[k]} | (set(after) - set(before))
    assert changed == ({k for k in before if k not in _snapshot(good_run)} if removed_by_writer else set()), changed
    if (tmp_path / "victim.safetensors").exists():
        assert (tmp_path / "victim.safetensors").read_bytes() == b"victim"
    assert not (tmp_path / "PAYLOAD-RAN").exists()
    assert (d / MARKER).is_file()


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


@pytest.mark.parametrize("target", [CARD, "model", "train_state"])
def test_an_unreadable_file_is_one_line(good_run, tmp_path, monkeypatch, target):
    """Permission denied (simulated: the tests may run as root, for whom chmod denies nothing)."""
    d = tmp_path / "ckpt"
    shutil.copytree(good_run, d)
    denied = _file(d, target)
    real_open = os.open

    def deny(path, flags, *args, **kwargs):
        if Path(path) == denied:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", deny)
    with pytest.raises(CheckpointError, match="permission denied") as info:
        load_checkpoint(d, with_train_state=True)
    assert "\n" not in str(info.value)


def test_an_unreadable_dataset_file_is_one_line(tmp_path, monkeypatch):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name, dims in (("train-images-idx3-ubyte", (1, 28, 28)), ("train-labels-idx1-ubyte", (1,)),
                       ("t10k-images-idx3-ubyte", (1, 28, 28)), ("t10k-labels-idx1-ubyte", (1,))):
        (raw / name).write_bytes(bytes([0, 0, 8, len(dims)]) + struct.pack(f">{len(dims)}I", *dims) + bytes(
            784 if len(dims) == 3 else 1))
    real_open = os.open

    def deny_labels(path, flags, *args, **kwargs):
        if str(path).endswith("idx1-ubyte"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", deny_labels)
    with pytest.raises(DataError, match="permission denied") as info:
        load_dataset("mnist", tmp_path)
    assert "\n" not in str(info.value)
