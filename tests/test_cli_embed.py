"""`python -m atld embed` (atld/cli/embed.py): the CSV it writes and its one-line errors."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
from test_latent_extract import tiny_run

from atld.cli import main

COLUMNS = ["index", "set", "label", "label_name", "pred", "d_natural", "x", "y"]


def _read(text: str) -> tuple[dict[str, str], list[str], list[dict]]:
    header, per_class, body = {}, [], []
    for line in text.splitlines():
        if line.startswith("# class "):
            per_class.append(line)
        elif line.startswith("# "):
            key, _, value = line[2:].partition(": ")
            header[key] = value
        else:
            body.append(line)
    return header, per_class, list(csv.DictReader(io.StringIO("\n".join(body))))


def test_embed_writes_coordinates_predictions_d_scores_and_gap_header(tmp_path, capsys):
    run = tiny_run(True)
    out = tmp_path / "emb.csv"
    code = main(["embed", "--checkpoint", str(run.path), "--attack", "fgsm", "--limit", "60", "--out", str(out),
                 "--permutations", "20", "--cache-dir", str(tmp_path / "cache")])
    assert code == 0
    header, per_class, rows = _read(out.read_text())
    assert header["model_sha256"] == run.model_hash and header["attack"].startswith("FGSM eps=0.2")
    for key in ("discriminator_auc", "two_sample_accuracy", "two_sample_p_value", "mmd2", "mmd_p_value",
                "knn_mixing", "accuracy_natural", "accuracy_perturbed"):
        assert np.isfinite(float(header[key])), key
    assert float(header["accuracy_perturbed"]) < float(header["accuracy_natural"])
    assert len(per_class) == 10 and per_class[0].startswith("# class 0 (0): n_natural=")
    assert list(rows[0]) == COLUMNS and len(rows) == 120
    assert [r["set"] for r in rows] == ["natural"] * 60 + ["perturbed"] * 60
    xy = np.array([[float(r["x"]), float(r["y"])] for r in rows])
    assert np.isfinite(xy).all() and xy.std(0).min() > 0
    d = np.array([float(r["d_natural"]) for r in rows])
    assert ((0 <= d) & (d <= 1)).all()
    assert [int(r["label"]) for r in rows[:60]] == [int(r["label"]) for r in rows[60:]]
    assert "wrote 120 points" in capsys.readouterr().err
    # the same request again is served from the cache and writes the same file
    first = out.read_text()
    assert main(["embed", "--checkpoint", str(run.path), "--attack", "fgsm", "--limit", "60", "--out", str(out),
                 "--permutations", "20", "--cache-dir", str(tmp_path / "cache")]) == 0
    assert out.read_text() == first


def test_embed_natural_run_without_d_to_stdout(capsys):
    run = tiny_run(False)
    assert main(["embed", "--checkpoint", str(run.path), "--attack", "natural", "--limit", "30",
                 "--permutations", "10", "--no-cache"]) == 0
    header, _, rows = _read(capsys.readouterr().out)
    assert header["discriminator_auc"] == "" and all(r["d_natural"] == "" for r in rows)
    assert float(header["two_sample_accuracy"]) == 0.5  # no attack: the two clouds are one


@pytest.mark.parametrize("argv, message", [
    (["--checkpoint", "/nonexistent/run"], "no checkpoint directory"),
    (["--limit", "1"], "limit must be >= 2"),
    (["--epsilon", "2"], "epsilon must be in [0.0, 1.0]"),
    (["--device", "tpu"], "unknown device"),
])
def test_embed_bad_input_is_one_line_exit_2(argv, message, capsys):
    base = ["embed", "--checkpoint", str(tiny_run(False).path), "--no-cache"]
    assert main(base + argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_embed_unknown_choice_is_rejected_by_the_parser(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["embed", "--checkpoint", "x", "--method", "isomap"])
    assert exc.value.code == 2 and "invalid choice" in capsys.readouterr().err
