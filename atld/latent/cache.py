"""A disk cache for latents, projections and gap numbers, so that repeating a request is instant.

Keys: latents are keyed by (checkpoint hash = `LoadedRun.model_hash`, a SHA-256 of the image
and label tensors, the attack config, the seed, batch size and device type); projections and gap
numbers by a SHA-256 of their input arrays plus every parameter. The input arrays already depend
on the checkpoint, data and attack, so a projection is never served for other latents.

Every key also names the versions of the lab and of the libraries that compute the entry
(`versions`). An entry's file name is a hash of its key, and the entry itself carries the full
key text it was computed for (`KEY_FIELD`: an array of the `.npz`, a field of the JSON): it is
used only when that text is exactly the request's, so a file copied or renamed to another key's
name (another model's latents under this model's hash) is a miss.

Storage is data, never code: arrays as `.npz` read with `allow_pickle=False`, numbers as JSON.
Files are written whole to a temporary name and renamed, so a reader never sees half a file; an
entry that cannot be read, parsed, carries another key or does not fit what was asked (a corrupt
or foreign file) is a miss and is rewritten; a cache folder that cannot be written is skipped.

Location: `directory`, else $ATLD_CACHE/latent, else ~/.cache/atld/latent.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from atld.attacks.gradient import AttackConfig
from atld.config.settings import settings
from atld.errors import DataError
from atld.fileio import atomic_write, npz_bytes, parse_npz, read_regular
from atld.latent.embed import Embedder
from atld.latent.extract import LatentSet, extract_latents
from atld.latent.gap import MEASURE_KEYS, gap_numbers

CACHE_VERSION = 2  # bump when a cached computation changes meaning (2: entries carry their key)
MAX_ENTRY_BYTES = 2 * 2**30  # a cache entry bigger than this is not ours
KEY_FIELD = "__key__"  # where an entry carries the full key it was computed for


def default_cache_dir() -> Path:
    return settings().cache_dir.expanduser() / "latent"


def digest(*arrays) -> str:
    """SHA-256 over the dtype, shape and bytes of each array (numpy or torch; None allowed)."""
    h = hashlib.sha256()
    for a in arrays:
        if a is None:
            h.update(b"none;")
            continue
        a = np.ascontiguousarray(a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a))
        h.update(f"{a.dtype.str}{a.shape};".encode())
        h.update(a.tobytes())
    return h.hexdigest()


@functools.cache
def versions() -> dict[str, str]:
    """The versions that can change a cached result: the lab and the libraries that compute it."""
    from importlib import metadata

    import atld

    out = {"atld": atld.__version__, "torch": torch.__version__, "numpy": np.__version__}
    for dist in ("scikit-learn", "umap-learn", "scipy"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "none"
    return out


def key_text(**parts) -> str:
    """The full key of an entry: the cache's version, `versions()` and JSON-serialisable `parts`."""
    return json.dumps({"version": CACHE_VERSION, "versions": versions(), **parts}, sort_keys=True, default=str)


def cache_key(**parts) -> str:
    """A stable hex key (the file name) for JSON-serialisable `parts`."""
    return hashlib.sha256(key_text(**parts).encode()).hexdigest()[:40]


class LatentCache:
    """Get-or-compute for latents (`latents`), projections (`embedding`) and gap numbers (`gap`).
    `enabled=False` computes every time (same API)."""

    def __init__(self, directory: str | os.PathLike | None = None, enabled: bool = True):
        self.directory = Path(directory).expanduser() if directory is not None else default_cache_dir()
        self.enabled = enabled
        self.hits = self.misses = 0

    # ------------------------------------------------------------------ storage

    def _path(self, text: str, suffix: str) -> Path:
        return self.directory / f"{hashlib.sha256(text.encode()).hexdigest()[:40]}{suffix}"

    def _load(self, path: Path, parse: Callable[[bytes], object], check: Callable[[object], bool]):
        """The entry at `path` if it can be read, parsed and passes `check`; else None (a miss).
        Entries are data, and any failure to read one only means it is not usable."""
        if not self.enabled or not path.is_file():
            return None
        try:
            value = parse(read_regular(path, MAX_ENTRY_BYTES, DataError, path.name))
            if check(value):
                self.hits += 1
                return value
        except Exception:  # noqa: BLE001 - a corrupt, truncated or foreign entry is a miss, never an error
            pass
        with contextlib.suppress(OSError):
            path.unlink()
        return None

    def _store(self, path: Path, data: bytes) -> None:
        """Write an entry atomically; a cache that cannot be written (full, read-only) is skipped."""
        if self.enabled:
            with contextlib.suppress(OSError):
                path.parent.mkdir(parents=True, exist_ok=True)
                atomic_write(path, data)

    def arrays(self, parts: dict, compute: Callable[[], dict[str, np.ndarray]],
               check: Callable[[dict[str, np.ndarray]], bool] = lambda a: True) -> dict[str, np.ndarray]:
        """Arrays stored under the key of `parts` (carrying exactly that key, and passing `check`),
        or `compute()`'s result (then stored with its key)."""
        text = key_text(**parts)
        path = self._path(text, ".npz")

        def bound(a: dict) -> bool:
            return str(a.pop(KEY_FIELD, "")) == text and check(a)

        out = self._load(path, _parse_npz, bound)
        if out is None:
            self.misses += 1
            out = compute()
            self._store(path, npz_bytes({**out, KEY_FIELD: np.array(text)}, compress=False))
        return out

    def json(self, parts: dict, compute: Callable[[], dict], check: Callable[[dict], bool] = lambda d: True) -> dict:
        """A JSON object stored under the key of `parts` (carrying exactly that key, and passing
        `check`), or `compute()`'s result (then stored with its key)."""
        text = key_text(**parts)
        path = self._path(text, ".json")
        entry = self._load(path, lambda data: json.loads(data),
                           lambda v: isinstance(v, dict) and v.get(KEY_FIELD) == text
                           and isinstance(v.get("value"), dict) and check(v["value"]))
        if entry is not None:
            return entry["value"]
        self.misses += 1
        out = compute()
        self._store(path, json.dumps({KEY_FIELD: text, "value": out}, allow_nan=True).encode())
        return out

    # ------------------------------------------------------------------ computations

    def latents(self, run, x: torch.Tensor, y: torch.Tensor, attack: AttackConfig | None, batch_size: int = 256,
                device: str | torch.device = "cpu", seed: int = 0) -> LatentSet:
        """`extract_latents` with a generator seeded by `seed`, cached when the run has a hash."""
        device = torch.device(device)

        def compute() -> dict[str, np.ndarray]:
            generator = torch.Generator(device=device).manual_seed(seed)
            return extract_latents(run, x, y, attack, batch_size, device, generator).arrays()

        model_hash = getattr(run, "model_hash", "")
        if not model_hash:  # an in-memory model has no identity to key on
            return LatentSet.from_arrays(compute(), attack)
        parts = dict(kind="latents", model=model_hash, data=digest(x, y),
                     attack=None if attack is None else dataclasses.asdict(attack),
                     seed=seed, batch_size=batch_size, device=device.type)
        return LatentSet.from_arrays(self.arrays(parts, compute, lambda a: _latents_fit(a, len(y))), attack)

    def embedding(self, embedder: Embedder, z_nat, z_pert, labels=None) -> np.ndarray:
        """`embedder.fit(z_nat, z_pert, labels).embedding_`, cached by the inputs and parameters.
        (A cache hit returns the array only: the fitted estimator is not stored.)"""
        parts = dict(kind="embedding", inputs=digest(z_nat, z_pert, labels), params=embedder.get_params())
        rows = len(z_nat) + (0 if z_pert is None else len(z_pert))
        return self.arrays(parts, lambda: {"embedding": embedder.fit(z_nat, z_pert, labels).embedding_},
                           lambda a: a["embedding"].shape == (rows, embedder.n_components))["embedding"]

    def gap(self, z_nat, z_pert, labels=None, d_nat=None, d_pert=None, **kwargs) -> dict:
        """`gap_numbers(...)`, cached by the inputs and keyword arguments."""
        parts = dict(kind="gap", inputs=digest(z_nat, z_pert, labels, d_nat, d_pert), params=kwargs)
        return self.json(parts, lambda: gap_numbers(z_nat, z_pert, labels, d_nat, d_pert, **kwargs),
                         lambda d: set(MEASURE_KEYS) <= set(d) and isinstance(d.get("per_class"), list))


def _parse_npz(data: bytes) -> dict[str, np.ndarray]:
    return parse_npz(data, MAX_ENTRY_BYTES)


def _latents_fit(arrays: dict[str, np.ndarray], n: int) -> bool:
    """A cached LatentSet must hold every field, each with one row per image."""
    required = ("images_nat", "images_pert", "logits_nat", "logits_pert", "features_nat", "features_pert", "labels",
                "pred_nat", "pred_pert")
    return all(k in arrays and len(arrays[k]) == n for k in required) and \
        all(len(arrays[k]) == n for k in ("d_nat", "d_pert") if k in arrays)
