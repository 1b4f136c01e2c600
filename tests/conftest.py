"""Shared test setup: one intra-op thread (the test models are tiny: a second OpenMP thread only
spins, and costs 5-10x CPU on a busy machine), and private caches."""

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test writes its dataset/latent caches under a temporary folder, never ~/.cache."""
    monkeypatch.setenv("ATLD_CACHE", str(tmp_path_factory.getbasetemp() / "atld-cache"))
