"""A disk cache for latents, projections and gap numbers, so that repeating a request is instant.

Keys: latents are keyed by (checkpoint hash = `LoadedRun.model_hash`, a SHA-256 of the image
and label tensors, the attack config, the seed, batch size and device type); projections and gap
numbers by a SHA-256 of their input arrays plus every parameter. The input arrays already depend
on the checkpoint, data and attack, so a projection is never served for other latents.

Storage is data, never code: arrays as `.npz` read with `allow_pickle=False`, numbers as JSON.
Files are written whole to a temporary name and renamed, so a reader never sees half a file; an
unreadable entry is treated as a miss and rewritten.

Location: `directory`, else $ATLD_CACHE/latent, else ~/.cache/atld/latent.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from atld.attacks import AttackConfig
from atld.latent.embed import Embedder
from atld.latent.extract import LatentSet, extract_latents
from atld.latent.gap import gap_numbers

CACHE_VERSION = 1  # bump when a cached computation changes meaning


def default_cache_dir() -> Path:
    return Path(os.environ.get("ATLD_CACHE", Path.home() / ".cache" / "atld")).expanduser() / "latent"


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


def cache_key(**parts) -> str:
    """A stable hex key for JSON-serialisable `parts`."""
    text = json.dumps({"version": CACHE_VERSION, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:40]


class LatentCache:
    """Get-or-compute for latents (`latents`), projections (`embedding`) and gap numbers (`gap`).
    `enabled=False` computes every time (same API)."""

    def __init__(self, directory: str | os.PathLike | None = None, enabled: bool = True):
        self.directory = Path(directory).expanduser() if directory is not None else default_cache_dir()
        self.enabled = enabled
        self.hits = self.misses = 0

    # ------------------------------------------------------------------ storage

    def _path(self, key: str, suffix: str) -> Path:
        return self.directory / f"{key}{suffix}"

    def _write(self, path: Path, write: Callable[[object], None]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
        try:
            with os.fdopen(fd, "wb") as fh:
                write(fh)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def arrays(self, key: str, compute: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        """Arrays stored under `key`, or `compute()`'s result (then stored)."""
        path = self._path(key, ".npz")
        if self.enabled and path.is_file():
            try:
                with np.load(path, allow_pickle=False) as z:
                    out = {k: z[k] for k in z.files}
                self.hits += 1
                return out
            except (OSError, ValueError, EOFError):
                path.unlink(missing_ok=True)
        self.misses += 1
        out = compute()
        if self.enabled:
            self._write(path, lambda fh: np.savez(fh, **out))
        return out

    def json(self, key: str, compute: Callable[[], dict]) -> dict:
        """A JSON object stored under `key`, or `compute()`'s result (then stored)."""
        path = self._path(key, ".json")
        if self.enabled and path.is_file():
            try:
                out = json.loads(path.read_text())
                self.hits += 1
                return out
            except (OSError, ValueError):
                path.unlink(missing_ok=True)
        self.misses += 1
        out = compute()
        if self.enabled:
            self._write(path, lambda fh: fh.write(json.dumps(out, allow_nan=True).encode()))
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
        key = cache_key(kind="latents", model=model_hash, data=digest(x, y),
                        attack=None if attack is None else dataclasses.asdict(attack),
                        seed=seed, batch_size=batch_size, device=device.type)
        return LatentSet.from_arrays(self.arrays(key, compute), attack)

    def embedding(self, embedder: Embedder, z_nat, z_pert, labels=None) -> np.ndarray:
        """`embedder.fit(z_nat, z_pert, labels).embedding_`, cached by the inputs and parameters.
        (A cache hit returns the array only: the fitted estimator is not stored.)"""
        key = cache_key(kind="embedding", inputs=digest(z_nat, z_pert, labels), params=embedder.get_params())
        return self.arrays(key, lambda: {"embedding": embedder.fit(z_nat, z_pert, labels).embedding_})["embedding"]

    def gap(self, z_nat, z_pert, labels=None, d_nat=None, d_pert=None, **kwargs) -> dict:
        """`gap_numbers(...)`, cached by the inputs and keyword arguments."""
        key = cache_key(kind="gap", inputs=digest(z_nat, z_pert, labels, d_nat, d_pert), params=kwargs)
        return self.json(key, lambda: gap_numbers(z_nat, z_pert, labels, d_nat, d_pert, **kwargs))
