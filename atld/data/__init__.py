"""Datasets: a closed registry of names, each with its defaults, loaded whole as tensors."""

from atld.data.augment import augment_batch
from atld.data.loaders import ImageData, as_float01, load_dataset
from atld.data.registry import DATASET_NAMES, DATASETS, DatasetSpec, get_spec

__all__ = ["DATASETS", "DATASET_NAMES", "DatasetSpec", "ImageData", "as_float01", "augment_batch",
           "get_spec", "load_dataset"]
