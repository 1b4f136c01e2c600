"""Importing weights from outside the lab (`atld.runs.importer`, `python -m atld import`): the
RobustBench-compatible layouts, every accepted format and wrapper, the normalization, the sample
check, the provenance in the card, and a model trained outside the lab imported, evaluated and
mapped. Refusals of hostile or broken files are in test_import_security.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from atld.cli import main
from atld.data.loaders import as_float01
from atld.data.registry import get_spec
from atld.errors import ConfigError
from atld.models.common import Normalize
from atld.models.registry import build_classifier, classifier_params
from atld.runs.card import read_card
from atld.runs.importer import (NAME_PREFIXES, WORK_PASSES, _layout, _match_layout, estimate_seconds, forward_flops,
                                import_weights, resolve_normalization)
from atld.runs.store import load_checkpoint

LAYOUTS = json.loads((Path(__file__).parent / "data" / "robustbench_layouts.json").read_text())
CIFAR = get_spec("cifar10")


def _model(arch: str, dataset: str = "cifar10", seed: int = 0) -> torch.nn.Module:
    """A randomly initialised model with random BatchNorm statistics, so a round trip that lost
    or mixed up any tensor would change its outputs."""
    torch.manual_seed(seed)
    model = build_classifier(arch, get_spec(dataset))
    with torch.no_grad():
        for name, value in model.state_dict().items():
            if name.endswith("running_mean"):
                value.normal_(0, 0.1)
            elif name.endswith("running_var"):
                value.uniform_(0.5, 1.5)
    return model.eval()


def _same_function(run, source: torch.nn.Module, mean, std, dataset="cifar10") -> None:
    source.normalize = Normalize(tuple(mean), tuple(std))
    x = torch.rand(4, *get_spec(dataset).input_shape)
    with torch.no_grad():
        assert torch.allclose(run.classifier(x), source(x), atol=1e-5)


# ----------------------------------------------------------------------------- the architectures

@pytest.mark.parametrize("arch", sorted(k for k in LAYOUTS if "+" not in k))
def test_state_dicts_have_robustbench_names_and_shapes(arch):
    """The recorded layouts were taken from RobustBench's own classes (wide_resnet.py,
    dm_wide_resnet.py, resnet.py); ours must match name for name, shape for shape, in order."""
    with torch.device("meta"):
        ours = build_classifier(arch, CIFAR).state_dict()
    assert [[k, list(v.shape)] for k, v in ours.items()] == LAYOUTS[arch]


@pytest.mark.parametrize("arch,dataset", [("rb-wrn-28-10", "cifar10"), ("rb-wrn-34-20", "cifar100"),
                                          ("dm-wrn-70-16", "cifar10"), ("dm-wrn-70-16-swish", "cifar100"),
                                          ("rb-resnet18", "cifar10"), ("rb-preact-resnet18", "cifar100"),
                                          ("rb-preact-resnet18-bn", "cifar10"), ("dm-preact-resnet18", "cifar10"),
                                          ("rb-wrn-10-1", "digits"), ("dm-preact-resnet18-swish", "mnist")])
def test_parameter_formulas_equal_the_built_models(arch, dataset):
    spec = get_spec(dataset)
    with torch.device("meta"):
        model = build_classifier(arch, spec)
    assert classifier_params(arch, spec) == sum(p.numel() for p in model.parameters())


def test_published_sizes_and_the_budget():
    assert classifier_params("rb-wrn-28-10", CIFAR) == 36_479_194  # WRN-28-10's published 36.5 M
    assert classifier_params("dm-wrn-70-16", CIFAR) == 266_796_506  # 267 M, within the 300 M CIFAR budget
    with pytest.raises(ConfigError, match="over the"):
        import_weights(b"", "rb-wrn-94-20", "cifar10", source_name="x.pt")  # before a byte is read


@pytest.mark.parametrize("arch", ["rb-wrn-28-10", "rb-wrn-34-10", "rb-wrn-34-20", "dm-wrn-70-16",
                                  "rb-wrn-28-10+sub_block1"])
def test_the_big_layouts_are_accepted_as_recorded(arch):
    """WRN-28-10, 34-10, 34-20, 70-16 in RobustBench's exact layout (names and shapes, no data: the
    real import of these sizes is the slow test below), with the sub_block1 some of its WRN
    checkpoints carry."""
    target = arch.split("+")[0]
    layout = _layout(target, CIFAR)
    found = {k: (tuple(shape), "I64" if k.endswith("num_batches_tracked") else "F32") for k, shape in LAYOUTS[arch]}
    mapping, prefixes, dropped, _ = _match_layout(found, layout, target, "the file")
    assert set(mapping) == set(layout) and prefixes == []
    assert (dropped is not None and "sub_block1" in dropped) == ("sub_block1" in arch)


# ----------------------------------------------------------------------------- formats and wrappers

FAMILIES = [("rb-wrn-16-2", "cifar10"), ("dm-wrn-16-1", "cifar10"), ("dm-wrn-10-2-swish", "cifar10"),
            ("rb-resnet18", "cifar10"), ("rb-preact-resnet18", "cifar10"), ("rb-preact-resnet18-bn", "cifar10"),
            ("dm-preact-resnet18", "cifar10"), ("wrn-10-1", "cifar10"), ("small-cnn", "digits")]


# every family through both formats; the ResNet-18-size ones (11-12 M parameters) through torch.save
# only in the full suite, to keep the fast tier fast
ROUND_TRIPS = [pytest.param(arch, dataset, fmt, marks=[pytest.mark.slow] if fmt == "pt" and "resnet" in arch else [])
               for arch, dataset in FAMILIES for fmt in ("pt", "safetensors")]


@pytest.mark.parametrize("arch,dataset,fmt", ROUND_TRIPS)
def test_each_family_round_trips_through_both_formats(tmp_path, arch, dataset, fmt):
    source = _model(arch, dataset)
    path = tmp_path / f"weights.{fmt}"
    if fmt == "pt":
        torch.save(source.state_dict(), path)
    else:
        save_file(source.state_dict(), str(path))
    result = import_weights(path, arch, dataset, runs_root=tmp_path / "runs", check_images=0)
    run = load_checkpoint(result.path)
    assert run.imported and run.method == "imported" and run.discriminator is None
    assert result.format == ("torch-zip" if fmt == "pt" else "safetensors")
    _same_function(run, source, result.normalization.mean, result.normalization.std, dataset)


WRAPPERS = {
    "bare": (lambda sd: sd, None),
    "state_dict": (lambda sd: {"state_dict": sd, "epoch": 7, "best_acc": 0.5}, "'state_dict'"),
    "model_state_dict": (lambda sd: {"model_state_dict": sd, "optimizer_state_dict": {"state": {}, "param_groups": []}},
                         "'model_state_dict'"),
    "model": (lambda sd: {"model": sd}, "'model'"),
    "DataParallel": (lambda sd: {f"module.{k}": v for k, v in sd.items()}, "'module.'"),
    "state_dict + DataParallel": (lambda sd: {"state_dict": {f"module.{k}": v for k, v in sd.items()}},
                                  "'state_dict' + 'module.'"),
    "torch.compile": (lambda sd: {f"_orig_mod.{k}": v for k, v in sd.items()}, "'_orig_mod.'"),
}


@pytest.mark.parametrize("wrapper", sorted(WRAPPERS))
def test_the_usual_wrappers_are_unwrapped(tmp_path, wrapper):
    source = _model("rb-wrn-10-2")
    wrap, said = WRAPPERS[wrapper]
    torch.save(wrap(source.state_dict()), tmp_path / "w.pth")
    result = import_weights(tmp_path / "w.pth", "rb-wrn-10-2", "cifar10", runs_root=tmp_path, check_images=0)
    assert result.wrapper == said
    _same_function(load_checkpoint(result.path), source, (0, 0, 0), (1, 1, 1))


def test_a_safetensors_file_with_a_prefix_and_half_precision(tmp_path):
    source = _model("dm-wrn-10-1")
    state = {f"module.{k}": (v.half() if v.is_floating_point() else v) for k, v in source.state_dict().items()}
    save_file(state, str(tmp_path / "w.safetensors"))
    result = import_weights(tmp_path / "w.safetensors", "dm-wrn-10-1", "cifar10", runs_root=tmp_path, check_images=0)
    assert result.wrapper == "'module.'" and "module." in NAME_PREFIXES
    source.load_state_dict({k[len("module."):]: v.float() if v.is_floating_point() else v for k, v in state.items()})
    _same_function(load_checkpoint(result.path), source, CIFAR.mean, CIFAR.std)


def test_uploaded_bytes_and_missing_batch_counters(tmp_path):
    """The app hands bytes; old checkpoints lack num_batches_tracked (filled with 0, said so)."""
    source = _model("rb-preact-resnet18")
    state = {k: v for k, v in source.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(state, tmp_path / "w.pt")
    result = import_weights((tmp_path / "w.pt").read_bytes(), "rb-preact-resnet18", "cifar10", runs_root=tmp_path,
                            source_name="upload.pt", check_images=0)
    assert "num_batches_tracked" in result.dropped
    card = read_card(result.path)
    assert card["source"]["file"] == "upload.pt" and card["source"]["dropped"] == result.dropped
    with pytest.raises(ConfigError, match="source_name"):
        import_weights(b"x", "rb-preact-resnet18", "cifar10", runs_root=tmp_path)


def test_sub_block1_is_checked_and_dropped(tmp_path):
    source = _model("rb-wrn-10-2")
    state = dict(source.state_dict())
    state.update({f"sub_block1.{k[len('block1.'):]}": torch.randn_like(v.float()).to(v.dtype)
                  for k, v in source.state_dict().items() if k.startswith("block1.")})
    torch.save({"state_dict": state}, tmp_path / "w.pt")
    result = import_weights(tmp_path / "w.pt", "rb-wrn-10-2", "cifar10", runs_root=tmp_path, check_images=0)
    assert "sub_block1" in result.dropped
    _same_function(load_checkpoint(result.path), source, (0, 0, 0), (1, 1, 1))


# ----------------------------------------------------------------------------- normalization and the card

def test_normalization_choices():
    assert resolve_normalization("auto", "rb-wrn-28-10", CIFAR).std == (1.0, 1.0, 1.0)
    assert resolve_normalization("auto", "dm-wrn-70-16", CIFAR).mean == CIFAR.mean  # DeepMind's CIFAR-10 constants
    assert resolve_normalization("auto", "wrn-28-10", CIFAR).std == CIFAR.std
    custom = resolve_normalization("0.5,0.5,0.5/0.25,0.25,0.25", "rb-resnet18", CIFAR)
    assert custom.mean == (0.5,) * 3 and custom.std == (0.25,) * 3 and custom.name == "custom"
    for bad in ("imagenet", "0.5/0.5", "1,2,3/0,1,1", "a,b,c/1,1,1", "0.5,0.5,0.5/", "nan,0,0/1,1,1"):
        with pytest.raises(ConfigError, match="normalization"):
            resolve_normalization(bad, "rb-resnet18", CIFAR)


def test_the_card_carries_the_provenance_and_the_model_its_normalization(tmp_path):
    source = _model("rb-wrn-10-1")
    torch.save(source.state_dict(), tmp_path / "robust.pt")
    result = import_weights(tmp_path / "robust.pt", "rb-wrn-10-1", "cifar10", "0.4,0.5,0.6/0.2,0.3,0.4",
                            name="mine", runs_root=tmp_path / "runs", check_images=30,
                            command="python -m atld import robust.pt --arch rb-wrn-10-1")
    card = read_card(result.path)
    src = card["source"]
    assert result.path == tmp_path / "runs" / "mine"
    assert src["file"] == "robust.pt" and src["format"] == "torch-zip" and src["architecture"] == "rb-wrn-10-1"
    assert src["sha256"] == result.sha256 and src["size"] == (tmp_path / "robust.pt").stat().st_size
    assert src["normalization"] == {"name": "custom", "mean": [0.4, 0.5, 0.6], "std": [0.2, 0.3, 0.4]}
    assert src["command"].startswith("python -m atld import") and card["epochs_done"] == 0
    assert card["method"] == "imported" and card["has_discriminator"] is False
    check = src["sample_check"]
    assert check["n"] == 30 and check["sample"] == "the shipped cifar10-exact test sample"
    run = load_checkpoint(result.path)
    assert torch.allclose(run.classifier.normalize.mean.flatten(), torch.tensor([0.4, 0.5, 0.6]))
    _same_function(run, source, (0.4, 0.5, 0.6), (0.2, 0.3, 0.4))
    with pytest.raises(ConfigError, match="already exists"):
        import_weights(tmp_path / "robust.pt", "rb-wrn-10-1", "cifar10", name="mine", runs_root=tmp_path / "runs")


def test_random_weights_are_called_near_chance(tmp_path):
    torch.save(_model("rb-wrn-10-1").state_dict(), tmp_path / "w.pt")
    result = import_weights(tmp_path / "w.pt", "rb-wrn-10-1", "cifar10", runs_root=tmp_path, check_images=100)
    assert result.check.n == 100 and result.check.accuracy < 0.2
    assert "near chance" in result.warning and "--normalization" in result.warning
    assert read_card(result.path)["source"]["sample_check"]["warning"] == result.warning


def test_a_mismatched_card_normalization_is_refused_at_load(tmp_path, run_file):
    """A stranger's imported run whose normalization has the wrong number of channels."""
    from atld.runs.card import write_card

    torch.save(_model("rb-wrn-10-1").state_dict(), tmp_path / "w.pt")
    result = import_weights(tmp_path / "w.pt", "rb-wrn-10-1", "cifar10", runs_root=tmp_path, check_images=0)
    card = read_card(result.path)
    card["source"]["normalization"]["mean"] = [0.5]
    write_card(result.path, card)
    from atld.errors import CheckpointError
    with pytest.raises(CheckpointError, match="normalization needs 3"):
        load_checkpoint(result.path)


# ----------------------------------------------------------------------------- estimates

def test_time_estimates_grow_with_the_work_and_the_model():
    assert forward_flops("rb-wrn-28-10", "cifar10") == pytest.approx(10.5e9, rel=0.01)  # 5.25 G multiply-adds
    small = estimate_seconds("rb-wrn-10-1", "cifar10", 100, threads=1)
    big = estimate_seconds("dm-wrn-70-16", "cifar10", 100, threads=1)
    assert 0 < small < big and big > 60  # a WRN-70-16 on one thread: minutes per hundred images
    assert estimate_seconds("dm-wrn-70-16", "cifar10", 100, "latent-map-pgd20", threads=1) == pytest.approx(
        big * WORK_PASSES["latent-map-pgd20"])
    assert estimate_seconds("dm-wrn-70-16", "cifar10", 100, threads=2) == pytest.approx(big / 2)
    assert estimate_seconds("rb-wrn-28-10", "cifar10", 100, device="cuda") is None
    with pytest.raises(ConfigError):
        estimate_seconds("rb-wrn-28-10", "cifar10", 100, work="train")


# ----------------------------------------------------------------------------- the CLI, end to end

def test_cli_import_prints_the_run_and_its_check(tmp_path, capsys):
    torch.save({"state_dict": _model("rb-wrn-10-1").state_dict()}, tmp_path / "w.pt")
    code = main(["import", str(tmp_path / "w.pt"), "--arch", "rb-wrn-10-1", "--dataset", "cifar10", "--runs-dir",
                 str(tmp_path / "runs"), "--name", "cli", "--check-images", "20"])
    out = capsys.readouterr()
    assert code == 0 and "as " + str(tmp_path / "runs" / "cli") in out.out and "20 images" in out.out
    assert out.err.count("warning: ") == 1 and "near chance" in out.err
    code = main(["import", str(tmp_path / "w.pt"), "--arch", "rb-wrn-16-1", "--dataset", "cifar10", "--runs-dir",
                 str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: the weights in w.pt do not fit rb-wrn-16-1: missing ")
    assert len(err.strip().splitlines()) == 1 and "of shape (16,)" in err


def _train_outside_the_lab(steps: int = 150) -> torch.nn.Module:
    """What a user does elsewhere: a RobustBench-layout WideResNet trained with a plain loop."""
    from atld.data.loaders import load_dataset
    from atld.models.robustbench import RBWideResNet

    data = load_dataset("digits")
    torch.manual_seed(0)
    model = RBWideResNet((1, 8, 8), 10, (0.0,), (1.0,), depth=10, widen=2)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    x, y = as_float01(data.x_train), data.y_train
    gen = torch.Generator().manual_seed(0)
    for _ in range(steps // (len(y) // 64) + 1):
        for idx in torch.randperm(len(y), generator=gen).split(64):
            opt.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    return model.eval()


def test_end_to_end_a_model_trained_elsewhere_is_imported_evaluated_and_mapped(tmp_path, capsys):
    model = _train_outside_the_lab()
    torch.save(model.state_dict(), tmp_path / "my_model.pt")
    code = main(["import", str(tmp_path / "my_model.pt"), "--arch", "rb-wrn-10-2", "--dataset", "digits",
                 "--runs-dir", str(tmp_path), "--name", "mine", "--check-images", "200"])
    out = capsys.readouterr()
    assert code == 0 and "warning" not in out.err
    check = read_card(tmp_path / "mine")["source"]["sample_check"]
    assert check["n"] == 200 and check["accuracy"] > 0.8  # a working model is not near chance

    code = main(["eval", "--checkpoint", str(tmp_path / "mine"), "--attacks", "natural,pgd20,autoattack",
                 "--limit", "24", "--device", "cpu", "--format", "json"])
    out = capsys.readouterr()
    doc = json.loads(out.out)
    assert code == 0 and "imported model: my_model.pt" in out.err
    verdict = doc["verdicts"][0]  # the number to trust: the lowest robust accuracy, AutoAttack among the attacks
    autoattack = next(r for r in doc["rows"] if r["attack"] == "autoattack")
    assert verdict["inference"] == "atld-" and verdict["kind"] == "measured" and autoattack["n"] == 24
    assert verdict["accuracy"] == min(r["accuracy"] for r in doc["rows"] if r["attack"] != "natural")
    assert verdict["accuracy"] <= autoattack["accuracy"]
    assert doc["meta"]["method"] == "imported" and doc["meta"]["source"]["file"] == "my_model.pt"
    assert [r["inference"] for r in doc["rows"]] == ["atld-"] * 3  # no D: the bare classifier only

    code = main(["embed", "--checkpoint", str(tmp_path / "mine"), "--attack", "pgd20", "--method", "pca",
                 "--limit", "40", "--out", str(tmp_path / "map.csv"), "--no-cache"])
    text = (tmp_path / "map.csv").read_text()
    rows = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert code == 0 and len(rows) == 1 + 2 * 40  # header, natural and perturbed points


@pytest.mark.slow
def test_a_wrn_28_10_in_robustbench_layout_imports_with_sub_block1(tmp_path):
    """The full size of the most common leaderboard architecture, as RobustBench saves it
    (a "state_dict" wrapper, DataParallel's prefix, the unused sub_block1)."""
    source = _model("rb-wrn-28-10")
    state = {f"module.{k}": v for k, v in source.state_dict().items()}
    state.update({f"module.sub_block1.{k[len('block1.'):]}": v.clone()
                  for k, v in source.state_dict().items() if k.startswith("block1.")})
    torch.save({"state_dict": state}, tmp_path / "wrn.pt")
    del state
    result = import_weights(tmp_path / "wrn.pt", "rb-wrn-28-10", "cifar10", runs_root=tmp_path, check_images=20)
    assert result.wrapper == "'state_dict' + 'module.'" and "sub_block1" in result.dropped and result.check.n == 20
    _same_function(load_checkpoint(result.path), source, (0, 0, 0), (1, 1, 1))


def test_a_normalization_kept_in_the_file_is_used(tmp_path):
    """RobustBench's wrapping classes (e.g. Rice2020OverfittingNet) keep mean/std as `mu`/`sigma` buffers."""
    source = _model("rb-wrn-10-1")
    mu, sigma = torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1), torch.tensor([0.2471, 0.2435, 0.2616])
    torch.save({**source.state_dict(), "mu": mu, "sigma": sigma.view(1, 3, 1, 1)}, tmp_path / "w.pt")
    result = import_weights(tmp_path / "w.pt", "rb-wrn-10-1", "cifar10", runs_root=tmp_path, check_images=0)
    assert result.normalization.name == "from the file (mu, sigma)"
    assert result.normalization.std == pytest.approx(tuple(sigma.tolist()))
    _same_function(load_checkpoint(result.path), source, mu.flatten().tolist(), sigma.tolist())
    given = import_weights(tmp_path / "w.pt", "rb-wrn-10-1", "cifar10", "none", runs_root=tmp_path, name="given",
                           check_images=0)
    assert given.normalization.name == "none" and "mu, sigma" in given.dropped


def test_what_a_picker_offers_is_valid():
    """Every suggested architecture is in the table and fits CIFAR-10; each has an upload limit."""
    from atld.models.registry import check_arch
    from atld.runs.importer import SUGGESTED_ARCHITECTURES, max_file_bytes

    for arch in SUGGESTED_ARCHITECTURES:
        check_arch(arch, CIFAR)
    assert max_file_bytes("rb-wrn-28-10", "cifar10") > 4 * classifier_params("rb-wrn-28-10", CIFAR)
    assert max_file_bytes("dm-wrn-70-16", "cifar10") == 4 * 2**30
