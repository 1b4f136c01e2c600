"""Runs on disk: a directory with `model.safetensors` (classifier + discriminator tensors),
`card.json` (what the run is: method, data, architecture, full config, seed, per-epoch metrics,
versions, evaluations) and, while a run can still be resumed, `train_state.safetensors`
(optimizer buffers and the RNG state).

Checkpoints are data, never code: nothing here unpickles (no `torch.load`, no `pickle`).
Loading validates the card against a JSON schema, the file names it points to (plain names in the
run directory only), file sizes, the SHA-256 of every tensor file, and every tensor's name and
shape against a freshly built model.

Saving is atomic: every file is first written in full as `NAME.new` and fsynced; then the tensor
files are renamed into place and finally `card.json` (the commit point). A save interrupted at
any point leaves either the previous checkpoint or the new one loadable: if it stopped between
the renames, loading finds the complete `card.json.new` whose hashes match and finishes it.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from atld.data.registry import DatasetSpec
from atld.errors import ATLDError, CheckpointError, ConfigError
from atld.models import Discriminator, build_classifier

CARD = "card.json"
MODEL = "model.safetensors"
TRAIN_STATE = "train_state.safetensors"
FORMAT = "atld-run"
FORMAT_VERSION = 1
MAX_CARD_BYTES = 16 * 2**20  # a card is metadata; anything bigger is hostile or broken
MAX_TENSOR_FILE_BYTES = 4 * 2**30  # WRN-28-10 + D is about 150 MB
PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin", ".tar")
_PLAIN_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"

CARD_SCHEMA = {
    "type": "object",
    "required": ["format", "format_version", "method", "dataset", "arch", "config", "seed",
                 "epochs_done", "metrics", "files", "has_discriminator", "status"],
    "properties": {
        "format": {"const": FORMAT},
        "format_version": {"const": FORMAT_VERSION},
        "name": {"type": ["string", "null"], "maxLength": 256},
        "method": {"type": "string", "maxLength": 64},
        "dataset": {"type": "string", "maxLength": 64},
        "arch": {"type": "string", "maxLength": 64},
        "config": {"type": "object"},
        "seed": {"type": "integer", "minimum": 0},
        "epochs_planned": {"type": "integer", "minimum": 1},
        "data": {"type": "object"},
        "epochs_done": {"type": "integer", "minimum": 0, "maximum": 100000},
        "metrics": {"type": "array", "maxItems": 100000, "items": {"type": "object"}},
        "status": {"enum": ["running", "finished", "stopped", "diverged"]},
        "has_discriminator": {"type": "boolean"},
        "files": {
            "type": "object",
            "required": ["model"],
            "additionalProperties": False,
            "properties": {
                "model": {"type": "string", "pattern": _PLAIN_NAME},
                "train_state": {"type": ["string", "null"], "pattern": _PLAIN_NAME},
            },
        },
        "sha256": {"type": "object", "additionalProperties": {"type": "string", "pattern": "^[0-9a-f]{64}$"}},
        "evaluations": {"type": "object"},
        "versions": {"type": "object"},
        "git_commit": {"type": ["string", "null"]},
        "created": {"type": "string"},
        "updated": {"type": "string"},
        "command": {"type": ["string", "null"]},
        "message": {"type": ["string", "null"]},
    },
}


@dataclass
class LoadedRun:
    """A checkpoint in memory. Models are on `device`, in eval mode."""
    path: Path
    card: dict
    config: "TrainConfig"  # noqa: F821 (atld.train.config; imported lazily to avoid a cycle)
    classifier: torch.nn.Module
    discriminator: torch.nn.Module | None
    train_state: dict[str, torch.Tensor] | None = None

    @property
    def spec(self) -> DatasetSpec:
        return self.config.spec

    @property
    def name(self) -> str:
        return self.card.get("name") or self.path.name

    @property
    def model_hash(self) -> str:
        return self.card.get("sha256", {}).get(MODEL, "")


# ----------------------------------------------------------------------------- metadata helpers

def library_versions() -> dict[str, str]:
    import numpy
    import safetensors
    import sklearn
    import torchvision

    import atld

    return {"python": platform.python_version(), "torch": torch.__version__,
            "torchvision": torchvision.__version__, "numpy": numpy.__version__,
            "scikit-learn": sklearn.__version__, "safetensors": safetensors.__version__,
            "atld": atld.__version__}


def git_commit() -> str | None:
    """The commit of the code that made the run, if the package lives in a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and re.fullmatch(r"[0-9a-f]{40}", commit) else None


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ----------------------------------------------------------------------------- saving

def _fsync_write(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def model_tensors(classifier: torch.nn.Module, discriminator: torch.nn.Module | None) -> dict[str, torch.Tensor]:
    """State dicts under "classifier." / "discriminator." prefixes, contiguous CPU copies."""
    def clean(module):  # strip wrappers (DDP's "module.", torch.compile's "_orig_mod.")
        module = getattr(module, "module", module)
        return getattr(module, "_orig_mod", module)

    out = {f"classifier.{k}": v for k, v in clean(classifier).state_dict().items()}
    if discriminator is not None:
        out.update({f"discriminator.{k}": v for k, v in clean(discriminator).state_dict().items()})
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in out.items()}


def save_checkpoint(run_dir: str | os.PathLike, card: dict, classifier: torch.nn.Module,
                    discriminator: torch.nn.Module | None = None,
                    train_state: dict[str, torch.Tensor] | None = None) -> Path:
    """Atomically write a run directory (see the module docstring); returns its path.

    `card` is completed with file names, hashes and timestamps; the caller's dict is not changed."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    card = dict(card)
    card.setdefault("format", FORMAT)
    card.setdefault("format_version", FORMAT_VERSION)
    card["has_discriminator"] = discriminator is not None
    card["files"] = {"model": MODEL, "train_state": TRAIN_STATE if train_state is not None else None}
    card.setdefault("created", now_iso())
    card["updated"] = now_iso()

    pending: list[tuple[Path, Path]] = []
    hashes = {}
    for name, tensors in ((MODEL, model_tensors(classifier, discriminator)), (TRAIN_STATE, train_state)):
        if tensors is None:
            continue
        tmp = run_dir / f"{name}.new"
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp),
                  metadata={"format": FORMAT})
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        hashes[name] = sha256_file(tmp)
        pending.append((tmp, run_dir / name))
    card["sha256"] = hashes
    _validate_card(card)
    card_tmp = run_dir / f"{CARD}.new"
    _fsync_write(card_tmp, json.dumps(card, indent=1, allow_nan=False, default=_json_default).encode())
    for tmp, final in pending:
        os.replace(tmp, final)
    os.replace(card_tmp, run_dir / CARD)  # the commit point
    if train_state is None and (run_dir / TRAIN_STATE).exists():
        (run_dir / TRAIN_STATE).unlink()
    _fsync_dir(run_dir)
    return run_dir


def update_card(run_dir: str | os.PathLike, **fields) -> dict:
    """Atomically merge `fields` into an existing card (e.g. evaluations); tensors are untouched."""
    run_dir = Path(run_dir)
    card = read_card(run_dir)
    card.update(fields)
    card["updated"] = now_iso()
    _validate_card(card)
    tmp = run_dir / f"{CARD}.new"
    _fsync_write(tmp, json.dumps(card, indent=1, allow_nan=False, default=_json_default).encode())
    os.replace(tmp, run_dir / CARD)
    return card


def _json_default(obj):
    if isinstance(obj, torch.Tensor) and obj.numel() == 1:
        return obj.item()
    if isinstance(obj, (tuple, set)):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ----------------------------------------------------------------------------- loading

def _validate_card(card: dict) -> None:
    import jsonschema

    try:
        jsonschema.validate(card, CARD_SCHEMA)
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "card"
        raise CheckpointError(f"invalid card.json at {where}: {exc.message[:200]}") from None


def _recover_interrupted_save(run_dir: Path) -> None:
    """Finish or discard a save that stopped between its renames (see the module docstring)."""
    new_card = run_dir / f"{CARD}.new"
    if new_card.exists():
        renames = _renames_to_finish(run_dir, new_card)
        if renames is None:
            new_card.unlink(missing_ok=True)
        else:
            for tmp, final in renames:
                os.replace(tmp, final)
            os.replace(new_card, run_dir / CARD)
    for leftover in run_dir.glob("*.safetensors.new"):
        leftover.unlink(missing_ok=True)


def _renames_to_finish(run_dir: Path, new_card: Path) -> list[tuple[Path, Path]] | None:
    """The renames that complete the save described by `card.json.new`, or None when it cannot be
    completed. A save can stop after some tensor files were renamed and before others, so each
    file the new card vouches for must match its SHA-256 either already in place or as NAME.new
    (a complete, parseable safetensors file); otherwise the previous checkpoint stays."""
    try:
        if new_card.is_symlink() or new_card.stat().st_size > MAX_CARD_BYTES:
            return None
        card = json.loads(new_card.read_bytes())
        _validate_card(card)
        digests = card.get("sha256")
        if not digests:
            return None
        renames = []
        for name, digest in digests.items():
            if not re.fullmatch(_PLAIN_NAME, name):
                return None
            final, tmp = run_dir / name, run_dir / f"{name}.new"
            if final.is_file() and not final.is_symlink() and sha256_file(final) == digest:
                continue
            if tmp.is_file() and not tmp.is_symlink() and sha256_file(tmp) == digest and _parses(tmp):
                renames.append((tmp, final))
                continue
            return None
        return renames
    except (ValueError, OSError, AttributeError, TypeError, RecursionError, CheckpointError):
        return None


def _parses(path: Path) -> bool:
    """True if `path` has a valid safetensors header (reads the header only)."""
    try:
        with safe_open(str(path), framework="pt") as fh:
            fh.keys()
        return True
    except Exception:  # noqa: BLE001 - any failure means "not a safetensors file"
        return False


def read_card(run_dir: str | os.PathLike) -> dict:
    """Read and validate `card.json` of a run directory (no tensors are read)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"no checkpoint directory at {str(run_dir)!r}")
    if os.access(run_dir, os.W_OK):
        _recover_interrupted_save(run_dir)
    card_path = run_dir / CARD
    if not card_path.is_file():
        pickles = [p.name for p in run_dir.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES]
        if pickles:
            raise CheckpointError(f"refusing {pickles[0]!r}: pickle-based files can run code and are never "
                                  f"loaded; a checkpoint is {MODEL} + {CARD}")
        raise CheckpointError(f"{str(run_dir)!r} is not a checkpoint: no {CARD}")
    if card_path.is_symlink():
        raise CheckpointError(f"{CARD} in {str(run_dir)!r} is a symbolic link; refusing it")
    size = card_path.stat().st_size
    if size > MAX_CARD_BYTES:
        raise CheckpointError(f"{CARD} is {size} bytes, over the {MAX_CARD_BYTES}-byte limit; refusing it")
    try:
        card = json.loads(card_path.read_bytes())
    except RecursionError:
        raise CheckpointError(f"{CARD} in {str(run_dir)!r} is nested too deeply; refusing it") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{CARD} in {str(run_dir)!r} is not valid JSON ({str(exc)[:120]})") from None
    if not isinstance(card, dict):
        raise CheckpointError(f"{CARD} must be a JSON object")
    _validate_card(card)
    return card


def _checked_file(run_dir: Path, name: str, card: dict) -> Path:
    path = run_dir / name
    if not re.fullmatch(_PLAIN_NAME, name) or path.resolve().parent != run_dir.resolve():
        raise CheckpointError(f"card points outside its directory ({name!r}); refusing it")
    if path.is_symlink():
        raise CheckpointError(f"{name} is a symbolic link; refusing it")
    if not path.is_file():
        raise CheckpointError(f"{name} is missing from {str(run_dir)!r}")
    size = path.stat().st_size
    if size > MAX_TENSOR_FILE_BYTES:
        raise CheckpointError(f"{name} is {size} bytes, over the {MAX_TENSOR_FILE_BYTES}-byte limit")
    expected = card.get("sha256", {}).get(name)
    if expected is None:
        raise CheckpointError(f"card has no SHA-256 for {name}; refusing an unverifiable file")
    if sha256_file(path) != expected:
        raise CheckpointError(f"{name} does not match its SHA-256 in the card (truncated, corrupt or replaced)")
    return path


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path.name} is not a readable safetensors file ({str(exc)[:120]})") from None


def _load_into(module: torch.nn.Module, tensors: dict[str, torch.Tensor], prefix: str) -> None:
    expected = module.state_dict()
    given = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    if missing or unexpected:
        what = f"missing {prefix}{missing[0]}" if missing else f"unexpected {prefix}{unexpected[0]}"
        raise CheckpointError(f"tensors do not match the card's architecture ({what}; "
                              f"{len(missing)} missing, {len(unexpected)} unexpected)")
    for key, ref in expected.items():
        got = given[key]
        if tuple(got.shape) != tuple(ref.shape):
            raise CheckpointError(f"shape mismatch for {prefix}{key}: file has {tuple(got.shape)}, "
                                  f"the card's architecture needs {tuple(ref.shape)}")
        if got.dtype != ref.dtype:
            raise CheckpointError(f"dtype mismatch for {prefix}{key}: {got.dtype} vs {ref.dtype}")
        if got.is_floating_point() and not bool(torch.isfinite(got).all()):
            raise CheckpointError(f"{prefix}{key} contains NaN or infinite values")
    module.load_state_dict(given, strict=True)


def load_checkpoint(run_dir: str | os.PathLike, device: str | torch.device = "cpu",
                    with_train_state: bool = False) -> LoadedRun:
    """Load and validate a run directory; models come back on `device` in eval mode.

    Raises `CheckpointError` with a one-line reason for anything missing, corrupt, mismatched or
    hostile. Never unpickles."""
    from atld.train.config import TrainConfig

    run_dir = Path(run_dir)
    card = read_card(run_dir)
    try:
        config = TrainConfig.from_dict(card["config"])
    except ConfigError as exc:
        raise CheckpointError(f"card's config is invalid: {exc}") from None
    for key in ("method", "dataset"):
        if card[key] != getattr(config, key):
            raise CheckpointError(f"card says {key}={card[key]!r} but its config says {getattr(config, key)!r}")
    if card["arch"] != config.resolved_arch:
        raise CheckpointError(f"card says arch={card['arch']!r} but its config says {config.resolved_arch!r}")
    tensors = _read_tensors(_checked_file(run_dir, card["files"]["model"], card))
    try:
        classifier = build_classifier(config.resolved_arch, config.spec)
    except ATLDError as exc:
        raise CheckpointError(f"card's architecture is invalid: {exc}") from None
    _load_into(classifier, tensors, "classifier.")
    discriminator = None
    if card["has_discriminator"]:
        discriminator = Discriminator(config.spec.num_classes, config.discriminator_spec())
        _load_into(discriminator, tensors, "discriminator.")
    elif any(k.startswith("discriminator.") for k in tensors):
        raise CheckpointError("file holds discriminator tensors but the card says it has none")
    train_state = None
    if with_train_state:
        name = card["files"].get("train_state")
        if not name:
            raise CheckpointError(f"{str(run_dir)!r} holds no training state; it cannot be resumed")
        train_state = _read_tensors(_checked_file(run_dir, name, card))
    device = torch.device(device)
    classifier.to(device).eval()
    if discriminator is not None:
        discriminator.to(device).eval()
    return LoadedRun(run_dir, card, config, classifier, discriminator, train_state)


# ----------------------------------------------------------------------------- run names

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def safe_run_name(name: str) -> str:
    """Check a user-chosen run name: letters, digits, '.', '_', '-' (no separators, no '..',
    not absolute, at most 64 characters). Returns it unchanged or raises ConfigError."""
    if not isinstance(name, str) or not _SAFE_NAME.fullmatch(name) or ".." in name:
        raise ConfigError(f"bad run name {name!r}: use 1-64 letters, digits, '.', '_' or '-', "
                          "starting with a letter or digit, no '..'")
    return name


def list_runs(root: str | os.PathLike) -> list[Path]:
    """Run directories (those with a readable card) directly under `root`, sorted by name."""
    root = Path(root)
    if not root.is_dir():
        return []
    out = []
    for p in sorted(root.iterdir()):
        if p.is_dir() and not p.is_symlink() and (p / CARD).is_file():
            out.append(p)
    return out
