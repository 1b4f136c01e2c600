"""`python -m atld embed` (atld/cli/embed.py): the CSV it writes and its one-line errors."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest

from atld.cli import main
from atld.latent import POINT_COLUMNS

COLUMNS = list(POINT_COLUMNS)  # the one point schema, shared with the app's CSV export


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


def test_embed_writes_coordinates_predictions_d_scores_and_gap_header(tmp_path, capsys, latent_runs):
    run = latent_runs[True]
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


def test_embed_natural_run_without_d_to_stdout(capsys, latent_runs):
    run = latent_runs[False]
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
    (["--projection", "isomap"], "unknown projection 'isomap'"),
    (["--method", "isomap"], "unknown projection 'isomap'"),  # the older name of the same flag
    (["--seed", str(2**32)], "seed must be an integer in [0, 2^32)"),
])
def test_embed_bad_input_is_one_line_exit_2(argv, message, capsys, latent_runs):
    base = ["embed", "--checkpoint", str(latent_runs[False].path), "--no-cache"]
    assert main(base + argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_a_corrupt_cache_entry_is_recomputed_not_a_traceback(tmp_path, capsys, latent_runs):
    args = ["embed", "--checkpoint", str(latent_runs[False].path), "--limit", "30", "--permutations", "10",
            "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "a.csv")]
    assert main(args) == 0
    entries = sorted((tmp_path / "cache").iterdir())
    assert len(entries) == 3  # latents, gap numbers, map
    for i, entry in enumerate(entries):  # truncate one, garble one, make one valid but wrong
        data = entry.read_bytes()
        entry.write_bytes([data[: len(data) // 2], b"\x00garbage" * 10, b'{"rows": [1, 2]}'][i])
    first = (tmp_path / "a.csv").read_text()
    assert main(args) == 0
    assert (tmp_path / "a.csv").read_text() == first
    assert "Traceback" not in capsys.readouterr().err


def test_embed_trajectories_writes_the_path_csv_json_and_html(tmp_path, capsys, latent_runs):
    import json

    run = latent_runs[True]
    out, html = tmp_path / "path.csv", tmp_path / "path.html"
    assert main(["embed", "--checkpoint", str(run.path), "--trajectories", "3", "--limit", "20", "--out", str(out),
                 "--html", str(html)]) == 0
    lines = out.read_text().splitlines()
    meta = dict(line[2:].split(": ", 1) for line in lines if line.startswith("# "))
    rows = list(csv.DictReader(io.StringIO("\n".join(line for line in lines if not line.startswith("#")))))
    assert meta["steps"] == "20" and meta["imt"] == "True"
    assert len(rows) == 3 * 21 + 3 and rows[-1]["step"] == "imt" and rows[0]["step"] == "0"
    page = html.read_text()
    assert page.count("<html") == 1 and "addFrames" in page and '"traces":[' in page  # the animation's frames
    assert "wrote 66 path points" in capsys.readouterr().err
    js = tmp_path / "path.json"
    assert main(["embed", "--checkpoint", str(latent_runs[False].path), "--trajectories", "2", "--limit", "10",
                 "--attack", "fgsm", "--out", str(js)]) == 0
    data = json.loads(js.read_text())
    assert len(data["rows"]) == 2 * 2 and data["meta"]["imt"] is False and data["columns"][0] == "index"


@pytest.mark.parametrize("extra,message", [(["--html", "x.html"], "give --trajectories too"),
                                           (["--trajectories", "0"], "--trajectories must be"),
                                           (["--trajectories", "2", "--attack", "natural"], "follows an attack")])
def test_embed_trajectories_bad_flags_get_one_line(tmp_path, capsys, latent_runs, extra, message):
    code = main(["embed", "--checkpoint", str(latent_runs[False].path), *extra])
    assert code != 0 and message in capsys.readouterr().err
