"""The run card and the run directory's format, in one place (torch-free).

A run directory holds:
- `card.json`: what the run is (method, data, architecture, full config, seed, per-epoch
  metrics, versions, evaluations, status) and the names and SHA-256 of its tensor files. It is
  the commit point: a save is complete once the new card has been renamed into place.
- `model-<sha>.safetensors`: classifier tensors under "classifier.", discriminator tensors under
  "discriminator."; `train_state-<sha>.safetensors` while the run can be resumed (optimizer
  buffers, the RNG state, epochs done). <sha> is the first 16 hex digits of the file's SHA-256,
  so every save writes new files and never overwrites the ones the current card names. (Older
  runs, the shipped ones among them, use `model.safetensors` and `train_state.safetensors`; the
  card names its files, so both load.)
- `.atld-run`: the marker that says the directory was made by this lab, and the file writers
  lock (`atld.runs.rundir`).

Checkpoints are data, never code: nothing here unpickles. `read_card` only reads: it never
renames, deletes or finishes anything, whatever it finds, and a reader always sees the last
complete save. Every claim the card makes is checked by `CARD_SCHEMA` (types, closed
vocabularies, bounded sizes, no control characters in text); the tensors are checked against
the architecture the card describes in `atld.runs.store`.
"""

from __future__ import annotations

import functools
import json
import os
import re
import stat
import struct
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from atld.config.settings import settings
from atld.vocab import InferenceMode, Protocol, RunStatus
from atld.errors import CheckpointError, ConfigError
from atld.fileio import atomic_write, open_regular, printable, read_regular

CARD = "card.json"
MARKER = ".atld-run"
FORMAT = "atld-run"
FORMAT_VERSION = 1
EVAL_FORMAT = "atld-eval"
EVAL_VERSION = 1
MAX_CARD_BYTES = 16 * 2**20  # a card is metadata; anything bigger is hostile or broken
MAX_TENSOR_FILE_BYTES = 4 * 2**30  # WRN-28-10 + D is about 150 MB
MAX_HEADER_BYTES = 8 * 2**20  # a safetensors header (names, shapes, offsets) of any model here is far smaller
PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin", ".tar")
PLAIN_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"  # a file name in the run directory: no '/', not '..'
TENSOR_FILE = re.compile(r"^(model|train_state)-[0-9a-f]{16}\.safetensors$")  # the names saves write

_NO_CONTROL = "^[^\\x00-\\x1f\\x7f-\\x9f]*$"


def _text(max_length: int, nullable: bool = False) -> dict:
    return {"type": ["string", "null"] if nullable else "string", "maxLength": max_length, "pattern": _NO_CONTROL}


def _number(low: float | None = None, high: float | None = None) -> dict:
    out: dict = {"type": "number"}
    if low is not None:
        out["minimum"] = low
    if high is not None:
        out["maximum"] = high
    return out


EVAL_ROW_SCHEMA = {
    "type": "object",
    "required": ["attack", "inference", "protocol", "accuracy", "correct", "n", "ci_low", "ci_high", "epsilon"],
    "additionalProperties": False,
    "properties": {
        "attack": _text(64), "inference": {"enum": [m.value for m in InferenceMode]},
        "protocol": {"enum": [p.value for p in Protocol]},
        "accuracy": _number(0, 1), "correct": {"type": "integer", "minimum": 0},
        "n": {"type": "integer", "minimum": 1, "maximum": 10**8},
        "ci_low": _number(0, 1), "ci_high": _number(0, 1), "epsilon": _number(0, 1), "seconds": _number(0),
        "note": _text(1000), "seed": {"type": ["integer", "null"]}, "date": _text(40, nullable=True),
        "model_hash": {"type": ["string", "null"], "pattern": "^([0-9a-f]{64})?$"},
    },
}

D_CHECK_FORMAT = "atld-d-check"
D_CHECK_VERSION = 1
_NUMBERS = {"type": "object", "maxProperties": 20, "propertyNames": {"pattern": "^[a-z_0-9]{1,40}$"},
            "additionalProperties": {"type": ["number", "null"]}}
D_CHECK_SCHEMA = {  # D's check as a card stores it (atld.evaluate.report.discriminator_card)
    "type": "object", "required": ["format", "version", "n", "auc", "sentences"], "additionalProperties": False,
    "properties": {
        "format": {"const": D_CHECK_FORMAT}, "version": {"const": D_CHECK_VERSION},
        "updated": _text(40, nullable=True), "seed": {"type": ["integer", "null"]},
        "model_hash": {"type": ["string", "null"], "pattern": "^([0-9a-f]{64})?$"},
        "n": {"type": "integer", "minimum": 1, "maximum": 10**8}, "epsilon": _number(0, 1),
        "kind": {"enum": ["images", "own-images", "batches", "neither", None]},
        "auc": _NUMBERS, "perturbation": _NUMBERS,
        "steps": {"type": "object", "maxProperties": 4, "propertyNames": {"pattern": "^[a-z_0-9-]{1,40}$"},
                  "additionalProperties": _NUMBERS},
        "sentences": {"type": "array", "maxItems": 20, "items": _text(4000)},
        "levels": {"type": "array", "maxItems": 20, "items": {"enum": ["info", "warning"]}},
    },
}

CARD_SCHEMA = {
    "type": "object",
    "required": ["format", "format_version", "method", "dataset", "arch", "config", "seed",
                 "epochs_done", "metrics", "files", "has_discriminator", "status"],
    "additionalProperties": False,
    "properties": {
        "format": {"const": FORMAT},
        "format_version": {"const": FORMAT_VERSION},
        "name": _text(256, nullable=True),
        "method": _text(64),
        "dataset": _text(64),
        "arch": _text(64),
        "config": {"type": "object", "maxProperties": 200},  # checked field by field by TrainConfig
        "seed": {"type": "integer", "minimum": 0, "maximum": 2**32 - 1},
        "epochs_planned": {"type": "integer", "minimum": 1, "maximum": 100000},
        "data": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}, "maxProperties": 10},
        "epochs_done": {"type": "integer", "minimum": 0, "maximum": 100000},
        "metrics": {"type": "array", "maxItems": 100000,
                    "items": {"type": "object", "maxProperties": 100, "additionalProperties": {"type": "number"}}},
        "status": {"enum": [s.value for s in RunStatus]},
        "has_discriminator": {"type": "boolean"},
        "files": {
            "type": "object",
            "required": ["model"],
            "additionalProperties": False,
            "properties": {
                "model": {"type": "string", "pattern": PLAIN_NAME},
                "train_state": {"type": ["string", "null"], "pattern": PLAIN_NAME},
            },
        },
        "sha256": {"type": "object", "maxProperties": 4,
                   "propertyNames": {"pattern": PLAIN_NAME},
                   "additionalProperties": {"type": "string", "pattern": "^[0-9a-f]{64}$"}},
        "evaluations": {
            "type": "object", "required": ["format", "version", "rows"], "additionalProperties": False,
            "properties": {"format": {"const": EVAL_FORMAT}, "version": {"const": EVAL_VERSION},
                           "updated": _text(40, nullable=True),
                           "rows": {"type": "array", "maxItems": 10000, "items": EVAL_ROW_SCHEMA}},
        },
        "discriminator_check": D_CHECK_SCHEMA,
        "versions": {"type": "object", "maxProperties": 50, "additionalProperties": _text(100)},
        "git_commit": {"type": ["string", "null"], "pattern": "^[0-9a-f]{40}$"},
        "created": _text(40),
        "updated": _text(40),
        "command": _text(4000, nullable=True),
        "message": _text(2000, nullable=True),
        "collapse": _text(2000, nullable=True),  # status "collapsed": what happened and what to try, one line
        "note": _text(2000, nullable=True),
        "source": None,  # an imported run's provenance: IMPORT_SOURCE_SCHEMA below
    },
}

# ----------------------------------------------------------------------------- imported runs
# A run made by `python -m atld import` from a stranger's weights file (`atld.runs.importer`): its
# card says method "imported", has no discriminator and no training epochs, and carries `source`:
# where the weights came from and the input normalization the model applies (part of the run, so
# attacks stay in [0, 1] pixel units). Its config is TrainConfig's with method "natural": the lab's
# plain classifier, which is how it is loaded and attacked.
IMPORTED_METHOD = "imported"
IMPORTED_CONFIG_METHOD = "natural"
class ImportFormat(StrEnum):
    """The weights files `python -m atld import` reads."""
    SAFETENSORS = "safetensors"
    TORCH_ZIP = "torch-zip"  # a torch.save archive (PyTorch >= 1.6), read with torch.load(weights_only=True)


IMPORT_SOURCE_SCHEMA = {
    "type": "object",
    "required": ["file", "sha256", "size", "format", "architecture", "normalization", "command"],
    "additionalProperties": False,
    "properties": {
        "file": _text(256),  # the file's name as given (no path)
        "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},  # of the file as imported
        "size": {"type": "integer", "minimum": 0},
        "format": {"enum": [f.value for f in ImportFormat]},
        "wrapper": _text(200, nullable=True),  # how the weights were found in it (e.g. "state_dict", "module.")
        "architecture": _text(64),
        "normalization": {
            "type": "object", "required": ["name", "mean", "std"], "additionalProperties": False,
            "properties": {"name": _text(64),
                           "mean": {"type": "array", "minItems": 1, "maxItems": 4, "items": _number(-10, 10)},
                           "std": {"type": "array", "minItems": 1, "maxItems": 4,
                                   "items": {"type": "number", "exclusiveMinimum": 0, "maximum": 100}}},
        },
        "dropped": _text(1000, nullable=True),  # tensors left out, and why (e.g. RobustBench's unused sub_block1)
        "sample_check": {
            "type": ["object", "null"], "required": ["sample", "accuracy", "correct", "n", "chance"],
            "additionalProperties": False,
            "properties": {"sample": _text(256), "accuracy": _number(0, 1),
                           "correct": {"type": "integer", "minimum": 0},
                           "n": {"type": "integer", "minimum": 1, "maximum": 10**6}, "chance": _number(0, 1),
                           "warning": _text(1000, nullable=True)},
        },
        "command": _text(4000),
        "imported": _text(40, nullable=True),
    },
}
CARD_SCHEMA["properties"]["source"] = IMPORT_SOURCE_SCHEMA


# ----------------------------------------------------------------------------- reading and writing

def _reject_constant(name: str):
    raise ValueError(f"{name} is not JSON")  # NaN / Infinity: never written here, refused when read


def parse_json(data: bytes, what: str) -> object:
    """Strict JSON (no NaN or Infinity), with one-line errors for anything else."""
    try:
        return json.loads(data, parse_constant=_reject_constant)
    except RecursionError:
        raise CheckpointError(f"{what} is nested too deeply; refusing it") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{what} is not valid JSON ({printable(exc, 120)})") from None


@functools.cache
def _card_validator():
    """One validator for every card: `jsonschema.validate` checks the schema itself on every call,
    which was most of the time it took to list the shipped checkpoints. The metrics' items are
    checked by `_check_metrics` instead (the same rule, 50x faster: jsonschema spent 3 s on the
    10,000 epochs of a 9 MB card)."""
    import copy

    import jsonschema

    cls = jsonschema.validators.validator_for(CARD_SCHEMA)
    cls.check_schema(CARD_SCHEMA)
    schema = copy.deepcopy(CARD_SCHEMA)
    del schema["properties"]["metrics"]["items"]
    return cls(schema)


def _check_metrics(card: dict) -> None:
    """CARD_SCHEMA's rule for each metrics item (an object of at most 100 numbers), in plain Python."""
    rule = CARD_SCHEMA["properties"]["metrics"]["items"]
    limit = rule["maxProperties"]
    for i, item in enumerate(card.get("metrics") or ()):
        if not isinstance(item, dict) or len(item) > limit or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in item.values()):
            raise CheckpointError(f"invalid {CARD} at metrics/{i}: each epoch's metrics must be an object of at most "
                                  f"{limit} numbers")


@functools.cache
def _fast_card_validator():
    """The same schema compiled to Python by fastjsonschema: a valid card passes in about a tenth of
    a millisecond where jsonschema takes 3 (a cold list of 5,000 runs took 15 s). Any card it
    rejects is checked again by jsonschema, for the one-line message."""
    import copy

    import fastjsonschema

    schema = copy.deepcopy(CARD_SCHEMA)
    del schema["properties"]["metrics"]["items"]  # `_check_metrics`
    return fastjsonschema.compile(schema)


def validate_card(card: object) -> dict:
    """Check a card against `CARD_SCHEMA`; a one-line CheckpointError for the first violation."""
    import jsonschema

    if not isinstance(card, dict):
        raise CheckpointError(f"{CARD} must be a JSON object")
    try:
        _fast_card_validator()(card)
    except Exception as fast:  # noqa: BLE001 - its JsonSchemaException, or any error on an odd value: ask jsonschema
        try:
            error = jsonschema.exceptions.best_match(_card_validator().iter_errors(card))  # as `jsonschema.validate`
            if error is not None:
                raise error
        except jsonschema.ValidationError as exc:
            where = "/".join(printable(p, 40) for p in exc.absolute_path) or "card"
            raise CheckpointError(f"invalid {CARD} at {where}: {printable(exc.message, 200)}") from None
        raise CheckpointError(f"invalid {CARD}: {printable(getattr(fast, 'message', fast), 200)}") from None
    # both validators accept the same cards (tests/test_card_validators.py); jsonschema stays the reference
    _check_metrics(card)
    names = [n for n in card["files"].values() if n]
    if len(set(names)) != len(names):
        raise CheckpointError(f"invalid {CARD}: two entries of files name the same file")
    return card


def read_card(run_dir: str | os.PathLike) -> dict:
    """Read and validate `card.json` of a run directory. Only reads: no tensor, no write."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"no checkpoint directory at {printable(run_dir, 200)!r}")
    if not (run_dir / CARD).exists() and not (run_dir / CARD).is_symlink():
        pickles = sorted(p.name for p in run_dir.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES)
        if pickles:
            raise CheckpointError(f"refusing {printable(pickles[0], 80)!r}: pickle-based files can run code and are "
                                  f"never loaded; a checkpoint is {CARD} + safetensors files")
        raise CheckpointError(f"{printable(run_dir, 200)!r} is not a checkpoint: no {CARD}")
    data = read_regular(run_dir / CARD, MAX_CARD_BYTES, CheckpointError, CARD)
    return validate_card(parse_json(data, f"{CARD} in {printable(run_dir, 200)!r}"))


def card_bytes(card: dict) -> bytes:
    """A card as written to disk (validated first)."""
    validate_card(card)
    return json.dumps(card, indent=1, allow_nan=False).encode()


def write_card(run_dir: Path, card: dict) -> None:
    """Atomically replace the card (callers hold the run's writer lock: `atld.runs.rundir`)."""
    atomic_write(run_dir / CARD, card_bytes(card))


def card_files(card: dict) -> list[str]:
    """The tensor files a card names."""
    return [name for name in card["files"].values() if name]


def list_runs(root: str | os.PathLike) -> list[Path]:
    """Directories directly under `root` that hold a card (not validated here), sorted by name."""
    root = Path(root)
    if not root.is_dir():
        return []
    return [p for p in sorted(root.iterdir())
            if p.is_dir() and not p.is_symlink() and (p / CARD).is_file() and not (p / CARD).is_symlink()]


def shipped_checkpoints(directory: str | os.PathLike) -> dict[str, str]:
    """{run name: its dataset} of the runs in `directory` whose card passes the schema."""
    out = {}
    for path in list_runs(directory):
        try:
            out[path.name] = read_card(path)["dataset"]
        except CheckpointError:
            continue
    return out


def scan_runs(root: str | os.PathLike) -> list[tuple[Path, os.stat_result]]:
    """`list_runs` in one directory scan and one `lstat` per run: (run directory, its card's
    lstat), for directories (not links) directly under `root` whose card is a regular file,
    sorted by name. The card's size, modification time and inode tell a cache whether it changed."""
    out = []
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError:
        return []
    for entry in entries:
        try:
            if not entry.is_dir(follow_symlinks=False):
                continue
            info = os.lstat(os.path.join(entry.path, CARD))
        except OSError:
            continue
        if stat.S_ISREG(info.st_mode):
            out.append((Path(entry.path), info))
    return out


def card_summary(card: dict) -> dict:
    """What a list of runs shows of a validated card (small: kept for every run of a listing)."""
    return {"dataset": card["dataset"], "method": card["method"], "status": card["status"],
            "epochs_done": card["epochs_done"], "has_discriminator": card["has_discriminator"],
            "model_hash": card.get("sha256", {}).get(card["files"]["model"], ""),
            "imported": "source" in card}  # an imported run has trained no epoch here


# ----------------------------------------------------------------------------- names and places

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def safe_run_name(name: str) -> str:
    """Check a user-chosen run name: letters, digits, '.', '_', '-' (no separators, no '..',
    not absolute, at most 64 characters). Returns it unchanged or raises ConfigError."""
    if not isinstance(name, str) or not _SAFE_NAME.fullmatch(name) or ".." in name:
        raise ConfigError(f"bad run name {printable(name, 80)!r}: use 1-64 letters, digits, '.', '_' or '-', "
                          "starting with a letter or digit, no '..'")
    return name


def default_run_name(dataset: str, method: str, stamp: str) -> str:
    """<dataset>-<method>-<stamp>: what a run is called when nobody names it."""
    return safe_run_name(f"{dataset}-{method}-{stamp}")


def runs_dir() -> Path:
    """Where new runs go: ATLD_RUNS_DIR, else <repository>/runs (`atld.config.settings`)."""
    return settings().runs_dir


# ----------------------------------------------------------------------------- safetensors headers

SAFETENSORS_DTYPES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2,
                      "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}
MAX_DIMS = 8


@dataclass(frozen=True)
class TensorEntry:
    """One tensor as a safetensors header describes it."""
    dtype: str  # "F32", "I64", "U8", ...
    shape: tuple[int, ...]
    start: int  # byte offsets in the data section
    end: int


def read_safetensors_header(fd: int | bytes, file_size: int, what: str) -> dict[str, TensorEntry]:
    """The tensor entries of the safetensors file open as `fd`, or already in memory as bytes (an
    imported upload); only its header is read.

    Every claim is checked: a bounded header length, strict JSON, known dtypes, non-negative
    shapes of at most 8 dimensions, byte ranges that match the shapes and tile the data section
    exactly. Raises CheckpointError("<what> is not a readable safetensors file (...)")."""
    def bad(reason: str) -> CheckpointError:
        return CheckpointError(f"{what} is not a readable safetensors file ({reason})")

    def read(offset: int, n: int) -> bytes:
        if isinstance(fd, (bytes, bytearray, memoryview)):
            return bytes(fd[offset:offset + n])
        os.lseek(fd, offset, os.SEEK_SET)
        return os.read(fd, n)

    prefix = read(0, 8)
    if len(prefix) < 8:
        raise bad("shorter than its 8-byte header length")
    (length,) = struct.unpack("<Q", prefix)
    if not 2 <= length <= min(MAX_HEADER_BYTES, file_size - 8):
        raise bad(f"header length {length} does not fit the file")
    raw = read(8, length)
    if len(raw) != length:
        raise bad("truncated header")
    try:
        header = parse_json(raw, "header")
    except CheckpointError as exc:
        raise bad(str(exc)) from None
    if not isinstance(header, dict):
        raise bad("header is not a JSON object")
    entries: dict[str, TensorEntry] = {}
    for name, info in header.items():
        if name == "__metadata__":
            if not isinstance(info, dict) or not all(isinstance(v, str) for v in info.values()):
                raise bad("metadata is not a map of strings")
            continue
        if not (isinstance(info, dict) and set(info) == {"dtype", "shape", "data_offsets"}):
            raise bad(f"entry {printable(name, 60)!r} is malformed")
        dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if dtype not in SAFETENSORS_DTYPES:
            raise bad(f"unknown dtype {printable(dtype, 20)!r}")
        if not (isinstance(shape, list) and len(shape) <= MAX_DIMS
                and all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 2**40 for d in shape)):
            raise bad(f"bad shape for {printable(name, 60)!r}")
        if not (isinstance(offsets, list) and len(offsets) == 2
                and all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)):
            raise bad(f"bad offsets for {printable(name, 60)!r}")
        numel = 1
        for d in shape:
            numel *= d
        start, end = offsets
        if not 0 <= start <= end or end - start != numel * SAFETENSORS_DTYPES[dtype]:
            raise bad(f"offsets of {printable(name, 60)!r} do not match its shape")
        entries[name] = TensorEntry(dtype, tuple(shape), start, end)
    position = 0
    for entry in sorted(entries.values(), key=lambda e: (e.start, e.end)):
        if entry.start != position:
            raise bad("tensor data overlap or leave gaps")
        position = entry.end
    if 8 + length + position != file_size:
        raise bad(f"the header accounts for {8 + length + position} bytes, the file has {file_size}")
    return entries


def tensor_file_header(path: Path, what: str) -> dict[str, TensorEntry]:
    """The header of a safetensors file on disk (opened as a regular file of bounded size)."""
    with open_regular(path, MAX_TENSOR_FILE_BYTES, CheckpointError, what) as fd:
        return read_safetensors_header(fd, os.fstat(fd).st_size, what)
