"""Digits models for the attack / inference / evaluation tests (issue 3), built once per process.

`natural_run()`: a small CNN trained naturally with Adam for a few epochs (a couple of seconds),
saved and loaded back through atld.checkpoints. `atld_run()`: the shipped `checkpoints/digits-atld`
when it is there; otherwise the natural classifier with a discriminator trained on it the ATLD
way (natural logits vs logits of ATLD's label-free perturbation), which is all IMT needs.
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

from atld.checkpoints import LoadedRun, load_checkpoint, save_checkpoint
from atld.data import as_float01, load_dataset
from atld.models import Discriminator, build_classifier
from atld.train.config import TrainConfig
from atld.train.methods.atld import atld_perturbation

# the shipped checkpoints; ATLD_TEST_CHECKPOINTS points elsewhere (e.g. to try other trained runs)
SHIPPED = Path(os.environ.get("ATLD_TEST_CHECKPOINTS", Path(__file__).resolve().parents[1] / "checkpoints"))
_TMP = Path(tempfile.mkdtemp(prefix="atld-eval-tests-"))
atexit.register(shutil.rmtree, _TMP, ignore_errors=True)


@functools.lru_cache(maxsize=None)
def digits():
    return load_dataset("digits")


def digits_batch(n: int = 64):
    """The first n digits test images (float [n, 1, 8, 8] in [0, 1]) and labels."""
    data = digits()
    return as_float01(data.x_test[:n]), data.y_test[:n]


def _card(config: TrainConfig) -> dict:
    config = config.resolved()
    return {"name": None, "method": config.method, "dataset": config.dataset, "arch": config.arch,
            "config": config.to_dict(), "seed": config.seed, "epochs_done": config.epochs,
            "metrics": [], "status": "finished"}


@functools.lru_cache(maxsize=None)
def natural_run() -> LoadedRun:
    config = TrainConfig(method="natural", epochs=3, eval_limit=0, device="cpu")
    torch.manual_seed(0)
    data = digits()
    f = build_classifier("small-cnn", data.spec)
    opt = torch.optim.Adam(f.parameters(), lr=3e-3)
    x, y = as_float01(data.x_train), data.y_train
    gen = torch.Generator().manual_seed(0)
    for _ in range(config.epochs):
        for idx in torch.randperm(len(y), generator=gen).split(64):
            opt.zero_grad()
            F.cross_entropy(f(x[idx]), y[idx]).backward()
            opt.step()
    run_dir = _TMP / "digits-natural"
    save_checkpoint(run_dir, _card(config), f)
    return load_checkpoint(run_dir)


@functools.lru_cache(maxsize=None)
def atld_run() -> LoadedRun:
    shipped = SHIPPED / "digits-atld"
    if (shipped / "card.json").is_file():
        return load_checkpoint(shipped)
    config = TrainConfig(method="atld", epochs=4, eval_limit=0, device="cpu")
    base = natural_run()
    data = digits()
    torch.manual_seed(0)
    f = build_classifier("small-cnn", data.spec)
    f.load_state_dict(base.classifier.state_dict())
    f.eval()
    d = Discriminator(10, config.discriminator_spec())
    opt = torch.optim.SGD(d.parameters(), lr=0.05, momentum=0.9)
    x = as_float01(data.x_train)
    gen = torch.Generator().manual_seed(1)
    for _ in range(1):
        for idx in torch.randperm(len(x), generator=gen).split(64):
            with torch.no_grad():
                z_nat = f(x[idx])
            d.train()
            x_pert = atld_perturbation(f, d, x[idx], z_nat, data.spec.epsilon, gen)
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
    run_dir = _TMP / "digits-atld"
    save_checkpoint(run_dir, _card(config), f, d)
    return load_checkpoint(run_dir)
