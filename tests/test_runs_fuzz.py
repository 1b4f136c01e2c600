"""Random mutations of a valid run, re-hashed as an attacker would (hypothesis): the card (any
value at any place, keys added and removed) and the training state (tensors of other shapes,
dtypes and values, keys added, removed and renamed).

Each example must end in success or a one-line user error, and never in a crash (another
exception, or a fused optimizer kernel writing past a buffer), a hang (a 60-second alarm per
example), an allocation over the dataset's parameter budget (every model built is measured
against it before it exists), or a changed file outside the run directory.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import signal
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

import atld.runs.store as store
import atld.train.trainer as trainer
from atld.config.train import TrainConfig
from atld.errors import ATLDError
from atld.evaluate import masking_findings
from atld.models.discriminator import discriminator_params
from atld.models.registry import build_classifier, build_discriminator, classifier_params
from atld.runs.card import CARD
from atld.ui.runs import card_of
from atld.ui.display import card_summary, evaluation_frame, metrics_frame

CASE = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.integers(-3, 3), st.just(2**64), st.just(10**400),
              st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8),
              st.sampled_from(["atld", "natural", "wrn-994-20", "small-cnn", "digits", "model.safetensors", "../x",
                               "\x1b[2J", "![x](http://x/y.png)", "finished", "atld-", "direct"])),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=6)


@pytest.fixture(scope="module")
def base_run(tmp_path_factory, small_digits) -> Path:
    run_dir = tmp_path_factory.mktemp("fuzz-base") / "run"
    trainer.train(TrainConfig(method="atld", epochs=1, batch_size=50, eval_limit=0, device="cpu"),
                  data=small_digits(100, 20), run_dir=run_dir)
    return run_dir


@contextlib.contextmanager
def time_limit(seconds: int):
    def alarm(signum, frame):
        raise TimeoutError(f"hung for {seconds} s")
    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.fixture
def budget_guard(monkeypatch):
    """Fail the example if a model over the budget is about to be built (checked before building)."""
    def guarded_classifier(arch, spec):
        assert classifier_params(arch, spec) <= spec.max_params, f"about to build {arch} over the budget"
        return build_classifier(arch, spec)

    def guarded_discriminator(spec, dspec):
        assert discriminator_params(spec.num_classes, dspec) <= spec.max_params, "about to build a huge D"
        return build_discriminator(spec, dspec)

    for module in (store, trainer):
        monkeypatch.setattr(module, "build_classifier", guarded_classifier)
        monkeypatch.setattr(module, "build_discriminator", guarded_discriminator)


def _snapshot(root: Path, skip: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not p.is_symlink() and skip not in p.parents}


def _rehash(d: Path) -> None:
    card = json.loads((d / CARD).read_text())
    files = card.get("files") if isinstance(card, dict) else None
    if isinstance(files, dict) and isinstance(card.get("sha256"), dict):
        card["sha256"] = {n: hashlib.sha256((d / n).read_bytes()).hexdigest() for n in files.values()
                          if isinstance(n, str) and (d / n).is_file() and not (d / n).is_symlink()}
    (d / CARD).write_text(json.dumps(card))


def _paths(node, prefix=()):
    """Every place in a JSON document (dict keys and list indices, to depth 4)."""
    yield prefix
    if len(prefix) < 4:
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, value in items:
            yield from _paths(value, (*prefix, key))


def _one_line_or_success(action) -> object:
    try:
        return action()
    except ATLDError as exc:
        assert str(exc) and "\n" not in str(exc) and "\x1b" not in str(exc), str(exc)
        return None


@settings(CASE, max_examples=150)
@given(data=st.data())
def test_a_randomly_edited_card_is_refused_in_one_line_or_loads(base_run, tmp_path_factory, budget_guard, data):
    root = tmp_path_factory.mktemp("card-fuzz")
    d = root / "run"
    shutil.copytree(base_run, d)
    card = json.loads((d / CARD).read_text())
    for _ in range(data.draw(st.integers(1, 3))):
        places = list(_paths(card))
        where = data.draw(st.sampled_from(places))
        op = data.draw(st.sampled_from(["replace", "delete", "add"]))
        if not where:
            card = data.draw(JSON) if op == "replace" else card
            continue
        *parent_path, key = where
        parent = card
        for k in parent_path:
            parent = parent[k]
        if op == "replace":
            parent[key] = data.draw(JSON)
        elif op == "delete":
            del parent[key]
        elif isinstance(parent[key], dict):
            parent[key][data.draw(st.text(max_size=6))] = data.draw(JSON)
    (d / CARD).write_text(json.dumps(card))
    if data.draw(st.booleans()):
        _rehash(d)
    before = _snapshot(root, d)
    with time_limit(60):
        run = _one_line_or_success(lambda: store.load_checkpoint(d, with_train_state=True))
        shown = card_of(d)
        if shown is not None:  # a card the app shows: every view of it renders
            card_summary(shown), metrics_frame(shown["metrics"]), evaluation_frame(shown.get("evaluations"))
            masking_findings((shown.get("evaluations") or {}).get("rows", []))
    if run is not None:
        assert sum(p.numel() for p in run.classifier.parameters()) <= run.spec.max_params
    assert _snapshot(root, d) == before


_STATE_DTYPES = [torch.float32, torch.float64, torch.float16, torch.int64, torch.uint8, torch.int32]


@st.composite
def _tensor(draw, like: torch.Tensor | None):
    shape = list(like.shape) if like is not None else []
    choice = draw(st.sampled_from(["same-shape", "numel+1", "numel-1", "scalar", "random-shape"]))
    if choice == "numel+1" and shape:
        shape = [int(torch.tensor(shape).prod()) + 1]
    elif choice == "numel-1" and shape:
        shape = [max(int(torch.tensor(shape).prod()) - 1, 0)]
    elif choice == "scalar":
        shape = []
    elif choice == "random-shape":
        shape = draw(st.lists(st.integers(0, 9), max_size=4))
    dtype = like.dtype if like is not None and draw(st.booleans()) else draw(st.sampled_from(_STATE_DTYPES))
    fill = draw(st.sampled_from([0.0, 1.0, -3.5, 1e30, float("nan"), float("inf")]))
    if not dtype.is_floating_point:
        fill = draw(st.integers(0, 255))
    if choice != "same-shape" or like is None:  # filled in float32 first: 1e30 becomes inf in float16
        return torch.full(shape, fill, dtype=torch.float32 if dtype.is_floating_point else dtype).to(dtype)
    return like.to(dtype) + torch.tensor(fill).to(dtype) if dtype.is_floating_point else like.to(dtype)


@settings(CASE, max_examples=40)
@given(data=st.data())
def test_a_randomly_edited_training_state_is_refused_or_resumes(base_run, tmp_path_factory, budget_guard,
                                                                small_digits, data):
    """The whole resume path: load, check against the optimizer, then one more epoch of training."""
    root = tmp_path_factory.mktemp("state-fuzz")
    d = root / "run"
    shutil.copytree(base_run, d)
    card = json.loads((d / CARD).read_text())
    path = d / card["files"]["train_state"]
    tensors = load_file(str(path))
    for _ in range(data.draw(st.integers(1, 3))):
        keys = sorted(tensors)
        op = data.draw(st.sampled_from(["replace", "delete", "add", "rename"]))
        key = data.draw(st.sampled_from(keys)) if keys else None
        if op == "replace" and key:
            tensors[key] = data.draw(_tensor(tensors[key]))
        elif op == "delete" and key:
            del tensors[key]
        elif op == "rename" and key:
            tensors[data.draw(st.sampled_from(["optim.classifier.99.momentum_buffer", "rng.generator", "x",
                                               "optim.discriminator.0.exp_avg", key + "x"]))] = tensors.pop(key)
        else:
            tensors[data.draw(st.text(min_size=1, max_size=12))] = data.draw(_tensor(None))
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))
    _rehash(d)
    before = _snapshot(root, d)
    config = TrainConfig.from_dict({**card["config"], "epochs": card["epochs_done"] + 1})
    with time_limit(60):
        _one_line_or_success(lambda: trainer.train(config, data=small_digits(100, 20), run_dir=d, resume=True))
    assert _snapshot(root, d) == before
