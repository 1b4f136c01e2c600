"""Importing a weights file from outside the lab as a lab run (`python -m atld import`, the app's
"Bring your own model").

What is accepted (docs/import.md):
- `.safetensors`: its header is read and checked torch-free (`atld.runs.card.read_safetensors_header`:
  bounded, byte ranges that tile the file exactly, so a truncated file or a tensor declared larger
  than the file is refused) and every name, shape and dtype is checked against the architecture
  before one tensor is read;
- a `torch.save` archive (`.pt`, `.pth`, `.bin`): the zip's members must be stored uncompressed and
  fit in the file; its pickle is first read opcode by opcode without running it (`pickletools`),
  and any global outside the handful `torch.save` writes for tensors and dicts is refused by name;
  only then is it read with `torch.load(weights_only=True)` (PyTorch's restricted unpickler). A
  plain pickle or the pre-1.6 `torch.save` format is refused without being read;
- the usual wrappers: a dict holding the weights under "state_dict", "model_state_dict" or
  "model", and a "module." (DataParallel), "_orig_mod." (torch.compile) or "model." prefix on
  every name.

Every claim is checked before anything is built for it: the architecture's parameter count
against the dataset's budget (a formula), the file size against what the architecture can
need, names and shapes against the architecture built on the "meta" device (a mismatch names the
first missing or unexpected name and the shapes), dtypes (floats are converted to float32), and
finite values. The result is a normal run directory (card + safetensors, `atld.runs.store`) with
the provenance in the card (`IMPORT_SOURCE_SCHEMA`), and one forward pass over the dataset's
shipped sample whose clean accuracy the card stores; near chance, the import says so.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import pickletools
import re
import struct
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from atld.errors import CheckpointError, ConfigError, shown
from atld.fileio import now_iso, open_regular, printable
from atld.runs.card import (IMPORTED_CONFIG_METHOD, IMPORTED_METHOD, MAX_TENSOR_FILE_BYTES, ImportFormat,
                            read_safetensors_header, runs_dir, safe_run_name)

WRAPPER_KEYS = ("state_dict", "model_state_dict", "model")  # where checkpoints usually keep their weights
NAME_PREFIXES = ("module.", "_orig_mod.", "model.")  # DataParallel, torch.compile, a wrapping module
NORMALIZATION_NAMES = (("mu", "sigma"), ("mean", "std"))  # buffers where RobustBench's wrappers keep normalization
FLOAT_DTYPES = ("F32", "F16", "BF16", "F64")  # converted to float32
INT_DTYPES = ("I64", "I32")  # BatchNorm's num_batches_tracked
MAX_PICKLE_BYTES = 64 * 2**20  # the pickle of a state dict holds names and shapes, not data
MAX_ZIP_MEMBERS = 100_000
BYTES_PER_VALUE_LIMIT = 16  # a file may hold up to 16 bytes per model value (float64 + optimizer state) ...
SLACK_BYTES = 64 * 2**20  # ... plus this (names, headers, a few extra entries)
SAMPLE_CHECK_IMAGES = 200
NEAR_CHANCE_FACTOR = 2.0  # clean accuracy under this many times chance is "near chance"
# The globals torch.save writes for a dict of tensors; torch.load(weights_only=True) allows these too.
ALLOWED_GLOBALS = frozenset({
    ("collections", "OrderedDict"), ("builtins", "dict"), ("builtins", "list"), ("builtins", "tuple"),
    ("builtins", "set"), ("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_parameter"),
    ("torch._utils", "_rebuild_parameter_with_state"), ("torch", "Size"), ("torch", "device"),
    *(("torch", f"{kind}Storage") for kind in ("Float", "Double", "Half", "BFloat16", "Long", "Int", "Short", "Char",
                                                "Byte", "Bool")),
})


# The architectures a picker offers first: RobustBench's most used CIFAR layouts, then the lab's own.
SUGGESTED_ARCHITECTURES = ("rb-wrn-28-10", "rb-wrn-34-10", "rb-wrn-34-20", "dm-wrn-70-16-swish", "dm-wrn-70-16",
                           "dm-wrn-28-10-swish", "dm-wrn-28-10", "rb-preact-resnet18", "rb-preact-resnet18-bn",
                           "rb-resnet18", "dm-preact-resnet18-swish", "dm-preact-resnet18", "wrn-28-10",
                           "preact-resnet18", "convnet-32", "small-cnn", "fast-cnn-bn")


@dataclass(frozen=True)
class Normalization:
    """The input normalization the imported model applies inside itself: (x − mean) / std per channel."""
    name: str
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def to_dict(self) -> dict:
        return {"name": self.name, "mean": list(self.mean), "std": list(self.std)}


NORMALIZATION_CHOICES = ("auto", "none", "dataset", "MEAN,../STD,..")


def resolve_normalization(choice: str | Normalization | None, arch: str, spec) -> Normalization:
    """`auto` (RobustBench's `rb-*` layouts take [0, 1] inputs: none; DeepMind's `dm-*` and the lab's
    own architectures: the dataset's mean/std, which for CIFAR-10/100 are DeepMind's constants; a
    file that keeps its own as `mu`/`sigma` buffers overrides `auto` in `import_weights`),
    `none`, `dataset`, or "m1,m2,m3/s1,s2,s3". ConfigError for anything else."""
    channels = spec.input_shape[0]
    if isinstance(choice, Normalization):
        norm = choice
    else:
        choice = "auto" if choice is None else str(choice).strip()
        if choice == "auto":
            choice = "none" if arch.startswith("rb-") else "dataset"
        if choice == "none":
            norm = Normalization("none", (0.0,) * channels, (1.0,) * channels)
        elif choice == "dataset":
            norm = Normalization(f"{spec.name} mean/std", tuple(spec.mean), tuple(spec.std))
        else:
            m = re.fullmatch(r"([^/]{1,200})/([^/]{1,200})", choice)
            try:
                mean, std = (tuple(float(v) for v in part.split(",")) for part in m.groups()) if m else ((), ())
            except ValueError:
                mean, std = (), ()
            if not mean:
                raise ConfigError(f"bad normalization {printable(choice, 60)!r}: use auto, none, dataset or "
                                  "MEAN/STD as comma-separated numbers, e.g. 0.4914,0.4822,0.4465/0.2471,0.2435,0.2616")
            norm = Normalization("custom", mean, std)
    if not len(norm.mean) == len(norm.std) == channels:
        raise ConfigError(f"normalization needs {channels} mean and {channels} std values for {spec.name}, got "
                          f"{len(norm.mean)} and {len(norm.std)}")
    if not all(-10 <= v <= 10 for v in norm.mean) or not all(0 < v <= 100 for v in norm.std):
        raise ConfigError("normalization: each mean must be in [-10, 10] and each std in (0, 100]")
    return norm


@dataclass(frozen=True)
class ImportProgress:
    """A step of an import, for a progress bar: `stage` in reading, checking, sample, saving."""
    stage: str
    done: int
    total: int

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 1.0


@dataclass(frozen=True)
class SampleCheck:
    sample: str  # which images: "the shipped cifar10-exact sample", "the digits test split"
    correct: int
    n: int
    chance: float
    warning: str | None

    @property
    def accuracy(self) -> float:
        return self.correct / self.n

    def to_dict(self) -> dict:
        return {"sample": self.sample, "accuracy": self.accuracy, "correct": self.correct, "n": self.n,
                "chance": self.chance, "warning": self.warning}


@dataclass(frozen=True)
class ImportResult:
    """What an import made (plain data, for the CLI and the app)."""
    path: Path  # the new run directory
    name: str
    arch: str
    dataset: str
    format: str
    wrapper: str | None  # how the weights were found ("state_dict", "module." ...), None when bare
    dropped: str | None  # tensors left out, and why
    normalization: Normalization
    sha256: str  # of the source file
    check: SampleCheck | None  # None when the dataset has no sample here or check_images is 0
    seconds: float

    @property
    def warning(self) -> str | None:
        return self.check.warning if self.check else None


@dataclass
class _Weights:
    tensors: dict  # name -> tensor, float32 / int64, checked
    format: str
    wrapper: list[str] = field(default_factory=list)
    dropped: str | None = None
    normalization: Normalization | None = None  # the file's own (mu/sigma buffers), when it has one


# ----------------------------------------------------------------------------- the architecture's layout

def _target(arch: str, dataset: str):
    """(TrainConfig, spec) of the plain classifier the weights must fit; the parameter budget is
    checked from the architecture's formula, before anything is built."""
    from atld.config.train import TrainConfig
    from atld.data.registry import get_spec

    if not isinstance(dataset, str):
        raise ConfigError("dataset must be a name")
    spec = get_spec(dataset)
    config = TrainConfig(dataset=dataset, method=IMPORTED_CONFIG_METHOD, arch=arch, epochs=1)
    return config, spec


def _layout(arch: str, spec) -> dict[str, tuple[tuple[int, ...], bool]]:
    """name -> (shape, is float) of the architecture's state dict, from a model on the meta device."""
    import torch

    from atld.models.registry import build_classifier

    with torch.device("meta"):
        model = build_classifier(arch, spec)
    return {k: (tuple(v.shape), v.is_floating_point()) for k, v in model.state_dict().items()}


def size_limit(layout: dict) -> int:
    """The largest file accepted for an architecture: 16 bytes per value plus 64 MiB, at most 4 GiB."""
    values = sum(_numel(shape) for shape, _ in layout.values())
    return min(MAX_TENSOR_FILE_BYTES, BYTES_PER_VALUE_LIMIT * values + SLACK_BYTES)


def max_file_bytes(arch: str, dataset: str) -> int:
    """The largest weights file accepted for `arch` on `dataset` (for an uploader's limit)."""
    return size_limit(_layout(arch, _target(arch, dataset)[1]))


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _shape(shape) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def _strip_prefixes(names: list[str]) -> tuple[dict[str, str], list[str]]:
    """{new name: file name} with wrapper prefixes every name carries removed, and those prefixes."""
    mapping, removed = {n: n for n in names}, []
    changed = True
    while changed and mapping:
        changed = False
        for prefix in NAME_PREFIXES:
            if all(k.startswith(prefix) for k in mapping):
                mapping = {k[len(prefix):]: v for k, v in mapping.items()}
                removed.append(prefix)
                changed = True
    return mapping, removed


def _match_layout(found: dict[str, tuple[tuple[int, ...], str]], layout: dict, arch: str,
                  what: str) -> tuple[dict[str, str], list[str], str | None, tuple[str, str] | None]:
    """Check names, shapes and dtypes the file declares against the architecture.

    found: file name -> (shape, safetensors dtype). Returns ({layout name: file name}, prefixes
    removed, what was dropped). RobustBench's `sub_block1` (a copy of block1's layout the forward
    pass never uses) is dropped after its shapes are checked; a missing `num_batches_tracked` (older
    checkpoints) is allowed; a normalization kept as buffers (`mu` and `sigma`, as RobustBench's
    wrapping classes do) comes back as its two file names. Anything else is one line naming the
    first difference."""
    mapping, prefixes = _strip_prefixes(list(found))
    dropped, norm_names = [], None
    for mean, std in NORMALIZATION_NAMES:
        if mean in mapping and std in mapping and mean not in layout and std not in layout \
                and 1 <= _numel(found[mapping[mean]][0]) <= 4 and 1 <= _numel(found[mapping[std]][0]) <= 4 \
                and found[mapping[mean]][1] in FLOAT_DTYPES and found[mapping[std]][1] in FLOAT_DTYPES:
            norm_names = (mapping.pop(mean), mapping.pop(std))
            break
    unused = [k for k in mapping if k.startswith("sub_block1.")]
    if unused and arch.startswith("rb-wrn-"):
        for k in unused:
            twin = "block1." + k[len("sub_block1."):]
            if twin not in layout or found[mapping[k]][0] != layout[twin][0]:
                raise CheckpointError(f"{what}: {printable(k, 80)} {_shape(found[mapping[k]][0])} does not mirror "
                                      f"block1 of {arch} (RobustBench's unused sub_block1)")
            del mapping[k]
        dropped.append(f"{len(unused)} sub_block1 tensors (RobustBench's WideResNet keeps them; its forward pass "
                       "never uses them)")
    missing = [k for k in layout if k not in mapping and not k.endswith("num_batches_tracked")]
    unexpected = sorted(k for k in mapping if k not in layout)
    if missing or unexpected:
        if missing:
            first = f"missing {missing[0]} of shape {_shape(layout[missing[0]][0])}"
        else:
            first = f"unexpected {shown(unexpected[0], 80)} of shape {_shape(found[mapping[unexpected[0]]][0])}"
        hint = ""
        if 2 * len(missing) > len(layout) or 2 * len(unexpected) > len(mapping):
            hint = "; no name fits: is this the architecture the file was saved from? (see docs/import.md)"
        raise CheckpointError(f"the weights in {what} do not fit {arch}: {first}; {len(missing)} missing, "
                              f"{len(unexpected)} unexpected{hint}")
    for name, (shape, is_float) in layout.items():
        if name not in mapping:
            continue
        fshape, dtype = found[mapping[name]]
        if tuple(fshape) != shape:
            raise CheckpointError(f"shape mismatch for {name}: {what} has {_shape(fshape)}, {arch} needs "
                                  f"{_shape(shape)}")
        allowed = FLOAT_DTYPES if is_float else INT_DTYPES
        if dtype not in allowed:
            raise CheckpointError(f"dtype of {name} in {what} is {printable(dtype, 20)}; {arch} needs "
                                  f"{' / '.join(allowed)}")
    absent = [k for k in layout if k not in mapping]
    if absent:
        dropped.append(f"{len(absent)} num_batches_tracked counters absent (set to 0; they do not change outputs)")
    return mapping, prefixes, "; ".join(dropped) or None, norm_names


def _file_normalization(tensors: dict, names: tuple[str, str] | None, torch) -> Normalization | None:
    if names is None:
        return None
    mean, std = (tuple(float(v) for v in tensors[n].to(torch.float64).flatten()) for n in names)
    return Normalization(f"from the file ({names[0]}, {names[1]})", mean, std)


# ----------------------------------------------------------------------------- reading the file

def _read_source(source, what: str, limit: int) -> bytes:
    """The file's bytes: given as bytes (an upload) or a path opened as a regular file; either way
    at most `limit` bytes, checked before reading."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if len(data) > limit:
            raise CheckpointError(f"{what} is {len(data):,} bytes, more than the {limit:,} this architecture can need")
        return data
    try:
        with open_regular(source, limit, CheckpointError, what) as fd:
            return b"".join(iter(lambda: os.read(fd, 1 << 24), b""))
    except OSError as exc:
        raise CheckpointError(f"cannot read {what}: {printable(exc.strerror or exc, 120)}") from None


def sniff_format(data: bytes, what: str) -> str:
    """safetensors or a torch.save zip archive, from the first bytes; anything else one line."""
    if data[:4] == b"PK\x03\x04":
        return ImportFormat.TORCH_ZIP
    if len(data) >= 10:
        (length,) = struct.unpack("<Q", data[:8])
        if 2 <= length <= len(data) - 8 and data[8:9] == b"{":
            return ImportFormat.SAFETENSORS
    if data[:1] == b"\x80" or data[:1] in (b"(", b"}", b"]"):
        raise CheckpointError(f"refusing {what}: it is a plain pickle (or the pre-1.6 torch.save format), which "
                              "runs code when loaded and is never read here; save the weights with "
                              "torch.save(model.state_dict()) or as .safetensors")
    raise CheckpointError(f"{what} is neither a .safetensors file nor a torch.save archive")


def _read_safetensors(data: bytes, layout: dict, arch: str, what: str) -> _Weights:
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load as load_safetensors

    header = read_safetensors_header(data, len(data), what)  # bounded; byte ranges tile the file exactly
    mapping, prefixes, dropped, norm_names = _match_layout({k: (e.shape, e.dtype) for k, e in header.items()},
                                                           layout, arch, what)
    try:
        raw = load_safetensors(data)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{what} is not a readable safetensors file ({printable(exc, 120)})") from None
    tensors = {name: raw[src] for name, src in mapping.items()}
    norm = _file_normalization(raw, norm_names, torch)
    del raw
    return _Weights(_finish(tensors, layout, what, torch), ImportFormat.SAFETENSORS, list(prefixes), dropped, norm)


def _zip_members(data: bytes, what: str) -> tuple[zipfile.ZipFile, str]:
    """The torch.save archive and the name of its pickle, after checking that every member is
    stored uncompressed and that together they fit in the file (nothing inflates)."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError, OSError) as exc:
        raise CheckpointError(f"{what} is not a readable torch.save archive ({printable(exc, 120)}); truncated?") \
            from None
    if not 1 <= len(infos) <= MAX_ZIP_MEMBERS:
        raise CheckpointError(f"{what}: a torch.save archive of {len(infos)} members")
    names = [info.filename for info in infos]
    if len(set(names)) != len(names):  # zip readers differ on which copy they take: the scan must see torch's
        raise CheckpointError(f"{what}: its archive names a member twice; refused")
    total = 0
    for info in infos:
        if info.compress_type != zipfile.ZIP_STORED or info.compress_size != info.file_size:
            raise CheckpointError(f"{what}: member {printable(info.filename, 80)!r} is compressed; torch.save never "
                                  "compresses, so it is refused (it could inflate to any size)")
        total += info.file_size
    if total > len(data):
        raise CheckpointError(f"{what}: its members claim {total:,} bytes, more than the file's {len(data):,}")
    pickles = [i for i in infos if i.filename.endswith("/data.pkl") and i.filename.count("/") == 1]
    if len(pickles) != 1:
        raise CheckpointError(f"{what} is a zip archive but not a torch.save one (no single <name>/data.pkl)")
    if pickles[0].file_size > MAX_PICKLE_BYTES:
        raise CheckpointError(f"{what}: its pickle is {pickles[0].file_size:,} bytes, far more than a state dict's")
    return archive, pickles[0].filename


OBJECT_OPCODES = ("INST", "OBJ", "NEWOBJ", "NEWOBJ_EX", "EXT1", "EXT2", "EXT4")  # a state dict never needs them


def pickle_globals(pickle_bytes: bytes, what: str) -> list[tuple[str, str]]:
    """Every global a pickle would import, read opcode by opcode without running anything. A
    STACK_GLOBAL must take its names from the two strings just pushed (what torch.save writes);
    anything harder to follow is refused. Opcodes that create objects come back as ("", opcode)."""
    found, strings = [], []
    try:
        for opcode, arg, _ in pickletools.genops(pickle_bytes):
            if opcode.name == "GLOBAL":
                module, _, name = str(arg).partition(" ")
                found.append((module, name))
            elif opcode.name == "STACK_GLOBAL":
                if len(strings) < 2:
                    raise CheckpointError(f"refusing {what}: its pickle builds a global from computed names")
                found.append((strings[-2], strings[-1]))
                strings = []
            elif opcode.name in ("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE"):
                strings.append(str(arg))
            elif opcode.name not in ("MEMOIZE", "BINPUT", "LONG_BINPUT", "PUT"):
                strings = []
            if opcode.name in OBJECT_OPCODES:
                found.append(("", opcode.name))
    except CheckpointError:
        raise
    except Exception as exc:  # pickletools raises ValueError and others for malformed input
        raise CheckpointError(f"{what}: its pickle is malformed or truncated ({printable(exc, 100)})") from None
    return found


def _read_torch_zip(data: bytes, layout: dict, arch: str, what: str) -> _Weights:
    import pickle

    import torch

    archive, pkl = _zip_members(data, what)
    try:
        pickle_bytes = archive.read(pkl)
    except (zipfile.BadZipFile, ValueError, EOFError, OSError) as exc:
        raise CheckpointError(f"{what}: cannot read its pickle ({printable(exc, 100)}); truncated?") from None
    found = pickle_globals(pickle_bytes, what)
    for module, name in found:  # a foreign global first: it names what the file holds
        if module and (module, name) not in ALLOWED_GLOBALS:
            raise CheckpointError(f"refusing {what}: it needs {printable(module, 60)}.{printable(name, 60)}, which "
                                  "a file of weights never needs (a pickled object or code); it was not loaded. Save "
                                  "model.state_dict() or a .safetensors file")
    for module, name in found:
        if not module:
            raise CheckpointError(f"refusing {what}: its pickle creates objects ({name}), which a state dict never "
                                  "needs; it was not loaded")
    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, ValueError, EOFError, KeyError, TypeError, AttributeError,
            IndexError, OSError, zipfile.BadZipFile) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"refusing {what}: torch.load(weights_only=True) cannot read it "
                              f"({printable(first, 160)})") from None
    state, wrapper = _unwrap(obj, what, torch)
    found = {}
    for key, value in state.items():
        if not isinstance(key, str):
            raise CheckpointError(f"{what}: a name that is not text ({type(key).__name__})")
        dtype = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
                 torch.int64: "I64", torch.int32: "I32"}.get(value.dtype, str(value.dtype).replace("torch.", ""))
        found[key] = (tuple(value.shape), dtype)
    mapping, prefixes, dropped, norm_names = _match_layout(found, layout, arch, what)
    tensors = {name: state[src] for name, src in mapping.items()}
    return _Weights(_finish(tensors, layout, what, torch), ImportFormat.TORCH_ZIP, wrapper + prefixes, dropped,
                    _file_normalization(state, norm_names, torch))


def _unwrap(obj, what: str, torch) -> tuple[dict, list[str]]:
    """The state dict inside what torch.load returned, and the wrapper key it was under."""
    wrapper = []
    if isinstance(obj, dict) and not all(isinstance(v, torch.Tensor) for v in obj.values()):
        for key in WRAPPER_KEYS:
            if isinstance(obj.get(key), dict):
                obj, wrapper = obj[key], [key]
                break
        else:
            if not any(isinstance(v, torch.Tensor) for v in obj.values()):
                keys = ", ".join(printable(k, 40) for k in list(obj)[:6])
                raise CheckpointError(f"{what} holds a dict without weights at its top ({keys}); expected a state "
                                      f"dict or one under {', '.join(WRAPPER_KEYS)}")
    if not isinstance(obj, dict) or not obj:
        raise CheckpointError(f"{what} holds a {type(obj).__name__}, not a state dict (names -> tensors)")
    for key, value in obj.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{what}: {printable(key, 80)} is a {type(value).__name__}, not a tensor")
    return obj, wrapper


def _finish(tensors: dict, layout: dict, what: str, torch) -> dict:
    """float32 / int64 copies, every float finite, absent num_batches_tracked as 0."""
    out = {}
    for name, (_, is_float) in layout.items():
        value = tensors.get(name)
        if value is None:  # only num_batches_tracked may be absent (_match_layout)
            out[name] = torch.zeros((), dtype=torch.int64)
            continue
        if is_float:
            value = value.to(torch.float32)
            if not bool(torch.isfinite(value).all()):
                raise CheckpointError(f"{name} in {what} contains NaN or infinite values")
        else:
            value = value.to(torch.int64)
        out[name] = value.contiguous()
    return out


def read_weights(source, arch: str, dataset: str, *, source_name: str | None = None) -> tuple[_Weights, bytes]:
    """The checked weights of `source` (bytes or a path) for `arch` on `dataset`, and the file's bytes."""
    _, spec = _target(arch, dataset)
    layout = _layout(arch, spec)
    what = printable(source_name or (Path(source).name if not isinstance(source, (bytes, bytearray, memoryview))
                                     else "the file"), 120)
    data = _read_source(source, what, size_limit(layout))
    kind = sniff_format(data, what)
    reader = _read_safetensors if kind == ImportFormat.SAFETENSORS else _read_torch_zip
    return reader(data, layout, arch, what), data


# ----------------------------------------------------------------------------- the sample check

def _sample_images(dataset: str, limit: int):
    """(x float [N, C, H, W] in [0, 1], y, description) of the dataset's shipped sample (CIFAR-10's
    is the exact subsets' one: the same test images), digits' test split; None when there is none."""
    import torch

    from atld.config.settings import settings
    from atld.data.loaders import load_dataset, load_sample
    from atld.data.samples import sample_path

    if dataset == "digits":
        data, text = load_dataset("digits"), "the digits test split"
    else:
        folder = settings().samples_dir
        name = dataset if sample_path(dataset, folder).is_file() else SAMPLE_FALLBACK.get(dataset)
        if name is None or not sample_path(name, folder).is_file():
            return None
        data, text = load_sample(name, folder), f"the shipped {name} test sample"
    x, y = data.x_test[:limit], data.y_test[:limit]
    x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
    return x, y, text


SAMPLE_FALLBACK = {"cifar10": "cifar10-exact"}  # the exact subsets' test images are CIFAR-10 test images


def check_on_sample(model, dataset: str, num_classes: int, images: int = SAMPLE_CHECK_IMAGES, device="cpu",
                    progress: Callable[[ImportProgress], None] | None = None,
                    batch_size: int = 50) -> SampleCheck | None:
    """Clean accuracy of `model` on the first `images` of the dataset's sample, with a plain warning
    when it is near chance (under twice chance). None when the dataset has no sample here."""
    import torch

    if images <= 0:
        return None
    found = _sample_images(dataset, images)
    if found is None:
        return None
    x, y, text = found
    correct = 0
    model.eval()
    with torch.no_grad():
        for start in range(0, len(y), batch_size):
            logits = model(x[start:start + batch_size].to(device))
            correct += int((logits.argmax(1).cpu() == y[start:start + batch_size]).sum())
            if progress:
                progress(ImportProgress("sample", min(start + batch_size, len(y)), len(y)))
    chance = 1 / num_classes
    acc = correct / len(y)
    warning = None
    if acc < NEAR_CHANCE_FACTOR * chance:
        warning = (f"clean accuracy {100 * acc:.1f}% on {len(y)} images of {text} is near chance "
                   f"({100 * chance:.0f}%): the weights do not fit this architecture, input normalization or dataset. "
                   "Check --arch, --normalization (RobustBench's rb-* models take [0, 1] inputs: none; DeepMind's "
                   "dm-* ones the dataset's mean/std) and --dataset")
    return SampleCheck(text, correct, len(y), chance, warning)


# ----------------------------------------------------------------------------- the import

def default_import_name(dataset: str, file_name: str) -> str:
    """<dataset>-imported-<file stem>-<time>, made safe as a run name."""
    stem = re.sub(r"[^A-Za-z0-9_-]+", "-", Path(file_name).stem).strip("-_")[:24] or "weights"
    return safe_run_name(f"{dataset}-imported-{stem}-{time.strftime('%Y%m%d-%H%M%S')}")


def import_weights(source, arch: str, dataset: str, normalization: str | Normalization | None = "auto", *,
                   name: str | None = None, runs_root: str | os.PathLike | None = None,
                   source_name: str | None = None, check_images: int = SAMPLE_CHECK_IMAGES, device: str = "cpu",
                   command: str | None = None,
                   progress: Callable[[ImportProgress], None] | None = None) -> ImportResult:
    """Import a weights file as a new lab run and return what was made.

    source: the file's bytes (an upload; give `source_name`) or its path. arch: a name of the
    architectures table (`atld.models.registry`, e.g. "rb-wrn-28-10", "dm-wrn-70-16-swish").
    normalization: see `resolve_normalization`. name: the run's name (default
    `default_import_name`), created under `runs_root` (default the runs directory); an existing
    folder is refused. check_images: images of the dataset's sample for the clean-accuracy check
    (0: none). progress: called with `ImportProgress` events. Raises an `ATLDError` (one line) for
    any refusal; nothing is written unless everything passed."""
    from atld.models.registry import build_classifier
    from atld.runs.store import git_commit, library_versions, load_checkpoint, save_checkpoint, set_normalization

    start = time.perf_counter()
    report = progress or (lambda event: None)
    config, spec = _target(arch, dataset)  # names, budget: before reading a byte
    norm = resolve_normalization(normalization, arch, spec)
    file_name = source_name or (Path(source).name if not isinstance(source, (bytes, bytearray, memoryview)) else None)
    if not file_name:
        raise ConfigError("give the uploaded file's name (source_name)")
    file_name = printable(Path(str(file_name)).name, 200)
    run_name = safe_run_name(name) if name else default_import_name(dataset, file_name)
    root = Path(runs_root) if runs_root is not None else runs_dir()
    run_path = root / run_name
    if run_path.exists() or run_path.is_symlink():
        raise ConfigError(f"{printable(run_path, 200)!r} already exists; choose another --name")
    if not isinstance(check_images, int) or isinstance(check_images, bool) or not 0 <= check_images <= 10_000:
        raise ConfigError("check images must be an integer in [0, 10000]")
    report(ImportProgress("reading", 0, 1))
    weights, data = read_weights(source, arch, dataset, source_name=file_name)
    digest = hashlib.sha256(data).hexdigest()
    size = len(data)
    del data
    if weights.normalization is not None:  # the file keeps its own: used unless the user chose one
        if normalization in (None, "auto"):
            norm = resolve_normalization(weights.normalization, arch, spec)
        else:
            unused = weights.normalization.name.replace("from the file", "the file's normalization")
            weights.dropped = "; ".join(filter(None, [weights.dropped, f"{unused}, as --normalization was given"]))
    report(ImportProgress("checking", 1, 1))
    model = set_normalization(build_classifier(arch, spec), {"source": {"normalization": norm.to_dict()}})
    try:
        model.load_state_dict(weights.tensors, strict=True)
    except RuntimeError as exc:  # every name and shape was checked; this is a safety net
        raise CheckpointError(f"the weights do not load into {arch} ({printable(exc, 160)})") from None
    del weights.tensors
    model.to(device).eval()
    check = check_on_sample(model, dataset, spec.num_classes, check_images, device, report)
    wrapper = " + ".join(f"'{w}'" for w in weights.wrapper) or None
    card = {"name": run_name, "method": IMPORTED_METHOD, "dataset": dataset, "arch": arch,
            "config": {"dataset": dataset, "method": IMPORTED_CONFIG_METHOD, "arch": arch},
            "seed": 0, "epochs_done": 0, "metrics": [], "status": "finished",
            "versions": library_versions(), "git_commit": git_commit(), "command": command,
            "created": now_iso(), "updated": now_iso(),
            "source": {"file": file_name, "sha256": digest, "size": size, "format": weights.format,
                       "wrapper": wrapper, "architecture": arch, "normalization": norm.to_dict(),
                       "dropped": weights.dropped, "sample_check": check.to_dict() if check else None,
                       "command": command or f"import_weights({file_name!r}, {arch!r}, {dataset!r})",
                       "imported": now_iso()}}
    report(ImportProgress("saving", 0, 1))
    root.mkdir(parents=True, exist_ok=True)
    path = save_checkpoint(run_path, card, model.cpu())
    load_checkpoint(path)  # the lab's own loader accepts it: every command will
    report(ImportProgress("saving", 1, 1))
    return ImportResult(path, run_name, arch, dataset, weights.format, wrapper, weights.dropped, norm, digest, check,
                        time.perf_counter() - start)


# ----------------------------------------------------------------------------- time estimates

CPU_FLOPS_PER_THREAD = 80e9  # float32 throughput of one CPU thread on these networks, measured (docs/import.md)
WORK_PASSES = {  # forward-pass equivalents per image; an attack's backward pass to the input (no weight
    # gradients) costs about one forward (measured: the PGD-20 latent view of a WRN-28-10)
    "forward": 1,  # the import's sample check, a clean prediction
    "latent-map-pgd20": 1 + 20 * 2 + 1,  # natural features, PGD-20, adversarial features
    "autoattack": 2 * (100 + 9 * 100) + 5000,  # upper end: APGD-CE, APGD-T (9 targets), Square; images that survive
}


@functools.cache
def forward_flops(arch: str, dataset: str) -> int:
    """FLOPs of one image's forward pass through `arch` (counted on the meta device: nothing is
    allocated)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from atld.data.registry import get_spec
    from atld.models.registry import build_classifier

    spec = get_spec(dataset)
    with torch.device("meta"):
        model = build_classifier(arch, spec).eval()
        x = torch.zeros(1, *spec.input_shape)
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(x)
    return int(counter.get_total_flops())


def estimate_seconds(arch: str, dataset: str, n_images: int, work: str = "forward", device: str = "cpu",
                     threads: int | None = None) -> float | None:
    """About how long `work` (a key of WORK_PASSES) takes on `n_images` on the CPU with `threads`
    threads (default torch's); None on a GPU (fast enough not to warn). A rough figure, to warn
    before heavy work: it comes from the architecture's FLOP count and one measured throughput."""
    import torch

    if str(device).startswith("cuda"):
        return None
    if work not in WORK_PASSES:
        raise ConfigError(f"unknown work {printable(work, 40)!r}; choose one of {', '.join(WORK_PASSES)}")
    threads = threads or torch.get_num_threads()
    flops = forward_flops(arch, dataset) * WORK_PASSES[work] * max(0, n_images)
    return flops / (CPU_FLOPS_PER_THREAD * max(1, threads))


__all__ = ["NORMALIZATION_CHOICES", "SUGGESTED_ARCHITECTURES", "ImportProgress", "ImportResult", "Normalization",
           "SampleCheck", "ImportFormat", "check_on_sample", "estimate_seconds", "forward_flops", "import_weights",
           "max_file_bytes", "pickle_globals", "read_weights", "resolve_normalization", "sniff_format"]
