"""Runs on disk, with their tensors: saving (`save_checkpoint`) and loading (`load_checkpoint`).

Loading trusts nothing a file claims, and checks it before allocating anything for it:
1. the card (`atld.runs.card.read_card`: schema, sizes) and its config (`TrainConfig`: names,
   ranges, and the models' parameter count against the dataset's budget, from a formula);
2. the card's own consistency (method, dataset, architecture, discriminator);
3. each tensor file: a regular file of bounded size whose SHA-256 matches the card, whose
   safetensors header (read alone, torch-free) lists exactly the names, dtypes and shapes of the
   model the card describes (built on the "meta" device, which allocates nothing) or of the
   optimizer state it must fit;
4. only then the data (exactly the bytes the header accounts for), every float finite;
5. the real models, loaded strictly.
Never unpickles. A reader that meets a file a concurrent save just replaced reads the new card
and tries again (a save never changes a file in place: `atld.runs.card`).
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from atld.config.train import TrainConfig
from atld.data.registry import DatasetSpec
from atld.errors import ATLDError, CheckpointError, name_mismatch
from atld.fileio import atomic_write, open_regular, os_error_line, printable, sha256_fd
from atld.models.registry import build_classifier, build_discriminator
from atld.runs.card import (CARD, FORMAT, FORMAT_VERSION, IMPORTED_CONFIG_METHOD, IMPORTED_METHOD,
                            MAX_TENSOR_FILE_BYTES, read_card, read_safetensors_header)
from atld.runs.rundir import RunWriter
from atld.runs.train_state import EPOCHS_KEY, train_state_layout

READ_ATTEMPTS = 3  # a reader retries when a concurrent save replaced the files it was about to open
ST_DTYPES = {torch.float32: "F32", torch.float64: "F64", torch.float16: "F16", torch.bfloat16: "BF16",
             torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
             torch.bool: "BOOL"}


@dataclass
class LoadedRun:
    """A checkpoint in memory. Models are on `device`, in eval mode."""
    path: Path
    card: dict
    config: TrainConfig
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
        return self.card.get("sha256", {}).get(self.card["files"]["model"], "")

    @property
    def imported(self) -> bool:
        """Made from a stranger's weights file (`atld.runs.importer`): no D, no training history."""
        return "source" in self.card

    @property
    def method(self) -> str:
        """How the model was made: a training method, or "imported"."""
        return self.card["method"]


# ----------------------------------------------------------------------------- metadata

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
                             text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and re.fullmatch(r"[0-9a-f]{40}", commit) else None


# ----------------------------------------------------------------------------- saving

def model_tensors(classifier: torch.nn.Module, discriminator: torch.nn.Module | None) -> dict[str, torch.Tensor]:
    """State dicts under "classifier." / "discriminator." prefixes, contiguous CPU copies."""
    def clean(module):  # strip wrappers (DDP's "module.", torch.compile's "_orig_mod.")
        module = getattr(module, "module", module)
        return getattr(module, "_orig_mod", module)

    out = {f"classifier.{k}": v for k, v in clean(classifier).state_dict().items()}
    if discriminator is not None:
        out.update({f"discriminator.{k}": v for k, v in clean(discriminator).state_dict().items()})
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in out.items()}


def _write_tensors(writer: RunWriter, kind: str, tensors: dict[str, torch.Tensor]) -> tuple[str, str]:
    """Write a tensor file named after its content; returns (name, sha256)."""
    data = save_safetensors({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, metadata={"format": FORMAT})
    digest = hashlib.sha256(data).hexdigest()
    name = f"{kind}-{digest[:16]}.safetensors"
    atomic_write(writer.path / name, data)
    return name, digest


def save_checkpoint(run: RunWriter | str | os.PathLike, card: dict, classifier: torch.nn.Module,
                    discriminator: torch.nn.Module | None = None,
                    train_state: dict[str, torch.Tensor] | None = None) -> Path:
    """Save a run atomically (new tensor files, then the card as the commit point; see
    `atld.runs.card`) and return its directory. `run` is a `RunWriter` the caller holds, or a path
    (a new run directory is created; an existing one must be a run of ours). `card` is completed
    with the file names, hashes and timestamps; the caller's dict is not changed. An OS error
    (a full disk, a read-only folder) leaves the previous save in place and raises one line."""
    if isinstance(run, RunWriter):
        return _save(run, card, classifier, discriminator, train_state)
    path = Path(run)
    with RunWriter.claim(path, new=not (path / CARD).exists()) as writer:
        return _save(writer, card, classifier, discriminator, train_state)


def _save(writer: RunWriter, card: dict, classifier, discriminator, train_state) -> Path:
    card = {**card, "format": FORMAT, "format_version": FORMAT_VERSION, "has_discriminator": discriminator is not None}
    try:
        model_name, model_sha = _write_tensors(writer, "model", model_tensors(classifier, discriminator))
        files, hashes = {"model": model_name, "train_state": None}, {model_name: model_sha}
        if train_state is not None:
            state_name, state_sha = _write_tensors(writer, "train_state", train_state)
            files["train_state"], hashes[state_name] = state_name, state_sha
        writer.commit({**card, "files": files, "sha256": hashes})
    except OSError as exc:
        writer.recover()  # drop this save's files; the previous card and its files stay
        raise CheckpointError(os_error_line(exc, f"saving to {printable(writer.path, 200)!r}")) from None
    return writer.path


def save_size(config: TrainConfig) -> int:
    """Bytes one save of a run of `config` writes, about (weights, buffers, optimizer state)."""
    from atld.models.registry import model_params

    dspec = config.discriminator_spec() if config.uses_discriminator else None
    params = model_params(config.resolved_arch, config.spec, dspec)
    return 4 * params * 3 + 2**20  # weights, momentum buffers, BatchNorm statistics and slack; 1 MiB of card


# ----------------------------------------------------------------------------- loading

class _FileReplaced(Exception):
    """A file the card names vanished after the card was read (a concurrent save)."""


def _layout(module: torch.nn.Module, prefix: str) -> dict[str, tuple[tuple[tuple, ...], torch.dtype]]:
    return {f"{prefix}{k}": ((tuple(v.shape),), v.dtype) for k, v in module.state_dict().items()}


def _check_header(header: dict, expected: dict[str, tuple[tuple[tuple, ...], torch.dtype]], what: str,
                  card: dict) -> None:
    if not card["has_discriminator"] and any(k.startswith("discriminator.") for k in set(header) - set(expected)):
        raise CheckpointError(f"{what} holds discriminator tensors but the card says it has none")
    mismatch = name_mismatch(expected, header)
    if mismatch:
        raise CheckpointError(f"tensors in {what} do not match the card's architecture ({mismatch})")
    for name, (shapes, dtype) in expected.items():
        entry = header[name]
        if entry.shape not in shapes:
            raise CheckpointError(f"shape mismatch for {name}: file has {entry.shape}, the card's run needs "
                                  f"{shapes[0]}")
        if entry.dtype != ST_DTYPES.get(dtype):
            raise CheckpointError(f"dtype mismatch for {name}: {entry.dtype} vs {ST_DTYPES.get(dtype)}")


def _read_checked(run_dir: Path, name: str, card: dict, expected: dict, what: str) -> dict[str, torch.Tensor]:
    """The tensors of one file the card names, after every check of the module docstring."""
    path = run_dir / name
    if path.resolve().parent != run_dir.resolve():
        raise CheckpointError(f"card points outside its directory ({printable(name, 80)!r}); refusing it")
    digest = card.get("sha256", {}).get(name)
    if digest is None:
        raise CheckpointError(f"card has no SHA-256 for {printable(name, 80)}; refusing an unverifiable file")
    if not path.exists() and not path.is_symlink():
        if read_card(run_dir).get("sha256") != card.get("sha256"):
            raise _FileReplaced
    with open_regular(path, MAX_TENSOR_FILE_BYTES, CheckpointError, name) as fd:
        size = os.fstat(fd).st_size
        try:
            if sha256_fd(fd) != digest:
                raise CheckpointError(f"{name} does not match its SHA-256 in the card (truncated, corrupt or replaced)")
            header = read_safetensors_header(fd, size, name)
            _check_header(header, expected, name, card)
            os.lseek(fd, 0, os.SEEK_SET)
            data = b"".join(iter(lambda: os.read(fd, 1 << 24), b""))
        except OSError as exc:
            raise CheckpointError(os_error_line(exc, f"reading {name}")) from None
    if len(data) != size or hashlib.sha256(data).hexdigest() != digest:  # changed while we read it
        raise CheckpointError(f"{name} changed while it was read; try again")
    try:
        tensors = load_safetensors(data)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{name} is not a readable safetensors file ({printable(exc, 120)})") from None
    for key, value in tensors.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise CheckpointError(f"{key} contains NaN or infinite values")
    return tensors


def _check_card(card: dict) -> TrainConfig:
    """The card's config, validated (budget included), and the card's agreement with it."""
    try:
        config = TrainConfig.from_dict(card["config"])
    except ATLDError as exc:
        raise CheckpointError(f"card's config is invalid: {exc}") from None
    if "source" in card:  # an imported run: loaded as the plain classifier its config describes
        _check_imported(card, config)
    elif card["method"] != config.method:
        raise CheckpointError(f"card says method={printable(card['method'], 60)!r} but its config says "
                              f"{config.method!r}")
    if card["dataset"] != config.dataset:
        raise CheckpointError(f"card says dataset={printable(card['dataset'], 60)!r} but its config says "
                              f"{config.dataset!r}")
    if card["arch"] != config.resolved_arch:
        raise CheckpointError(f"card says arch={printable(card['arch'], 60)!r} but its config says "
                              f"{config.resolved_arch!r}")
    return config


def _check_imported(card: dict, config: TrainConfig) -> None:
    """An imported run's card: method "imported", a plain classifier, no D, and a normalization
    with one mean and one std per input channel."""
    if card["method"] != IMPORTED_METHOD or config.method != IMPORTED_CONFIG_METHOD or card["has_discriminator"]:
        raise CheckpointError(f"card has an import source, so it must say method={IMPORTED_METHOD!r} with config "
                              f"method {IMPORTED_CONFIG_METHOD!r} and no discriminator")
    norm, channels = card["source"]["normalization"], config.spec.input_shape[0]
    if not len(norm["mean"]) == len(norm["std"]) == channels:
        raise CheckpointError(f"card's normalization needs {channels} mean and std values for {config.dataset}, "
                              f"it has {len(norm['mean'])} and {len(norm['std'])}")


def set_normalization(classifier: torch.nn.Module, card: dict) -> torch.nn.Module:
    """The input normalization of an imported run's card, inside its classifier (a constant, not in
    the state dict); other runs keep their dataset's."""
    from atld.models.common import Normalize

    if "source" in card:
        norm = card["source"]["normalization"]
        classifier.normalize = Normalize(tuple(norm["mean"]), tuple(norm["std"]))
    return classifier


def load_checkpoint(run_dir: str | os.PathLike, device: str | torch.device = "cpu",
                    with_train_state: bool = False) -> LoadedRun:
    """Load and validate a run directory (see the module docstring); models come back on `device`
    in eval mode. Raises `CheckpointError` with a one-line reason for anything missing, corrupt,
    mismatched or hostile. Only reads."""
    run_dir = Path(run_dir)
    for _ in range(READ_ATTEMPTS):
        try:
            return _load(run_dir, read_card(run_dir), torch.device(device), with_train_state)
        except _FileReplaced:
            continue
    raise CheckpointError(f"{printable(run_dir, 200)!r} kept changing while it was read (a run being saved); try again")


def _load(run_dir: Path, card: dict, device: torch.device, with_train_state: bool) -> LoadedRun:
    config = _check_card(card)
    try:  # what will be built, which is the config's models unless the card claims otherwise
        config.check_budget(card["has_discriminator"])
    except ATLDError as exc:
        raise CheckpointError(f"card's config is invalid: {exc}") from None
    with torch.device("meta"):  # the layout the card describes, without allocating it
        classifier = build_classifier(config.resolved_arch, config.spec)
        discriminator = build_discriminator(config.spec, config.discriminator_spec()) \
            if card["has_discriminator"] else None
    expected = _layout(classifier, "classifier.")
    if discriminator is not None:
        expected.update(_layout(discriminator, "discriminator."))
    model_name = card["files"]["model"]
    tensors = _read_checked(run_dir, model_name, card, expected, model_name)
    if card["has_discriminator"] != config.uses_discriminator:
        raise CheckpointError(f"card says has_discriminator={card['has_discriminator']} but method "
                              f"{config.method!r} {'trains' if config.uses_discriminator else 'has'} "
                              f"{'one' if config.uses_discriminator else 'none'}")
    state = None
    if with_train_state:
        name = card["files"].get("train_state")
        if not name:
            raise CheckpointError(f"{printable(run_dir, 200)!r} holds no training state; it cannot be resumed")
        layout = train_state_layout(list(classifier.parameters()),
                                    list(discriminator.parameters()) if discriminator is not None else None,
                                    config)
        state = _read_checked(run_dir, name, card, layout, name)
        if int(state[EPOCHS_KEY][0]) != card["epochs_done"]:
            raise CheckpointError(f"the training state is of epoch {int(state[EPOCHS_KEY][0])} but the card says "
                                  f"{card['epochs_done']} epochs are done")
    models = []
    classifier = set_normalization(build_classifier(config.resolved_arch, config.spec), card)
    for module, prefix in ((classifier, "classifier."),
                           (build_discriminator(config.spec, config.discriminator_spec())
                            if discriminator is not None else None, "discriminator.")):
        if module is not None:
            module.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)},
                                   strict=True)
            module.to(device).eval()
        models.append(module)
    return LoadedRun(run_dir, card, config, models[0], models[1], state)
