"""Input validation in one place.

1. Property tests (hypothesis): any value given to a config dataclass (TrainConfig, AttackConfig,
   EvalConfig), or to a run name, either builds a valid object or raises ConfigError; never
   another exception. The card path (`TrainConfig.from_dict`, JSON values) is covered the same way.
2. Attack invariants for random small models, inputs, ε, steps: ‖x_adv − x‖∞ ≤ ε + 1e-6 and
   x_adv in [0, 1].
3. A table of bad form values, each given to the CLI: exit 2, one "error:" line, nothing written.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from atld.attacks.gradient import AttackConfig, run_attack
from atld.cli import main as cli_main
from atld.config.eval import EvalConfig
from atld.config.fields import from_widget_values
from atld.config.latent import LatentConfig
from atld.config.train import TrainConfig
from atld.vocab import AttackKind
from atld.data.loaders import load_dataset
from atld.data.registry import DATASET_NAMES
from atld.errors import ATLDError, ConfigError, DataError
from atld.methods import METHOD_NAMES
from atld.runs.card import safe_run_name

ATTACK_KINDS = tuple(k.value for k in AttackKind)

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Values a form, a flag or a stranger's JSON card could carry.
WORDS = ["digits", "mnist", "cifar10", "atld", "natural", "pgd-at", "pgd", "cw", "fgsm", "small-cnn",
         "wrn-28-10", "wrn-1-1", "cpu", "cuda", "cuda:0", "auto", "bf16", "off", "code", "paper", "", " ",
         "../x", "/etc/passwd", "nan", "inf", "1e400", "0"]
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(-3, 3), st.just(10**400), st.just(-(10**400)),
    st.floats(allow_nan=True, allow_infinity=True), st.floats(-2, 2), st.floats(0, 1),
    st.text(max_size=12), st.sampled_from(WORDS))
ANY_VALUE = st.one_of(
    SCALARS, st.lists(SCALARS, max_size=4).map(tuple), st.lists(SCALARS, max_size=4),
    st.dictionaries(st.text(max_size=4), SCALARS, max_size=2))
JSON_VALUE = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.just(10**400), st.floats(), st.text(max_size=12),
              st.sampled_from(WORDS)),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=8)


def _field_names(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def _builds_or_config_error(build):
    """Call `build()`: a valid object, or ConfigError with a one-line message. Anything else fails."""
    try:
        return build()
    except ConfigError as exc:
        assert str(exc) and "\n" not in str(exc)
        return None


@FAST
@given(st.dictionaries(st.sampled_from(_field_names(TrainConfig)), ANY_VALUE, max_size=4))
def test_train_config_builds_or_raises_config_error(kwargs):
    config = _builds_or_config_error(lambda: TrainConfig(**kwargs))
    if config is not None:  # a config that builds is usable: its derived values are valid too
        assert config.dataset in DATASET_NAMES and config.method in METHOD_NAMES
        assert 0 <= config.resolved_epsilon <= 1 and config.epochs >= 1 and config.resolved_batch_size >= 1
        assert config.resolved().resolved() == config.resolved()
        assert TrainConfig.from_dict(config.to_dict()) == config


@FAST
@given(st.dictionaries(st.one_of(st.sampled_from(_field_names(TrainConfig)), st.text(max_size=8)),
                       JSON_VALUE, max_size=4))
def test_train_config_from_card_json_builds_or_raises_config_error(data):
    _builds_or_config_error(lambda: TrainConfig.from_dict(data))


@FAST
@given(JSON_VALUE)
def test_train_config_from_any_json_document(data):
    _builds_or_config_error(lambda: TrainConfig.from_dict(data))


@FAST
@given(st.one_of(st.sampled_from(ATTACK_KINDS), SCALARS),
       st.dictionaries(st.sampled_from(_field_names(AttackConfig)[1:]), ANY_VALUE, max_size=4))
def test_attack_config_builds_or_raises_config_error(kind, kwargs):
    kwargs.setdefault("epsilon", 0.1)
    config = _builds_or_config_error(lambda: AttackConfig(kind, **kwargs))
    if config is not None:
        assert 0 <= config.epsilon <= 1 and config.num_steps >= 1 and 0 <= config.alpha <= 1


@FAST
@given(st.dictionaries(st.sampled_from(_field_names(EvalConfig)), ANY_VALUE, max_size=4))
def test_eval_config_builds_or_raises_config_error(kwargs):
    _builds_or_config_error(lambda: EvalConfig(**kwargs))


@FAST
@given(st.dictionaries(st.sampled_from(_field_names(LatentConfig)), ANY_VALUE, max_size=4))
def test_latent_config_builds_or_raises_config_error(kwargs):
    _builds_or_config_error(lambda: LatentConfig(**kwargs))


_FORM_TEXT = st.one_of(st.text(max_size=16), st.sampled_from(WORDS + ["1e400", "9" * 5000, "0.5,2", "16,,32", "-0"]))


@FAST
@given(st.dictionaries(st.sampled_from(_field_names(TrainConfig)), st.one_of(_FORM_TEXT, SCALARS), max_size=5))
def test_app_form_values_build_or_raise_config_error(values):
    """What the app's training form sends (text boxes and widget values) goes through the same
    dataclass validation: a config, or a one-line ConfigError."""
    _builds_or_config_error(lambda: from_widget_values(TrainConfig, values))


@FAST
@given(st.one_of(st.text(max_size=80), st.text(alphabet="./\\-_aZ0 \x00~:", max_size=12), SCALARS))
def test_run_name_is_safe_or_refused(name):
    root = Path("/srv/atld/runs")
    checked = _builds_or_config_error(lambda: safe_run_name(name))
    if checked is not None:
        assert checked == name and "/" not in name and "\\" not in name and ".." not in name
        assert (root / name).resolve().parent == root  # stays directly under the runs directory


# ----------------------------------------------------------------------------- attack invariants

@settings(max_examples=40, deadline=None)
@given(kind=st.sampled_from(ATTACK_KINDS), epsilon=st.floats(0, 1), steps=st.integers(1, 4),
       step_size=st.one_of(st.none(), st.floats(0, 1)), rand_start=st.booleans(), batch=st.integers(1, 4),
       channels=st.integers(1, 3), size=st.sampled_from([4, 8]), saturate=st.booleans(),
       seed=st.integers(0, 2**16))
def test_attack_stays_in_the_ball_and_the_image_range(kind, epsilon, steps, step_size, rand_start, batch,
                                                      channels, size, saturate, seed):
    torch.manual_seed(seed)
    classes = 3
    model = nn.Sequential(nn.Conv2d(channels, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * size * size, classes))
    x = torch.rand(batch, channels, size, size)
    if saturate:  # pixels exactly at 0 and 1, where clipping matters most
        x = (x > 0.5).float()
    y = torch.randint(0, classes, (batch,))
    config = AttackConfig(kind, epsilon, steps=steps, step_size=step_size, random_start=rand_start)
    gen = torch.Generator().manual_seed(seed)
    x_adv = run_attack(model, x, y, config, generator=gen)
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype and not x_adv.requires_grad
    assert (x_adv - x).abs().max().item() <= epsilon + 1e-6
    assert x_adv.min().item() >= 0.0 and x_adv.max().item() <= 1.0
    assert all(p.grad is None for p in model.parameters())


# ----------------------------------------------------------------------------- bad form values

# (flags after `python -m atld train --quiet --device cpu --epochs 1 --out DIR`, expected words)
BAD_TRAIN_FLAGS = {
    "epsilon above 1": (["--epsilon", "1.5"], "epsilon must be in [0.0, 1.0]"),
    "epsilon negative": (["--epsilon", "-0.1"], "epsilon must be in"),
    "epsilon nan": (["--epsilon", "nan"], "epsilon must be finite"),
    "epsilon inf": (["--epsilon", "inf"], "epsilon must be finite"),
    "epochs 0": (["--epochs", "0"], "epochs must be >= 1"),
    "epochs negative": (["--epochs", "-3"], "epochs must be >= 1"),
    "epochs absurd": (["--epochs", "99999999"], "epochs must be <="),
    "epochs not a number": (["--epochs", "three"], "invalid int value"),
    "batch size 0": (["--batch-size", "0"], "batch size must be >= 1"),
    "batch size above the dataset": (["--batch-size", "5000"], "above the training set size"),
    "lr 0": (["--lr", "0"], "lr must be > 0"),
    "lr nan": (["--lr", "nan"], "lr must be finite"),
    "lr huge": (["--lr", "1e400"], "lr must be finite"),
    "momentum 1": (["--momentum", "1"], "momentum must be in"),
    "pgd steps 0": (["--pgd-steps", "0"], "pgd steps must be >= 1"),
    "pgd step size above 1": (["--pgd-step-size", "2"], "pgd step size must be in"),
    "label smoothing 1": (["--label-smoothing", "1"], "label smoothing must be < 1"),
    "s_max 0": (["--s-max", "0"], "s_max must be > 0"),
    "d updates 0": (["--d-updates", "0"], "d updates must be >= 1"),
    "d widths one layer": (["--d-widths", "16"], "discriminator widths"),
    "d widths absurd": (["--d-widths", "16,100000000"], "absurdly large"),
    "lr milestones not numbers": (["--lr-milestones", "a,b"], "comma-separated float"),
    "lr milestone above 1": (["--lr-milestones", "0.5,2"], "lr milestone must be in"),
    "seed negative": (["--seed", "-1"], "seed must be an integer in"),
    "seed 2^32": (["--seed", str(2**32)], "seed must be an integer in [0, 2^32)"),
    "seed 2^64": (["--seed", str(2**64)], "seed must be an integer in [0, 2^32)"),
    "batch size 1 with ATLD's discriminator": (["--batch-size", "1"], "batch size must be >= 2 for atld"),
    "a huge WideResNet": (["--arch", "wrn-994-20"], "parameters, over"),
    "a discriminator of 16 x 64 blocks of 8192": (["--d-widths", ",".join(["8192"] * 16), "--d-blocks", "64"],
                                                  "parameters, over"),
    "unknown dataset": (["--dataset", "imagenet"], "unknown dataset 'imagenet'"),
    "unknown method": (["--method", "fgsm"], "unknown method 'fgsm'"),
    "unknown arch": (["--arch", "resnet9000"], "unknown architecture"),
    "bad wide resnet": (["--arch", "wrn-1-1"], "bad WideResNet"),
    "unknown variant": (["--variant", "both"], "unknown variant"),
    "unknown amp": (["--amp", "fp8"], "unknown amp"),
    "unknown device": (["--device", "tpu"], "unknown device"),
    "cuda without a GPU": (["--device", "cuda:7"], "CUDA is not available"),
    "mnist without a data root": (["--dataset", "mnist"], "needs --data-root"),
    "mnist with a missing data root": (["--dataset", "mnist", "--data-root", "/nonexistent/atld"],
                                       "add --download"),
    "cifar10-exact with an empty data root": (["--dataset", "cifar10-exact", "--data-root", "{tmp}"],
                                              "no cifar10_exact_subsets.npz"),
    "out is an existing file": (["--out", "{tmp}/afile"], "not a directory"),
    "out below a file": (["--out", "{tmp}/afile/run"], "not a directory"),
    "out is the root folder": (["--out", "/"], "not a run directory of the lab"),
    "out is a folder that is not a run": (["--out", "{tmp}"], "not a run directory of the lab"),
    "unknown flag": (["--epsilonn", "0.1"], "unrecognized arguments"),
}


@pytest.mark.parametrize("case", list(BAD_TRAIN_FLAGS))
def test_bad_train_flag_is_one_line_and_writes_nothing(tmp_path, capsys, case, monkeypatch):
    if case == "cuda without a GPU" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    flags, expected = BAD_TRAIN_FLAGS[case]
    flags = [f.replace("{tmp}", str(tmp_path)) for f in flags]
    (tmp_path / "afile").write_text("not a run")
    out = tmp_path / "run"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ATLD_RUNS_DIR", str(tmp_path / "runs"))  # a default run directory would land here
    before = sorted(p.name for p in tmp_path.iterdir())
    argv = ["train", "--quiet", "--device", "cpu", "--epochs", "1", "--out", str(out), *flags]
    try:
        code = cli_main(argv)
    except SystemExit as exc:  # argparse errors (bad type, unknown flag) exit from parse_args
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert expected in lines[0], lines[0]
    assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before, "a bad input left files behind"


# Values the app's forms pass straight to the config dataclasses and the data loader.
BAD_API_VALUES = {
    "AttackConfig unknown attack": (lambda: AttackConfig("deepfool", 0.1), ConfigError),
    "AttackConfig epsilon 2": (lambda: AttackConfig("pgd", 2.0), ConfigError),
    "AttackConfig epsilon nan": (lambda: AttackConfig("pgd", math.nan), ConfigError),
    "AttackConfig epsilon as text": (lambda: AttackConfig("pgd", "0.1"), ConfigError),
    "AttackConfig steps 0": (lambda: AttackConfig("pgd", 0.1, steps=0), ConfigError),
    "AttackConfig steps 2.5": (lambda: AttackConfig("pgd", 0.1, steps=2.5), ConfigError),
    "AttackConfig step size negative": (lambda: AttackConfig("pgd", 0.1, step_size=-0.01), ConfigError),
    "AttackConfig kappa inf": (lambda: AttackConfig("cw", 0.1, kappa=math.inf), ConfigError),
    "TrainConfig epochs True": (lambda: TrainConfig(epochs=True), ConfigError),
    "TrainConfig batch size 1.5": (lambda: TrainConfig(batch_size=1.5), ConfigError),
    "TrainConfig device None": (lambda: TrainConfig(device=None), ConfigError),
    "TrainConfig compile 'yes'": (lambda: TrainConfig(compile="yes"), ConfigError),
    "dataset unknown": (lambda: load_dataset("imagenet"), ConfigError),
    "dataset root missing": (lambda: load_dataset("fashion-mnist", None), DataError),
    "dataset root not a folder": (lambda: load_dataset("svhn", "/nonexistent/atld"), DataError),
}


BAD_API_VALUES.update({
    "EvalConfig unknown attack": (lambda: EvalConfig(attacks=("pgd20", "deepfool")), ConfigError),
    "EvalConfig unknown inference": (lambda: EvalConfig(inferences=("atld++",)), ConfigError),
    "EvalConfig limit 0": (lambda: EvalConfig(limit=0), ConfigError),
    "EvalConfig epsilon -1": (lambda: EvalConfig(epsilon=-1.0), ConfigError),
    "EvalConfig batch size 0": (lambda: EvalConfig(batch_size=0), ConfigError),
    "EvalConfig seed 2^32": (lambda: EvalConfig(seed=2**32), ConfigError),
    "LatentConfig seed 2^40": (lambda: LatentConfig(seed=2**40), ConfigError),
    "LatentConfig t-SNE on a natural map": (lambda: LatentConfig(projection="tsne", fit_on="natural"), ConfigError),
})


@pytest.mark.parametrize("case", list(BAD_API_VALUES))
def test_bad_api_value_is_a_one_line_user_error(case):
    build, error = BAD_API_VALUES[case]
    with pytest.raises(error) as info:
        build()
    assert isinstance(info.value, ATLDError)
    message = str(info.value)
    assert message and "\n" not in message
    if error is DataError:  # a missing data root says what to do
        assert "--data-root" in message or "--download" in message


# ----------------------------------------------------------------------------- outputs and the environment

BAD_OUTPUTS = {
    "eval --out is a directory": (["eval", "--attacks", "natural", "--out", "{tmp}"], "is a directory"),
    "eval --out below a file": (["eval", "--attacks", "natural", "--out", "{tmp}/afile/x.csv"], "not a directory"),
    "embed --out is a directory": (["embed", "--out", "{tmp}"], "is a directory"),
    "embed --out below a file": (["embed", "--out", "{tmp}/afile/x.csv"], "not a directory"),
    "eval --store on a folder that is not a run of ours": (["eval", "--attacks", "natural", "--store"],
                                                           "not a run directory of the lab"),
}


@pytest.mark.parametrize("case", list(BAD_OUTPUTS))
def test_bad_outputs_are_refused_before_any_work(tmp_path, capsys, monkeypatch, latent_runs, case):
    """An output that cannot be written is one line, found before the model is even loaded."""
    import shutil

    import atld.runs.store

    argv, expected = BAD_OUTPUTS[case]
    (tmp_path / "afile").write_text("x")
    checkpoint = tmp_path / "stranger"
    shutil.copytree(latent_runs[False].path, checkpoint)
    (checkpoint / ".atld-run").unlink()  # a copy that is not a run directory of ours
    monkeypatch.setattr(atld.runs.store, "load_checkpoint", lambda *a, **k: pytest.fail("loaded before checking"))
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv] + ["--checkpoint", str(checkpoint), "--limit", "5"]
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and expected in err, err


BAD_ENVIRONMENT = {
    "ATLD_RUNS_DIR": ("{tmp}/afile", "exists and is not a directory"),
    "ATLD_CHECKPOINTS_DIR": ("{tmp}/afile", "exists and is not a directory"),
    "ATLD_MAX_JOBS": ("many", "ATLD_MAX_JOBS must be a whole number"),
    "ATLD_TORCH_THREADS": ("0", "ATLD_TORCH_THREADS must be in [1, 256]"),
    "ATLD_UNWATCHED_MINUTES": ("nan", "ATLD_UNWATCHED_MINUTES must be in [0.1, 10080.0]"),
    "ATLD_UMAP_WARMUP": ("yes", "ATLD_UMAP_WARMUP must be 0 or 1"),
}


@pytest.mark.parametrize("name", list(BAD_ENVIRONMENT))
def test_bad_environment_settings_are_one_line_at_start(tmp_path, capsys, monkeypatch, name):
    value, expected = BAD_ENVIRONMENT[name]
    (tmp_path / "afile").write_text("x")
    monkeypatch.setenv(name, value.replace("{tmp}", str(tmp_path)))
    assert cli_main(["train", "--epochs", "1", "--quiet", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err, err
    assert not (tmp_path / "run").exists()
