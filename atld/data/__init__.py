"""Datasets: a closed registry of names, each with its defaults, loaded whole as tensors.

Names are imported on first use (PEP 562), so `atld.data.registry`, `availability` and `samples`
stay torch-free for the app's torch-free start."""

from __future__ import annotations

from atld.lazy import lazy_exports

_EXPORTS = {
    "atld.data.augment": ("augment_batch",),
    "atld.data.loaders": ("ImageData", "as_float01", "load_dataset"),
    "atld.data.registry": ("DATASET_NAMES", "DATASETS", "DatasetSpec", "get_spec"),
}
__getattr__, __all__ = lazy_exports("atld.data", _EXPORTS)
