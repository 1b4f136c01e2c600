"""Device choice: CUDA when present, else CPU; always overridable, never chosen at import."""

from __future__ import annotations

import torch

from atld.vocab import device_name
from atld.errors import ConfigError


def resolve_device(name: str = "auto") -> torch.device:
    """Map "auto" | "cpu" | "cuda" | "cuda:N" to a torch.device, checking that it exists."""
    name = device_name(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():  # "cuda" or "cuda:N"
        raise ConfigError(f"device {name!r} asked for, but CUDA is not available here; use --device cpu")
    return torch.device(name)
