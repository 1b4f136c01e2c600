"""The optimisation settings of TrainConfig: per-dataset recipes, the learning-rate schedules, the
ε ramp, the optimizer choice, and old cards written before these fields existed."""

from __future__ import annotations

import json
import math

import pytest
import torch

from atld.config.train import TrainConfig
from atld.vocab import LrSchedule, Optimizer
from atld.errors import ConfigError
from atld.methods import METHODS
from atld.runs.store import load_checkpoint
from atld.train.optim import learning_rate
from atld.train.trainer import train, training_epsilon
from tests.support import SHIPPED


def test_digits_keeps_the_settings_its_shipped_models_were_trained_with():
    r = TrainConfig(dataset="digits").resolved()
    assert (r.arch, r.optimizer, r.lr, r.weight_decay, r.batch_size, r.lr_schedule, r.lr_warmup_epochs,
            r.epsilon_ramp_epochs) == ("small-cnn", "sgd", 0.1, 2e-4, 50, "step", 0.0, 0.0)
    assert [learning_rate(r, e) for e in (0, 14, 15, 21, 22, 29)] == pytest.approx([0.1, 0.1, 0.01, 0.01, 1e-3, 1e-3])


@pytest.mark.parametrize("dataset, ramp, eps", [("mnist", 2.0, 0.3), ("fashion-mnist", 1.0, 0.1)])
def test_mnist_recipe(dataset, ramp, eps):
    r = TrainConfig(dataset=dataset, method="pgd-at", epochs=6).resolved()
    assert (r.arch, r.optimizer, r.lr, r.weight_decay, r.batch_size, r.lr_schedule) == \
        ("fast-cnn", Optimizer.ADAM, 5e-3, 0.0, 100, LrSchedule.ONE_CYCLE)
    assert r.lr_warmup_epochs == pytest.approx(0.4 * 6) and r.epsilon_ramp_epochs == ramp
    assert r.epsilon == eps and r.pgd_step_size == pytest.approx(eps / 4) and r.pgd_steps == 10


@pytest.mark.parametrize("dataset", ["cifar10", "cifar10-exact"])
def test_cifar10_recipe(dataset):
    r = TrainConfig(dataset=dataset, method="pgd-at").resolved()
    assert (r.arch, r.optimizer, r.lr, r.momentum, r.weight_decay, r.batch_size, r.lr_schedule,
            r.epsilon_ramp_epochs) == ("convnet-32", "sgd", 0.05, 0.9, 5e-4, 32, "one-cycle", 3.0)


def test_given_values_override_the_recipe():
    r = TrainConfig(dataset="mnist", optimizer="sgd", lr=0.01, batch_size=64, lr_schedule="cosine",
                    lr_warmup_epochs=0.0, epsilon_ramp_epochs=0.0, weight_decay=1e-4).resolved()
    assert (r.optimizer, r.lr, r.batch_size, r.lr_schedule, r.lr_warmup_epochs, r.epsilon_ramp_epochs,
            r.weight_decay) == ("sgd", 0.01, 64, "cosine", 0.0, 0.0, 1e-4)


def test_one_cycle_peaks_at_the_warm_up_and_cosine_ends_at_zero():
    one = TrainConfig(epochs=10, lr=0.01, lr_schedule="one-cycle", lr_warmup_epochs=4.0)
    values = [learning_rate(one, t / 10) for t in range(101)]
    assert max(values) == pytest.approx(0.01) and values.index(max(values)) == 40  # the peak, at 4 epochs
    assert learning_rate(one, 0.0) == 0 and learning_rate(one, 2.0) == pytest.approx(0.005)
    assert learning_rate(one, 7.0) == pytest.approx(0.005) and learning_rate(one, 10.0) == pytest.approx(0.0)
    assert all(a <= b for a, b in zip(values[:41], values[1:41]))
    assert all(a >= b for a, b in zip(values[40:], values[41:]))
    cos = TrainConfig(epochs=10, lr=1.0, lr_schedule="cosine", lr_warmup_epochs=0.0)
    assert learning_rate(cos, 0.0) == 1.0 and learning_rate(cos, 10.0) == pytest.approx(0.0, abs=1e-12)
    assert learning_rate(cos, 2.5) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.25)))
    assert learning_rate(TrainConfig(lr=0.3, lr_schedule="constant"), 17.2) == 0.3


def test_epsilon_ramps_linearly_then_stays():
    c = TrainConfig(dataset="mnist", epsilon_ramp_epochs=2.0)
    assert [training_epsilon(c, t) for t in (0.0, 0.5, 1.0, 2.0, 5.0)] == pytest.approx([0.0, 0.075, 0.15, 0.3, 0.3])
    assert training_epsilon(TrainConfig(dataset="mnist", epsilon_ramp_epochs=0.0), 0.0) == 0.3


@pytest.mark.parametrize("bad", [dict(optimizer="rmsprop"), dict(lr_schedule="linear"), dict(lr=-1.0),
                                 dict(epsilon_ramp_epochs=-1.0), dict(epochs=2, lr_warmup_epochs=3.0),
                                 dict(epsilon_ramp_epochs=float("nan")), dict(batch_size=0),
                                 dict(stop_on_collapse="yes")])
def test_bad_optimisation_settings_are_refused(bad):
    with pytest.raises(ConfigError):
        TrainConfig(**bad)


def test_the_trainer_ramps_epsilon_and_lr_per_step(small_digits, monkeypatch):
    seen = []
    real = METHODS["pgd-at"]

    def spy(ctx, x, y):
        seen.append((ctx.step_epsilon, ctx.optimizer.param_groups[0]["lr"]))
        return real.step(ctx, x, y)

    monkeypatch.setitem(METHODS, "pgd-at", real.__class__(**{**real.__dict__, "step": spy}))
    config = TrainConfig(method="pgd-at", epochs=2, batch_size=50, epsilon_ramp_epochs=1.0, eval_limit=0,
                         device="cpu", optimizer="adam", lr=1e-3, lr_schedule="one-cycle", lr_warmup_epochs=1.0)
    result = train(config, data=small_digits(200, 40))
    steps = len(seen) // 2
    eps = [e for e, _ in seen]
    assert eps[:steps] == pytest.approx([0.2 * (i + 0.5) / steps for i in range(steps)])  # per step, to ε = 0.2
    assert eps[steps:] == [0.2] * steps
    lrs = [lr for _, lr in seen]
    assert lrs[:steps] == pytest.approx([1e-3 * (i + 0.5) / steps for i in range(steps)])  # warm-up to the peak
    assert lrs[steps:] == sorted(lrs[steps:], reverse=True) and lrs[-1] < 1e-3 / steps
    assert isinstance(result.classifier.head, torch.nn.Linear)
    assert [m["train_epsilon"] for m in result.card["metrics"]] == pytest.approx([0.2 * (steps - 0.5) / steps, 0.2])


@pytest.mark.parametrize("optimizer, kind", [("sgd", torch.optim.SGD), ("adam", torch.optim.Adam)])
def test_optimizer_choice_trains_saves_and_resumes(small_digits, tmp_path, optimizer, kind, monkeypatch):
    made = []
    real = METHODS["natural"]

    def spy(ctx, x, y):
        made.append(type(ctx.optimizer))
        return real.step(ctx, x, y)

    monkeypatch.setitem(METHODS, "natural", real.__class__(**{**real.__dict__, "step": spy}))
    data = small_digits(200, 40)
    # 8 steps barely move SGD at this lr: the loss stays near ln 10, which is not what this test is about
    config = TrainConfig(method="natural", arch="fast-cnn", epochs=1, optimizer=optimizer, lr=1e-3, eval_limit=0,
                         device="cpu", stop_on_collapse=False)
    train(config, data=data, run_dir=tmp_path / "run")
    resumed = train(config.with_overrides(epochs=2), data=data, run_dir=tmp_path / "run", resume=True)
    assert set(made) == {kind} and resumed.card["epochs_done"] == 2
    assert resumed.card["config"]["optimizer"] == optimizer


NEW_FIELDS = ("optimizer", "lr_schedule", "lr_warmup_epochs", "epsilon_ramp_epochs", "stop_on_collapse")


def test_an_old_card_without_the_new_fields_loads_with_the_settings_it_was_trained_with():
    shipped = SHIPPED / "digits-atld"  # trained before these fields existed
    card = json.loads((shipped / "card.json").read_text())
    assert not set(NEW_FIELDS) & set(card["config"])
    run = load_checkpoint(shipped)
    r = run.config.resolved()
    assert (r.optimizer, r.lr_schedule, r.lr_warmup_epochs, r.epsilon_ramp_epochs) == ("sgd", "step", 0.0, 0.0)
    assert (r.arch, r.lr, r.batch_size) == (card["arch"], card["config"]["lr"], card["config"]["batch_size"])
    # an MNIST card of that age: its explicit lr / batch size, and SGD with step decay, not today's Adam recipe
    config = {**{k: v for k, v in card["config"].items() if k not in NEW_FIELDS}, "dataset": "mnist", "epsilon": 0.3}
    old = TrainConfig.from_dict(config).resolved()
    assert (old.optimizer, old.lr_schedule, old.epsilon_ramp_epochs) == ("sgd", "step", 0.0)
    assert (old.lr, old.batch_size) == (card["config"]["lr"], card["config"]["batch_size"])
