"""`python -m atld eval`: formats, --store, --curve, and one-line errors with exit 2."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import sys

import pytest

from atld.cli import main
from atld.runs.card import read_card


def _run(argv, capsys):
    code = main(["eval", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_table_csv_json(capsys, natural_run):
    ckpt = str(natural_run.path)
    code, out, _ = _run(["--checkpoint", ckpt, "--attacks", "natural,pgd20", "--limit", "20", "--device", "cpu",
                         "--quiet"], capsys)
    assert code == 0 and "pgd20" in out and "natural" in out and "95% CI" in out
    code, out, _ = _run(["--checkpoint", ckpt, "--attacks", "natural,fgsm", "--limit", "20", "--device", "cpu",
                         "--format", "csv"], capsys)
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and [r["attack"] for r in rows] == ["natural", "fgsm"] and rows[0]["n"] == "20"
    code, out, err = _run(["--checkpoint", ckpt, "--attacks", "pgd20", "--limit", "12", "--device", "cpu",
                           "--format", "json"], capsys)
    doc = json.loads(out)
    assert code == 0 and doc["rows"][0]["attack"] == "pgd20" and doc["meta"]["n"] == 12
    assert "[1/1]" in err or "[0/1]" in err  # progress goes to stderr, never into the data


def test_store_and_curve(tmp_path, capsys, atld_run):
    run_dir = tmp_path / "run"
    shutil.copytree(atld_run.path, run_dir)
    code, out, err = _run(["--checkpoint", str(run_dir), "--attacks", "natural", "--inference", "atld-,atld+",
                           "--limit", "16", "--device", "cpu", "--store", "--quiet"], capsys)
    assert code == 0 and "stored 2 rows" in err
    rows = [r for r in read_card(run_dir)["evaluations"]["rows"] if r["n"] == 16]  # the shipped card has its own
    assert {(r["attack"], r["inference"]) for r in rows} == {("natural", "atld-"), ("natural", "atld+")}
    code, out, _ = _run(["--checkpoint", str(run_dir), "--attacks", "pgd20", "--curve", "0,0.1,0.2", "--limit", "16",
                         "--device", "cpu", "--format", "json", "--quiet"], capsys)
    rows = json.loads(out)["rows"]  # every inference mode the checkpoint supports, at every ε
    assert code == 0 and [(r["epsilon"], r["inference"]) for r in rows] == [
        (e, m) for e in (0.0, 0.1, 0.2) for m in ("atld-", "atld", "atld+")]


@pytest.mark.parametrize("argv, message", [
    (["--attacks", "pgd7"], "unknown attack 'pgd7'"),
    (["--inference", "atld++"], "unknown inference"),
    (["--inference", "atld"], "no discriminator"),
    (["--limit", "0"], "limit must be >= 1"),
    (["--epsilon", "1.5"], "epsilon must be in [0.0, 1.0]"),
    (["--epsilon", "-0.1"], "epsilon must be in [0.0, 1.0]"),
    (["--apgd-steps", "0"], "APGD steps must be >= 1"),
    (["--seed", str(2**32)], "seed must be an integer in [0, 2^32)"),
])
def test_bad_input_gives_one_line_and_exit_2(argv, message, capsys, natural_run):
    code, out, err = _run(["--checkpoint", str(natural_run.path), "--device", "cpu", *argv], capsys)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_empty_limit_and_missing_checkpoint_in_a_real_process(tmp_path):
    for argv, message in ((["--checkpoint", str(tmp_path), "--limit", ""], "invalid int value: ''"),
                          (["--checkpoint", str(tmp_path / "nope")], "no checkpoint directory")):
        proc = subprocess.run([sys.executable, "-m", "atld", "eval", *argv], capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == 2 and proc.stdout == ""
        assert proc.stderr.startswith("error: ") and message in proc.stderr and proc.stderr.count("\n") == 1


@pytest.mark.slow  # over 10 s
def test_plain_eval_of_the_shipped_atld_model_gives_the_adaptive_verdict_first(atld_run, capsys):
    """`python -m atld eval --checkpoint checkpoints/digits-atld` with its default attacks (a few
    images): the first line for ATLD is the adaptive attack's 0 %, never the non-adaptive number."""
    code, out, err = _run(["--checkpoint", str(atld_run.path), "--limit", "12", "--device", "cpu"], capsys)
    assert code == 0
    lines = out.splitlines()
    first = next(line for line in lines if line.startswith("  atld ("))
    assert first.startswith("  atld (one IMT step): 0.0 % robust accuracy")
    assert "against the adaptive attack through IMT (APGD-CE + APGD-T)" in first
    assert lines.index(first) < lines.index(next(line for line in lines if line.startswith("inference")))
    non_adaptive = next(line for line in lines if line.startswith("atld ") and "AutoAttack" in line)
    assert "non-adaptive (attacks the bare classifier)" in non_adaptive and not non_adaptive.split()[2] == "0.00%"
    assert any(line.startswith("atld- ") and "APGD-CE + APGD-T (bare classifier)" in line for line in lines)
    assert "[!] atld: adaptive attack through IMT 0.0 %" in out  # the masking finding, in the CLI too
    assert "in eval mode as IMT uses it" in out  # D's check
    assert "autoattack on the bare classifier (serves atld-, atld, atld+)" in out.split("Time")[1]
    assert "Square batch" in err and "left" in err
