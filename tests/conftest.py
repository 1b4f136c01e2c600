"""Shared test setup and fixtures.

`_process_state` (autouse, every test): one intra-op torch thread before the test (the test models
are tiny: a second OpenMP thread only spins, and costs 5-10x CPU on a busy machine; exactness
tests compare against one-thread runs), private caches, and afterwards the process-global state a
test may change put back (torch's RNG, default dtype and grad mode, the working directory, the
SIGINT / SIGTERM handlers).

The models the tests share are trained once per session, here: `natural_run` (a small CNN trained
naturally with Adam, a couple of seconds), `atld_run` (the shipped `checkpoints/digits-atld` when
present, else that classifier with a discriminator trained the ATLD way), `latent_runs` (a
2-epoch classifier with and without a freshly initialised D) and `app_checkpoints` (two runs
trained through `train`, so the app tests never depend on the shipped ones).
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from atld.config.train import TrainConfig
from atld.data.loaders import ImageData, as_float01, load_dataset
from atld.data.registry import get_spec as load_spec
from atld.methods import atld_perturbation
from atld.models.registry import build_classifier, build_discriminator
from atld.runs.card import CARD
from atld.runs.store import LoadedRun, load_checkpoint, save_checkpoint
from atld.train.trainer import train

from tests.support import COLLAPSE_CLASS, REPO, SHIPPED  # noqa: F401 - COLLAPSE_CLASS: the collapse fixture's


@pytest.fixture(autouse=True)
def _process_state(tmp_path_factory, monkeypatch):
    torch.set_num_threads(1)
    rng, dtype, grad, cwd = torch.get_rng_state(), torch.get_default_dtype(), torch.is_grad_enabled(), os.getcwd()
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    monkeypatch.setenv("ATLD_CACHE", str(tmp_path_factory.getbasetemp() / "atld-cache"))
    yield
    torch.set_rng_state(rng)
    torch.set_default_dtype(dtype)
    torch.set_grad_enabled(grad)
    os.chdir(cwd)
    for s, handler in handlers.items():
        signal.signal(s, handler)


# ----------------------------------------------------------------------------- data

@pytest.fixture(scope="session")
def digits() -> ImageData:
    return load_dataset("digits")


@pytest.fixture(scope="session")
def small_digits(digits):
    """small_digits(n_train, n_test): the first images of each digits split, as an ImageData."""
    def make(n_train: int = 150, n_test: int = 40) -> ImageData:
        return ImageData(digits.spec, digits.x_train[:n_train], digits.y_train[:n_train], digits.x_test[:n_test],
                         digits.y_test[:n_test])
    return make


@pytest.fixture(scope="session")
def digits_batch(digits):
    """digits_batch(n): the first n digits test images (float [n, 1, 8, 8] in [0, 1]) and labels."""
    return lambda n=64: (as_float01(digits.x_test[:n]), digits.y_test[:n])


@pytest.fixture(scope="session")
def tiny_idx_set():
    """tiny_idx_set(raw_folder, n_train=7, n_test=3): writes a random MNIST-shaped idx set, gzipped
    as torchvision's mirrors serve it, into `raw_folder`; returns {file name: its bytes}."""
    import gzip
    import struct

    import numpy as np

    def write(raw: Path, n_train: int = 7, n_test: int = 3) -> dict[str, bytes]:
        raw.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(0)
        out = {}
        for prefix, n in (("train", n_train), ("t10k", n_test)):
            images = struct.pack(">IIII", 0x0803, n, 28, 28) + rng.integers(0, 256, (n, 28, 28), np.uint8).tobytes()
            labels = struct.pack(">II", 0x0801, n) + rng.integers(0, 10, n, np.uint8).tobytes()
            for name, payload in ((f"{prefix}-images-idx3-ubyte.gz", images),
                                  (f"{prefix}-labels-idx1-ubyte.gz", labels)):
                out[name] = gzip.compress(payload, mtime=0)
                (raw / name).write_bytes(out[name])
        return out
    return write


# ----------------------------------------------------------------------------- runs on disk

@pytest.fixture(scope="session")
def run_file():
    """run_file(run_dir, kind="model"): the path of the tensor file the run's card names."""
    def path(run_dir: Path, kind: str = "model") -> Path:
        return Path(run_dir) / json.loads((Path(run_dir) / CARD).read_text())["files"][kind]
    return path


def _card(config: TrainConfig, epochs: int) -> dict:
    config = config.resolved()
    return {"name": None, "method": config.method, "dataset": config.dataset, "arch": config.arch,
            "config": config.to_dict(), "seed": config.seed, "epochs_done": epochs, "metrics": [],
            "status": "finished"}


def _adam_classifier(digits: ImageData, epochs: int) -> torch.nn.Module:
    """A small CNN trained naturally with Adam (lr 3e-3, batch 64, seeded): fast and accurate."""
    torch.manual_seed(0)
    f = build_classifier("small-cnn", digits.spec)
    opt = torch.optim.Adam(f.parameters(), lr=3e-3)
    x, y = as_float01(digits.x_train), digits.y_train
    gen = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        for idx in torch.randperm(len(y), generator=gen).split(64):
            opt.zero_grad()
            F.cross_entropy(f(x[idx]), y[idx]).backward()
            opt.step()
    return f


@pytest.fixture(scope="session")
def natural_run(tmp_path_factory, digits) -> LoadedRun:
    """A naturally trained small CNN (3 epochs of Adam), saved and loaded back."""
    config = TrainConfig(method="natural", epochs=3, eval_limit=0, device="cpu")
    run_dir = save_checkpoint(tmp_path_factory.mktemp("natural") / "digits-natural", _card(config, 3),
                              _adam_classifier(digits, 3))
    return load_checkpoint(run_dir)


@pytest.fixture(scope="session")
def atld_run(tmp_path_factory, digits, natural_run) -> LoadedRun:
    """The shipped digits ATLD run; without it, the natural classifier with a discriminator trained
    the ATLD way (natural logits vs logits of ATLD's label-free perturbation), which is all IMT needs."""
    if (SHIPPED / "digits-atld" / CARD).is_file():
        return load_checkpoint(SHIPPED / "digits-atld")
    config = TrainConfig(method="atld", epochs=4, eval_limit=0, device="cpu")
    f = build_classifier("small-cnn", digits.spec)
    f.load_state_dict(natural_run.classifier.state_dict())
    f.eval()
    torch.manual_seed(0)
    d = build_discriminator(digits.spec, config.discriminator_spec())
    opt = torch.optim.SGD(d.parameters(), lr=0.05, momentum=0.9)
    x = as_float01(digits.x_train)
    gen = torch.Generator().manual_seed(1)
    for idx in torch.randperm(len(x), generator=gen).split(64):
        with torch.no_grad():
            z_nat = f(x[idx])
        d.train()
        x_pert = atld_perturbation(f, d, x[idx], z_nat, digits.spec.epsilon, gen)
        with torch.no_grad():
            z_pert = f(x_pert)
        n_logit, _ = d(z_nat)
        p_logit, _ = d(z_pert)
        loss = (F.binary_cross_entropy_with_logits(n_logit, torch.ones_like(n_logit))
                + F.binary_cross_entropy_with_logits(p_logit, torch.zeros_like(p_logit)))
        opt.zero_grad()
        loss.backward()
        opt.step()
    for p in f.parameters():
        p.grad = None
    run_dir = save_checkpoint(tmp_path_factory.mktemp("atld") / "digits-atld", _card(config, 4), f, d)
    return load_checkpoint(run_dir)


@pytest.fixture(scope="session")
def latent_runs(tmp_path_factory, digits) -> dict[bool, LoadedRun]:
    """{True: a 2-epoch classifier (about 85 % clean) with a freshly initialised D (card method
    "atld"), False: the same classifier as a "natural" run}, saved and loaded back."""
    f = _adam_classifier(digits, 2)
    root = tmp_path_factory.mktemp("latent-runs")
    out = {}
    for with_d in (True, False):
        config = TrainConfig(method="atld" if with_d else "natural", epochs=2, eval_limit=0, device="cpu")
        torch.manual_seed(1)
        d = build_discriminator(digits.spec, config.discriminator_spec()) if with_d else None
        out[with_d] = load_checkpoint(save_checkpoint(root / f"digits-{config.method}", _card(config, 2), f, d))
    return out


@pytest.fixture(scope="session")
def as_run(tmp_path_factory):
    """as_run(classifier, discriminator=None): a LoadedRun (digits, in memory) around any modules,
    e.g. models built to trigger a diagnostic; the card claims ATLD when a discriminator is given."""
    def make(classifier, discriminator=None) -> LoadedRun:
        config = TrainConfig(method="atld" if discriminator is not None else "natural", epochs=1, eval_limit=0,
                             device="cpu")
        card = {**_card(config, 1), "name": "built", "files": {"model": "model.safetensors"}, "sha256": {}}
        return LoadedRun(tmp_path_factory.mktemp("built"), card, config, classifier.eval(),
                         None if discriminator is None else discriminator.eval())
    return make


# ----------------------------------------------------------------------------- the app

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
    torch.set_num_threads(1)  # a session fixture may be built before the first test's _process_state
    for name, config in APP_RUNS.items():
        train(config, run_dir=root / name, name=name)
    return root


@pytest.fixture(scope="session")
def mnist_app_checkpoints(tmp_path_factory, app_checkpoints):
    """The app's test checkpoints plus an untrained `mnist-atld` run (small CNN with a
    discriminator): enough for the pages that read its card and the sample's test images."""
    import shutil

    root = tmp_path_factory.mktemp("mnist-app-checkpoints")
    for run in app_checkpoints.iterdir():
        shutil.copytree(run, root / run.name)
    config = TrainConfig(dataset="mnist", method="atld", epochs=1, eval_limit=0, device="cpu").resolved()
    torch.manual_seed(0)
    spec = load_spec("mnist")
    save_checkpoint(root / "mnist-atld", {**_card(config, 1), "name": "mnist-atld"},
                    build_classifier(config.arch, spec), build_discriminator(spec, config.discriminator_spec()))
    return root


@pytest.fixture
def app_env(app_checkpoints, tmp_path, monkeypatch):
    """Point the app at the test checkpoints and an empty runs directory; returns the runs dir."""
    runs = tmp_path / "runs"
    monkeypatch.setenv("ATLD_CHECKPOINTS_DIR", str(app_checkpoints))
    monkeypatch.setenv("ATLD_RUNS_DIR", str(runs))
    monkeypatch.setenv("ATLD_UMAP_WARMUP", "0")
    monkeypatch.setenv("ATLD_PREWARM", "0")  # each test asks for what it shows
    monkeypatch.setenv("ATLD_TORCH_THREADS", "1")
    return runs


# ----------------------------------------------------------------------------- collapse

COLLAPSE_FROM = 2  # the epoch (1-based) from which it does


@pytest.fixture
def collapsing_natural(monkeypatch):
    """Make the "natural" method collapse from epoch COLLAPSE_FROM on: after every real natural step
    of that epoch the classifier's head is set to always answer COLLAPSE_CLASS (zero weights, a
    one-hot bias), so the per-epoch evaluation really sees one class. Returns the steps per epoch
    counter (a list the fixture fills) for the test to size epochs."""
    from atld.methods import METHODS

    real = METHODS["natural"]
    calls = {"steps": 0, "epoch_steps": None}

    def step(ctx, x, y):
        out = real.step(ctx, x, y)
        calls["steps"] += 1
        if calls["epoch_steps"] is not None and calls["steps"] > (COLLAPSE_FROM - 1) * calls["epoch_steps"]:
            with torch.no_grad():
                ctx.classifier.head.weight.zero_()
                ctx.classifier.head.bias.copy_(F.one_hot(torch.tensor(COLLAPSE_CLASS), ctx.config.spec.num_classes)
                                               * 10.0)
        return out

    monkeypatch.setitem(METHODS, "natural", dataclasses.replace(real, step=step))
    return calls
