"""Shared test setup: keep torch to the CI machine's two cores and make runs deterministic."""

import os

import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test writes its dataset/latent caches under a temporary folder, never ~/.cache."""
    monkeypatch.setenv("ATLD_CACHE", str(tmp_path_factory.getbasetemp() / "atld-cache"))
