"""Where `eval` and `embed` take their images from: the data root when one is given, else the
shipped test sample (as the app does), said in one line; without either, one line on what to give."""

from __future__ import annotations

import json

import pytest

from atld.cli import main

SHIPPED_MNIST = "checkpoints/mnist-natural"


def test_eval_without_a_data_root_uses_the_shipped_sample_and_says_so(capsys):
    code = main(["eval", "--checkpoint", SHIPPED_MNIST, "--attacks", "natural,fgsm", "--limit", "40", "--format",
                 "json", "--quiet"])
    out = capsys.readouterr()
    assert code == 0
    assert "no --data-root" in out.err and "shipped sample of 2,000 test images of mnist" in out.err
    rows = json.loads(out.out)["rows"]
    assert {r["n"] for r in rows} == {40}


def test_embed_without_a_data_root_uses_the_shipped_sample_and_refuses_the_train_split(capsys, tmp_path):
    code = main(["embed", "--checkpoint", SHIPPED_MNIST, "--attack", "fgsm", "--limit", "30", "--permutations", "10",
                 "--no-cache", "--out", str(tmp_path / "m.csv")])
    assert code == 0 and "shipped sample" in capsys.readouterr().err
    assert len((tmp_path / "m.csv").read_text().splitlines()) > 60
    code = main(["embed", "--checkpoint", SHIPPED_MNIST, "--split", "train", "--limit", "30"])
    err = capsys.readouterr().err
    assert code == 2 and "test images only" in err and "--data-root" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("command", [["eval", "--attacks", "natural"], ["embed", "--no-cache"]])
def test_without_a_sample_or_a_data_root_the_commands_ask_for_one(command, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("ATLD_SAMPLES_DIR", str(tmp_path))  # no sample there
    code = main([command[0], "--checkpoint", SHIPPED_MNIST, "--limit", "10", *command[1:]])
    err = capsys.readouterr().err
    assert code == 2 and "needs --data-root" in err and len(err.strip().splitlines()) == 1
