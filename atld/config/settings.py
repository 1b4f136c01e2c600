"""Settings read from the environment, each validated in one place (torch-free).

| variable | default | meaning |
|---|---|---|
| ATLD_RUNS_DIR | <repository>/runs | where new runs go (CLI default and the app's Train page) |
| ATLD_CHECKPOINTS_DIR | <repository>/checkpoints | the shipped checkpoints the app lists |
| ATLD_DATA_ROOT | none | the app's folder of torchvision datasets (digits needs none); unset: <ATLD_CACHE>/data |
| ATLD_SAMPLES_DIR | <repository>/checkpoints/samples | the shipped test samples the app falls back to |
| ATLD_CACHE | ~/.cache/atld | dataset and latent caches |
| ATLD_MAX_JOBS | 1 | training jobs the app server runs at once (1-64) |
| ATLD_UNWATCHED_MINUTES | 30 | an app training job nobody watches stops after this long (0.1-10080) |
| ATLD_TORCH_THREADS | 1 | intra-op torch threads per app computation and of `python -m atld eval` (1-256) |
| ATLD_UMAP_WARMUP | 1 | 0: skip loading UMAP's compiled code into each compute worker at start |
| ATLD_PRELOAD | 1 | 0: skip the start-up work (first views, UMAP's warm-up, torch & co. into the server) |
| ATLD_WORKERS | 2 | the app's compute workers (1-16): how many views are computed at once |
| ATLD_WORKER_KIND | process | process (the server never waits for their GIL) or thread (inside the server) |
| ATLD_RESULT_CACHE_MB | 512 | memory for computed views shared by all sessions (16-65536) |
| ATLD_PREWARM | 1 | 0: skip computing the default views of the default checkpoint at start |
| ATLD_UPLOAD_MB | 200 | the largest weights file Home's "Bring your own model" accepts, in MB (1-4096) |

`settings()` reads them afresh on every call (tests and the app may change them) and raises a
one-line `ConfigError` for a bad value; the CLI and the app call it at start. <repository> is
the folder that holds the `atld` package (a checkout or an editable install).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from atld.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Settings:
    runs_dir: Path
    checkpoints_dir: Path
    data_root: Path | None
    samples_dir: Path
    cache_dir: Path
    max_jobs: int
    unwatched_minutes: float
    torch_threads: int
    umap_warmup: bool
    preload: bool
    workers: int
    worker_kind: str
    result_cache_mb: int
    prewarm: bool
    upload_mb: int = 200

    @property
    def app_data_root(self) -> Path:
        """Where the app reads and downloads the full datasets: ATLD_DATA_ROOT, else <ATLD_CACHE>/data."""
        return self.data_root if self.data_root is not None else self.cache_dir / "data"


def _text(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    if value is None or value == "":
        return None
    if len(value) > 4096 or any(ord(c) < 32 for c in value):
        raise ConfigError(f"{name} must be a path of printable characters (at most 4096)")
    return value


def _folder(env: Mapping[str, str], name: str, default: Path | None) -> Path | None:
    value = _text(env, name)
    if value is None:
        return default
    path = Path(value).expanduser()
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{name}={value[:200]!r} exists and is not a directory")
    return path


def _number(env: Mapping[str, str], name: str, default, low, high, kind: type = int):
    """A whole number (kind int) or a finite number (kind float) in [low, high]."""
    value = env.get(name, "").strip()
    if value == "":
        return default
    what = "a whole number" if kind is int else "a number"
    try:
        number = int(value, 10) if kind is int else float(value)
    except ValueError:
        raise ConfigError(f"{name} must be {what} in [{low}, {high}], got {value[:40]!r}") from None
    if not (math.isfinite(number) and low <= number <= high):
        raise ConfigError(f"{name} must be in [{low}, {high}], got {value[:40]!r}")
    return number


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    value = env.get(name, "").strip()
    if value == "":
        return default
    if value not in ("0", "1"):
        raise ConfigError(f"{name} must be 0 or 1, got {value[:40]!r}")
    return value == "1"


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env.get(name, "").strip()
    if value == "":
        return default
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value[:40]!r}")
    return value


def settings(env: Mapping[str, str] | None = None) -> Settings:
    """The validated settings (see the module docstring); ConfigError for a bad value."""
    env = os.environ if env is None else env
    return Settings(
        runs_dir=_folder(env, "ATLD_RUNS_DIR", REPO_ROOT / "runs"),
        checkpoints_dir=_folder(env, "ATLD_CHECKPOINTS_DIR", REPO_ROOT / "checkpoints"),
        data_root=_folder(env, "ATLD_DATA_ROOT", None),
        samples_dir=_folder(env, "ATLD_SAMPLES_DIR", REPO_ROOT / "checkpoints" / "samples"),
        cache_dir=_folder(env, "ATLD_CACHE", Path.home() / ".cache" / "atld"),
        max_jobs=_number(env, "ATLD_MAX_JOBS", 1, 1, 64),
        unwatched_minutes=_number(env, "ATLD_UNWATCHED_MINUTES", 30.0, 0.1, 10080.0, kind=float),
        torch_threads=_number(env, "ATLD_TORCH_THREADS", 1, 1, 256),
        umap_warmup=_flag(env, "ATLD_UMAP_WARMUP", True),
        preload=_flag(env, "ATLD_PRELOAD", True),
        workers=_number(env, "ATLD_WORKERS", 2, 1, 16),
        worker_kind=_choice(env, "ATLD_WORKER_KIND", "process", ("process", "thread")),
        result_cache_mb=_number(env, "ATLD_RESULT_CACHE_MB", 512, 16, 65536),
        prewarm=_flag(env, "ATLD_PREWARM", True),
        upload_mb=_number(env, "ATLD_UPLOAD_MB", 200, 1, 4096),
    )
