"""The app's Streamlit-free helpers (atld/ui): the Train form generated from TrainConfig
(atld/config/fields.py), run discovery and the validated card view, exports, image display, the
Attack page's numbers and the Latent explorer's figure and selection parsing."""

from __future__ import annotations

import dataclasses
import io
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from atld.attacks.gradient import AttackConfig
from atld.config.fields import from_widget_values, widgets
from atld.vocab import ColorBy
from atld.config.train import TrainConfig
from atld.data.loaders import as_float01
from atld.errors import ConfigError
from atld.runs.card import CARD, MARKER, card_files, read_card
from atld.runs.store import load_checkpoint
from atld.ui import runs as ui_runs
from atld.ui.attack import attack_result, summary_rows
from atld.ui.exports import checkpoint_zip, config_json
from atld.ui.latent import COLOR_MODES, latent_figure, selected_ids
from atld.ui.runs import discover_runs
from atld.ui.train import curves_figure
from atld.ui.display import (evaluation_frame, evaluation_rows, magnify, md, metric_columns, metrics_frame,
                           to_display)

MAIN_FIELDS = {"dataset", "method", "epochs", "batch_size", "lr", "epsilon", "seed", "eval_limit"}
APP_DEFAULTS = {"epochs": 5, "eval_limit": 200, "device": "cpu"}  # the app's starting values (a short run)


# ----------------------------------------------------------------------------- the Train form

def test_form_has_one_widget_per_config_field_with_its_help_text():
    form = widgets(TrainConfig)
    assert [w.name for w in form] == [f.name for f in dataclasses.fields(TrainConfig)]
    by_name = {w.name: w for w in form}
    help_of = {f.name: f.metadata["help"] for f in dataclasses.fields(TrainConfig)}
    for w in form:
        # a plain label, never the raw field name; the unit/meaning (from the dataclass) is its help
        assert "_" not in w.label and w.label != w.name
        assert help_of[w.name][1:] in w.help
    assert "[0, 1] pixel units" in by_name["epsilon"].help
    assert by_name["lr"].label == "Learning rate" and by_name["batch_size"].label == "Batch size"
    assert by_name["method"].kind == "select" and set(by_name["method"].spec.choices) >= {"natural", "pgd-at", "atld"}
    assert by_name["epochs"].kind == "int" and by_name["momentum"].kind == "float" and by_name["lr"].kind == "text"
    assert by_name["epsilon"].kind == "text" and by_name["lr_milestones"].kind == "text"
    assert by_name["channels_last"].kind == "bool"
    assert {w.name for w in form if w.spec.main} == MAIN_FIELDS


def test_form_defaults_round_trip_to_the_app_defaults():
    values = {w.name: w.initial for w in widgets(TrainConfig)}
    assert from_widget_values(TrainConfig, values) == TrainConfig(**APP_DEFAULTS)
    values = {w.name: w.initial for w in widgets(TrainConfig, {"dataset": "mnist", "seed": 7})}
    config = from_widget_values(TrainConfig, values)
    assert (config.dataset, config.seed, config.epsilon) == ("mnist", 7, None)


def test_form_parses_text_fields():
    config = from_widget_values(TrainConfig, {"epsilon": " 0.25 ", "lr_milestones": "0.3, 0.9", "d_widths": "8,16",
                                              "arch": "", "epochs": 3.0})
    assert config.epsilon == 0.25 and config.lr_milestones == (0.3, 0.9) and config.d_widths == (8, 16)
    assert config.arch is None and config.epochs == 3 and isinstance(config.epochs, int)


@pytest.mark.parametrize("values, fragment", [
    ({"epsilon": "big"}, "epsilon must be a number"),
    ({"epsilon": "1.5"}, "epsilon must be in [0.0, 1.0]"),
    ({"lr_milestones": "0.5, x"}, "comma-separated float"),
    ({"epochs": 0}, "epochs must be >= 1"),
    ({"method": "magic"}, "unknown method"),
])
def test_form_rejects_bad_values_with_one_line(values, fragment):
    with pytest.raises(ConfigError) as err:
        from_widget_values(TrainConfig, values)
    assert fragment in str(err.value) and "\n" not in str(err.value)


# ----------------------------------------------------------------------------- runs and exports

def test_discover_runs_lists_loadable_runs_and_skips_broken_ones(app_checkpoints, tmp_path):
    runs = tmp_path / "runs"
    shutil.copytree(app_checkpoints / "digits-natural", runs / "mine")
    (runs / "broken").mkdir()
    (runs / "broken" / "card.json").write_text("{not json")
    (runs / "empty").mkdir()
    found = discover_runs([("shipped", app_checkpoints), ("runs", runs)])
    assert [r.label for r in found] == ["digits-atld (shipped)", "digits-natural (shipped)", "mine (runs)"]
    atld = found[0]
    assert atld.method == "atld" and atld.has_discriminator and atld.dataset == "digits" and len(atld.model_hash) == 64
    assert not found[1].has_discriminator


def test_card_of_gives_only_schema_valid_cards(app_checkpoints, tmp_path):
    good = app_checkpoints / "digits-atld"
    assert ui_runs.card_of(good) == read_card(good)
    bad = tmp_path / "bad"
    bad.mkdir()
    card = json.loads((good / CARD).read_text())
    odd = [{**card, "format": "pickle"}, {**card, "epochs_done": "3"}, {**card, "has_discriminator": 1}, [card],
           {**card, "metrics": [{"loss": "high"}]}, {**card, "metrics": [1.0, 2.0]},
           {**card, "evaluations": {"format": "atld-eval", "version": 1, "rows": [{"attack": "pgd20"}]}},
           {**card, "message": "line\x1b[31m red"}]
    for broken in odd:
        (bad / CARD).write_text(json.dumps(broken))
        assert ui_runs.card_of(bad) is None, broken
    (bad / CARD).unlink()
    (bad / CARD).symlink_to(good / CARD)
    assert ui_runs.card_of(bad) is None
    assert ui_runs.card_of(tmp_path / "missing") is None


def test_runs_list_rereads_a_card_only_when_its_size_or_mtime_changes(app_checkpoints, tmp_path, monkeypatch):
    root = tmp_path / "runs"
    for i in range(8):
        shutil.copytree(app_checkpoints / "digits-natural", root / f"r{i}")
    reads = []
    real = ui_runs.read_card
    monkeypatch.setattr(ui_runs, "read_card", lambda path: reads.append(path) or real(path))
    first = discover_runs([("runs", root)])
    assert len(first) == 8 and len(reads) == 8
    assert discover_runs([("runs", root)]) == first and len(reads) == 8  # nothing changed: no card parsed
    card_path = root / "r3" / CARD
    card = json.loads(card_path.read_text())
    card_path.write_text(json.dumps({**card, "status": "stopped"}))
    again = discover_runs([("runs", root)])
    assert len(reads) == 9 and again[3].status == "stopped"  # only the changed card was read again


def test_markdown_from_a_card_is_escaped():
    text = "![x](http://evil.example/pixel.png) <img src=x> **bold** `code`"
    escaped = md(text)
    for i, char in enumerate(escaped):  # every character that makes a link, an image, HTML or code is escaped
        if char in "[]<>*`":
            assert escaped[i - 1] == "\\", (escaped, i)
    assert escaped.replace("\\", "") == text


def test_app_start_path_imports_no_torch():
    import subprocess
    import sys

    code = ("import sys, atld.ui.session, atld.ui.runs, atld.ui.exports, atld.ui.display, atld.ui.evaluate, "
            "atld.evaluate.verdict, atld.evaluate.report, atld.attacks.registry, atld.runs.card, "
            "atld.runs.rundir, atld.config.settings, atld.vocab; print('torch' in sys.modules)")
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root)
    assert out.stdout.strip() == "False"


def test_checkpoint_zip_holds_only_the_card_files_and_loads_back(app_checkpoints, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(app_checkpoints / "digits-atld", run)
    (run / "secret.txt").write_text("not for download")
    data = checkpoint_zip(run)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        names = sorted(zf.namelist())
        assert names == sorted(f"run/{n}" for n in (CARD, MARKER, *card_files(read_card(run))))
        zf.extractall(tmp_path / "unzipped")
    loaded = load_checkpoint(tmp_path / "unzipped" / "run")
    assert loaded.discriminator is not None and loaded.card["method"] == "atld"


def test_config_json_is_the_cards_config(app_checkpoints):
    card = json.loads((app_checkpoints / "digits-natural" / "card.json").read_text())
    payload = json.loads(config_json(card))
    assert payload["config"] == card["config"] and payload["method"] == "natural"
    assert TrainConfig.from_dict(payload["config"]).method == "natural"


# ----------------------------------------------------------------------------- tables and images

def test_metrics_frame_keeps_numbers_and_adds_epochs():
    frame = metrics_frame([{"loss": 1.0, "status": "x"}, {"loss": 0.5, "d_auc": 0.7}])
    assert list(frame["epoch"]) == [1, 2] and "status" not in frame
    assert frame["loss"].tolist() == [1.0, 0.5] and np.isnan(frame["d_auc"][0])


def test_metric_columns_align_epochs_without_pandas():
    columns = metric_columns([{"epoch": 3, "loss": 1.0, "flag": True}, {"epoch": 4, "d_auc": 0.7, "note": "x"}])
    assert columns == {"epoch": [3, 4], "loss": [1.0, None], "d_auc": [None, 0.7]}  # a bool is no number
    assert metric_columns([]) == {}
    fig = curves_figure(metric_columns([{"loss": 1.0}, {"loss": 0.5}]), ["loss"])
    assert list(fig.data[0].x) == [1, 2] and list(fig.data[0].y) == [1.0, 0.5]


def test_evaluation_rows_pick_rename_and_convert_to_percent():
    rows = {"rows": [{"attack": "pgd20", "accuracy": 0.5, "ci_low": 0.41234, "n": 100, "note": "long"},
                     {"attack": "fgsm", "accuracy": "n/a"}]}
    assert evaluation_rows(rows, {"attack": "attack", "accuracy": "accuracy %", "ci_low": "from"}) == [
        {"attack": "pgd20", "accuracy %": 50.0, "from": 41.2}, {"attack": "fgsm", "accuracy %": "n/a"}]
    assert evaluation_rows(rows)[0] == {"attack": "pgd20", "accuracy": 50.0, "ci_low": 41.2, "n": 100, "note": "long"}
    assert evaluation_rows(None) == [] and evaluation_rows({"rows": []}, {"attack": "a"}) == []


def test_home_draws_a_shipped_card_without_pandas(app_checkpoints):
    """Home's first view on a fresh server must not import pandas (half a second of its start):
    the modules it uses, and turning a card into its curves and tables, stay pandas-free."""
    card = app_checkpoints / "digits-atld"
    code = f"""
import sys
import atld.ui.datasets, atld.ui.evaluate, atld.ui.exports, atld.ui.runs, atld.ui.session
from atld.ui.runs import card_of
from atld.ui.train import curves_figure
from atld.ui.display import card_summary, evaluation_rows, markdown_table, metric_columns
card = card_of({str(card)!r})
columns = metric_columns(card["metrics"])
curves_figure(columns, [c for c in columns if c != "epoch"]).to_plotly_json()
card_summary(card), markdown_table(evaluation_rows(card.get("evaluations"), {{"accuracy": "accuracy %"}}))
assert "pandas" not in sys.modules, "pandas was imported"
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 0, result.stderr[-2000:]


def test_evaluation_frame_reads_the_rows_in_percent():
    row = {"attack": "pgd20", "inference": "atld-", "accuracy": 0.5, "ci_low": 0.4, "ci_high": 0.6, "n": 100}
    direct = evaluation_frame({"format": "atld-eval", "version": 1, "rows": [row, row]})
    assert direct["accuracy"].tolist() == [50.0, 50.0] and direct["ci_high"].tolist() == [60.0, 60.0]
    assert evaluation_frame({}).empty and evaluation_frame(None).empty


def test_to_display_enlarges_and_converts():
    x = torch.zeros(2, 1, 8, 8)
    x[0, 0, 0, 0] = 1.0
    grey = to_display(x)
    assert grey.shape == (2, 96, 96) and grey.dtype == np.uint8
    assert grey[0, :12, :12].min() == 255 and grey[0, 12:, 12:].max() == 0
    colour = to_display(np.full((1, 3, 4, 4), 0.5), scale=2)
    assert colour.shape == (1, 8, 8, 3) and colour[0, 0, 0, 0] == 128


def test_magnify_maps_minus_eps_zero_plus_eps_to_black_grey_white():
    delta = torch.tensor([-0.1, 0.0, 0.1, 0.3])
    assert magnify(delta, 0.1).tolist() == pytest.approx([0.0, 0.5, 1.0, 1.0])
    assert magnify(np.array([0.05]), 0.1).tolist() == pytest.approx([0.75])


# ----------------------------------------------------------------------------- the Attack page's numbers

@pytest.mark.parametrize("kind", ["fgsm", "pgd", "cw"])
def test_attack_result_invariants(app_checkpoints, digits, kind):
    run = load_checkpoint(app_checkpoints / "digits-atld")
    x, y = as_float01(digits.x_test[:6]), digits.y_test[:6]
    view = attack_result(run, x, y, AttackConfig(kind, 0.2, steps=5), seed=1)
    assert np.abs(view.delta).max() <= 0.2 + 1e-6 and view.x_adv.min() >= 0 and view.x_adv.max() <= 1
    assert view.linf == pytest.approx(np.abs(view.delta).reshape(6, -1).max(1))
    with torch.no_grad():
        logits = run.classifier(torch.from_numpy(view.x_adv))
        assert view.pred_adv.tolist() == logits.argmax(1).tolist()
        assert view.d_adv == pytest.approx(run.discriminator.natural_probability(logits).numpy(), abs=1e-6)
    # IMT moves the adversarial image by at most the run's training ε and stays an image
    assert np.abs(view.x_imt - view.x_adv).max() <= run.config.resolved_epsilon + 1e-6
    assert view.x_imt.min() >= 0 and view.x_imt.max() <= 1 and view.imt_mode == "atld"
    rows = summary_rows(view, run.spec.labels())
    assert len(rows) == 6 and {"D(nat)", "D(adv)", "ATLD (IMT) → pred"} <= set(rows[0])


def test_attack_view_lowers_accuracy_and_is_seeded(app_checkpoints, digits):
    run = load_checkpoint(app_checkpoints / "digits-natural")
    x, y = as_float01(digits.x_test[:40]), digits.y_test[:40]
    a = attack_result(run, x, y, AttackConfig("pgd", 0.2, steps=10), seed=3)
    b = attack_result(run, x, y, AttackConfig("pgd", 0.2, steps=10), seed=3)
    assert np.array_equal(a.x_adv, b.x_adv)
    assert (a.pred_adv == a.labels).sum() < (a.pred_nat == a.labels).sum()
    assert a.x_imt is None and a.d_nat is None and a.imt_mode is None  # no discriminator, no IMT
    assert "D(nat)" not in summary_rows(a, run.spec.labels())[0]


# ----------------------------------------------------------------------------- the Latent explorer

def _table(n=5, with_d=True):
    """A point table of n images: natural points classified right, perturbed ones wrong."""
    from atld.latent import LatentSet, points_frame

    rng = np.random.default_rng(0)
    labels = torch.arange(n) % 3
    d = (torch.rand(n), torch.rand(n)) if with_d else (None, None)
    z = torch.zeros(n, 1)
    latents = LatentSet(torch.zeros(n, 1, 2, 2), torch.zeros(n, 1, 2, 2), z, z, z, z, labels, labels,
                        (labels + 1) % 3, *d)
    return points_frame(rng.normal(size=(2 * n, 2)), latents, ("a", "b", "c"), indices=np.arange(10, 10 + n))


@pytest.mark.parametrize("color_by", COLOR_MODES)
def test_every_plotted_point_carries_its_global_id(color_by):
    table = _table()
    fig = latent_figure(table, color_by)
    seen = {}
    for trace in fig.data:
        for x, y, (pid, image, _thumbnail) in zip(trace.x, trace.y, trace.customdata):
            seen[int(pid)] = (x, y, int(image))
    assert sorted(seen) == list(range(10))  # each point exactly once over all traces
    for pid, (x, y, image) in seen.items():
        row = table.iloc[pid]
        assert (x, y, image) == (row["x"], row["y"], row["index"])
    assert table["set"].tolist() == ["natural"] * 5 + ["perturbed"] * 5
    assert table["correct"].tolist() == [True] * 5 + [False] * 5


@pytest.mark.parametrize("color_by", COLOR_MODES)
def test_map_is_laid_out_once_with_one_legend_entry_per_class(color_by):
    """Fixed margins (a legend that pushes them makes plotly lay the map out twice in the browser);
    by class, one legend entry per class that toggles both of its clouds."""
    fig = latent_figure(_table(), color_by)
    assert fig.layout.margin.autoexpand is False and fig.layout.margin.r >= 40
    shown = [t for t in fig.data if t.showlegend is not False]
    if color_by in (ColorBy.CLASS, ColorBy.PREDICTED):
        assert len(fig.data) == 6 and len(shown) == 3  # 3 classes × 2 sets, one entry per class
        assert {t.legendgroup for t in fig.data} == {t.legendgroup for t in shown}
    else:
        assert len(shown) == len(fig.data)


def test_d_score_colouring_without_d_falls_back_to_classes():
    fig = latent_figure(_table(with_d=False), COLOR_MODES[1])
    assert len(fig.data) == 6  # 3 classes × 2 kinds


def test_selected_ids_reads_streamlit_selection():
    selection = {"points": [{"curve_number": 1, "point_index": 0, "customdata": [7, 12]},
                            {"curve_number": 0, "point_index": 3, "customdata": [2, 2]},
                            {"curve_number": 1, "point_index": 0, "customdata": [7, 12]},
                            {"curve_number": 2, "point_index": 1},
                            {"curve_number": 3, "point_index": 4, "customdata": {"1": 30, "0": 9}},
                            {"curve_number": 3, "point_index": 5, "customdata": 11}],
                 "box": [{}], "lasso": []}
    assert selected_ids(selection) == [7, 2, 9, 11]
    assert selected_ids(None) == [] and selected_ids({"points": []}) == []


# ----------------------------------------------------------------------------- the Evaluate page

def _row(attack, inference, correct, n=100, eps=0.2):
    from atld.evaluate.report import make_row

    return make_row(attack, inference, "direct", correct, n, eps, 0.1)


def test_evaluation_table_keeps_the_largest_run_of_each_cell_with_its_protocol():
    from atld.ui.evaluate import evaluation_table, headline

    rows = [_row("autoattack", "atld-", 30), _row("natural", "atld-", 95), _row("pgd20", "atld-", 50),
            _row("pgd20", "atld-", 400, n=1000)]  # the larger evaluation of the same cell wins
    table = evaluation_table(rows)
    assert list(table["attack"]) == ["AutoAttack", "natural (no attack)", "PGD-20 (upper bound)"]
    assert list(table["accuracy"]) == ["30.00%", "95.00%", "40.00%"] and table["95% CI"].iloc[2] == "37.0-43.1"
    assert set(table["protocol"]) == {"direct"}
    value, text = headline(rows)["atld-"]
    assert value == "30.0 %" and text.startswith("atld- (the bare classifier): 30.0 %")


def test_curve_figure_and_grid():
    from atld.ui.evaluate import curve_figure, epsilon_grid

    grid = epsilon_grid(0.2)
    assert grid == [0.0, 0.1, 0.2, 0.3, 0.4]
    for eps in (0.2, 0.3, 8 / 255, 0.1, 2 / 255):  # the dataset's ε is always on the grid, whatever the count
        for points in (2, 4, 5, 6, 7):
            grid = epsilon_grid(eps, points)
            assert round(eps, 6) in grid and grid == sorted(grid) and grid[0] == 0 and grid[-1] == round(2 * eps, 6)
    from atld.ui.evaluate import curve_epsilons
    assert curve_epsilons("autoattack", 0.3) == (0.3,) and 0.3 in curve_epsilons("pgd20", 0.3)
    rows = [_row("pgd20", "atld-", c, eps=e) for c, e in zip((90, 50, 10), (0.0, 0.2, 0.4))]
    fig = curve_figure({"a": rows[::-1], "b": rows}, 0.2)
    assert [t.name for t in fig.data] == ["a", "b"]
    assert fig.data[0].line.color != fig.data[1].line.color  # distinct colours
    assert list(fig.data[0].x) == [0.0, 0.2, 0.4] and list(fig.data[0].y) == pytest.approx([90, 50, 10])
    low = fig.data[0].error_y.arrayminus[1]
    assert 50 - low == pytest.approx(100 * rows[1]["ci_low"])


def test_export_names_are_unique_even_within_one_second():
    from atld.ui.exports import export_name

    names = [export_name("digits-atld-eval", "csv") for _ in range(50)]
    assert len(set(names)) == 50 and all(n.startswith("digits-atld-eval-") and n.endswith(".csv") for n in names)
    assert "/" not in export_name("../../etc/passwd", "zip") and ".." not in export_name("../x", "zip")


def test_p_values_at_the_permutation_floor_read_as_bounds():
    from atld.evaluate.stats import p_value_text

    assert p_value_text(1 / 101) == "p < 0.01" and p_value_text(1 / 1001) == "p < 0.001"
    assert p_value_text(0.034) == "p = 0.034" and p_value_text(0.5) == "p = 0.5" and p_value_text(None) == "p = –"


def test_the_app_fetches_nothing_from_outside():
    import re
    import tomllib

    root = Path(__file__).resolve().parents[1]
    app = (root / "app.py").read_text()
    assert ":material/" not in app  # icon-font names: fetched as a web font and read aloud as text
    for page in (root / "app_pages").glob("*.py"):
        assert not re.search(r"https?://|:material/", page.read_text()), page.name
    config = tomllib.loads((root / ".streamlit" / "config.toml").read_text())
    assert "base" not in config.get("theme", {})  # the theme follows the viewer's system (light or dark)
    assert not re.search(r"https?://", (root / ".streamlit" / "config.toml").read_text())


def test_attack_view_marks_and_notes():
    import numpy as np

    from atld.ui.attack import confidence_note, discriminator_lines, epsilon_note, outcome_mark, top_k
    from atld.ui.display import perturbation_rgb

    names = tuple("0123456789")
    assert "fooled" in outcome_mark(3, 8, names) and ":red[" in outcome_mark(3, 8, names)
    assert "not fooled" in outcome_mark(3, 3, names) and ":green[" in outcome_mark(3, 3, names)
    assert top_k(np.array([0.1, 0.6, 0.3]), 2) == [(1, pytest.approx(0.6)), (2, pytest.approx(0.3))]
    assert epsilon_note(0.3, 0.3) is None and epsilon_note(0.35, 0.3)[0] == "info"
    assert epsilon_note(0.4, 0.3)[0] == "warning"
    assert "0.50" in confidence_note(0.5, 10, "atld") and "smoothing" not in confidence_note(0.5, 10, "natural")
    # D's lines: the old per-image-only check still reads (tests/test_app_maps.py has every branch)
    assert "(chance)" in " ".join(t for _, t in discriminator_lines({"auc_pgd": 0.52, "auc_own": 0.5}))
    assert [lv for lv, _ in discriminator_lines({"auc_pgd": 0.9, "auc_own": 0.9})] == ["caption", "caption"]
    rgb = perturbation_rgb(np.array([[[[-0.1, 0.0], [0.1, 0.05]]]]), 0.1, scale=1, frame=1)
    assert rgb.shape == (1, 4, 4, 3)
    inner = rgb[0, 1:3, 1:3]
    assert inner[0, 0, 2] > inner[0, 0, 0] and inner[1, 0, 0] > inner[1, 0, 2]  # −ε blue, +ε red
    assert tuple(inner[0, 1]) != (255, 255, 255)  # zero is a neutral grey, not the page's white


def test_every_train_preset_builds_a_valid_config():
    from atld.ui.train import PRESETS, preset_values

    for name in PRESETS:
        values = {w.name: w.initial for w in widgets(TrainConfig)}
        values.update(preset_values(name, TrainConfig))
        config = from_widget_values(TrainConfig, values)
        assert config.method == "atld" and config.epochs == PRESETS[name]["epochs"]


def test_training_progress_counts_steps_from_the_start():
    from atld.ui.train import progress_line

    assert progress_line(0, 5, 0, 0, 1437, 50).endswith("step 0/≈29 of epoch 1")  # before the first step reports
    assert progress_line(1, 5, 12, 28, None, None) == "1 of 5 epochs done · step 12/28 of epoch 2"
    assert "?" not in progress_line(0, 5, 0, 0, None, None)


# ----------------------------------------------------------------------------- Evaluate's comparison and curves

def test_curves_progress_counts_attack_runs_and_estimates_what_is_left():
    from atld.ui.compute import curves_progress

    fraction, text = curves_progress(1, 4, 0.5, None, 0.0, 3.0)
    assert fraction == pytest.approx(0.125) and text == "0 / 4 attack runs"  # no estimate yet: none shown
    fraction, text = curves_progress(1, 4, 0.5, 10.0, 0.0, 10.0)  # this curve: 20 s in all, 10 s left
    assert text == "0 / 4 attack runs · about 1:10 left"  # 10 s + 3 more curves at 20 s
    fraction, text = curves_progress(3, 4, 0.0, 30.0, 100.0, 0.0)  # 2 done in 100 s: 50 s per curve
    assert fraction == pytest.approx(0.5) and text == "2 / 4 attack runs · about 1:20 left"


def test_default_curve_models_put_pgd_at_beside_atld():
    from atld.ui.evaluate import default_curve_labels
    from atld.ui.runs import RunEntry

    def entry(name, method, source="shipped"):
        return RunEntry(Path(name), f"{name} ({source})", source, "mnist", method, "finished", 1, method == "atld", "")

    runs = [entry("mine", "atld", "runs"), entry("mnist-natural", "natural"), entry("mnist-feature-scatter",
            "feature-scatter"), entry("mnist-atld", "atld"), entry("mnist-pgd-at", "pgd-at"), entry("x", "natural")]
    assert default_curve_labels(runs) == ["mnist-atld (shipped)", "mnist-pgd-at (shipped)", "mnist-natural (shipped)",
                                          "mnist-feature-scatter (shipped)"]
    assert default_curve_labels(runs[:2]) == ["mine (runs)", "mnist-natural (shipped)"]  # the only ATLD is one's own
    assert default_curve_labels([]) == []


def test_curve_figure_has_one_panel_per_model_a_legend_outside_and_rounded_hover():
    from atld.ui.evaluate import curve_figure, curve_key

    rows = [_row("pgd20", "atld-", c, eps=e) for c, e in zip((91, 47, 9), (0.0, 0.2, 0.4))]
    curves = {curve_key(f"model {m}", "pgd20", "atld-"): rows for m in range(4)}
    curves[curve_key("model 0", "autoattack", "atld-")] = [_row("autoattack", "atld-", 33)]
    fig = curve_figure(curves, 0.2)
    assert {t.xaxis for t in fig.data} == {"x", "x2", "x3", "x4"}  # four panels
    assert [a.text for a in fig.layout.annotations][:4] == [f"model {m}" for m in range(4)]
    assert fig.layout.legend.x > 1  # right of the plots, over no axis title
    assert sum(t.showlegend is not False for t in fig.data) == 2  # each attack / mode listed once
    assert fig.data[0].hovertext[1] == "PGD-20 / atld- at ε 0.2: 47.0 % (37.5-56.7 %, n 100)"
    assert fig.data[0].line.color == fig.data[1].line.color  # one colour per attack / mode in every panel


def test_comparison_table_reads_the_trusted_number_with_interval_and_n():
    from atld.ui.evaluate import comparison_table

    robust = {"method": "atld", "evaluations": {"rows": [
        _row("natural", "atld-", 90, eps=0.0), _row("pgd20", "atld-", 60), _row("autoattack", "atld-", 30),
        _row("adaptive", "atld", 45)]}}
    robust["evaluations"]["rows"][-1]["protocol"] = "adaptive"
    bare = {"method": "natural", "evaluations": {"rows": [_row("pgd20", "atld-", 2)]}}
    first, second = comparison_table([("bare", bare), ("robust", robust)])
    assert first["checkpoint"] == "robust" and first["trusted (measured)"].startswith("45.0 % (")
    assert first["trusted (measured)"].endswith(", n 100) · atld") and first["AutoAttack"].startswith("30.0 %")
    assert first["clean"].startswith("90.0 %") and first["adaptive through IMT (atld+)"] == "–"
    assert second["trusted (measured)"] == "not measured" and second["PGD-20 (upper bound)"].startswith("2.0 %")


def test_verdict_messages_put_a_negative_imt_finding_first_and_never_as_info():
    from atld.ui.evaluate import verdict_messages

    rows = [_row("autoattack", "atld-", 40), _row("adaptive", "atld", 10)]
    rows[-1]["protocol"] = "adaptive"
    (level, text), (bare_level, bare_text) = verdict_messages(rows)
    assert level == "warning" and "IMT makes the model less robust" in text and text.startswith("atld ")
    assert bare_level == "info" and bare_text.startswith("atld- ")
    rows[-1].update(accuracy=0.6, ci_low=0.5, ci_high=0.7)
    assert [lv for lv, _ in verdict_messages(rows)] == ["info", "info"]  # IMT adds robustness: atld- first again


def test_discriminator_auc_rows_from_a_live_check_and_a_card():
    from atld.ui.evaluate import discriminator_auc_rows

    card = {"auc": {"pgd_per_batch": 1.0, "pgd_per_image": 0.27, "pgd_mixed": 0.5, "own_per_batch": 0.98,
                    "own_per_image": 0.6, "own_mixed": 0.55}}
    pgd, own = discriminator_auc_rows(card)
    assert list(pgd.values()) == ["natural vs PGD-20", "1.00", "0.27 (inverted)", "0.50 (chance)"]
    assert own["D's AUC"] == "natural vs D's own training perturbation"
    live = {"sep_pgd": {"per_batch": 0.9, "per_image": 0.8, "mixed": 0.7}, "sep_own": None}
    assert [r["per image (eval mode, as IMT uses it)"] for r in discriminator_auc_rows(live)] == ["0.80"]
    assert discriminator_auc_rows(None) == [] and discriminator_auc_rows({"auc_pgd": 0.6}) == []


def test_a_large_model_defaults_to_few_images_with_its_estimate():
    from atld.ui.evaluate import estimate_eval_seconds, small_image_count

    small = {"forward": 1e-4, "latent-map-pgd20": 42e-4, "autoattack": 0.6}
    large = {"forward": 0.05, "latent-map-pgd20": 2.1, "autoattack": 300.0}
    attacks = ["natural", "fgsm", "pgd20", "cw20"]
    assert estimate_eval_seconds(large, ["pgd20"], 10) == pytest.approx(10 * (0.05 * 41 + 0.05))
    assert small_image_count(small, attacks, 450) == 100
    n = small_image_count(large, attacks, 450)
    assert n == 10 and small_image_count(large, attacks, 5) == 5
