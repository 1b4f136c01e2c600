"""Shared fixtures for the app tests (tests/test_app*.py, tests/test_browser*.py): two tiny
digits checkpoints trained here (so the tests never depend on the shipped ones), and the
environment the app reads (checkpoint / runs directories, no UMAP warm-up, one torch thread)."""

from __future__ import annotations

import pytest
import torch

from atld.train import TrainConfig, train

# natural: enough epochs at a high lr to classify digits well (attacks then have something to
# flip); atld: one epoch is enough to have a discriminator for IMT and D scores.
APP_RUNS = {
    "digits-natural": TrainConfig(method="natural", epochs=4, lr=0.05, eval_limit=0, device="cpu", seed=0),
    "digits-atld": TrainConfig(method="atld", epochs=1, lr=0.05, eval_limit=0, device="cpu", seed=0),
}


@pytest.fixture(scope="session")
def app_checkpoints(tmp_path_factory):
    """A directory holding the two runs of APP_RUNS (trained once per test session)."""
    root = tmp_path_factory.mktemp("app-checkpoints")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # two spinning threads are slower on a shared 2-core machine
    try:
        for name, config in APP_RUNS.items():
            train(config, run_dir=root / name, name=name)
    finally:
        torch.set_num_threads(threads)
    return root


@pytest.fixture
def app_env(app_checkpoints, tmp_path, monkeypatch):
    """Point the app at the test checkpoints and an empty runs directory; returns the runs dir."""
    runs = tmp_path / "runs"
    monkeypatch.setenv("ATLD_CHECKPOINTS_DIR", str(app_checkpoints))
    monkeypatch.setenv("ATLD_RUNS_DIR", str(runs))
    monkeypatch.setenv("ATLD_UMAP_WARMUP", "0")
    monkeypatch.setenv("ATLD_TORCH_THREADS", "1")
    return runs
