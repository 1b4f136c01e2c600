"""The Latent explorer's and the Attack page's maps and D scores: maps that read (the variance
warning, the logit offset's caption, equal-aspect axes with tick numbers, a side by side that never
collapses with the shipped ATLD model on either side), the two-way links (segments, nearest
neighbours in the full latent space), the attack-path player, and D's scores said honestly (per
batch, per image, inverted never called chance)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from atld.latent.axes import axis_warning, pca_axes
from atld.latent.trajectories import AttackPath
from atld.ui.attack import discriminator_lines
from atld.ui.latent import (d_colour_lines, equal_aspect, latent_figure, map_notes, nearest_points, path_frame,
                            player_step, segments, side_by_side_caption, step_names)
from atld.vocab import PointSet
from tests.support import REPO, open_page, start_app

# ----------------------------------------------------------------------------- what a map says about itself


def test_the_variance_warning_fires_below_one_percent_on_the_second_axis_only():
    notes = dict((level, text) for level, text in map_notes("pca", "logits", (0.995, 0.004), 0.997))
    assert "0.4 %" in notes["warning"] and "nearly a line" in notes["warning"]
    assert "99.7 %" in notes["caption"] and "offset" in notes["caption"]
    assert [level for level, _ in map_notes("pca", "logits", (0.6, 0.2), 0.3)] == ["caption"]
    assert map_notes("pca", "features", (0.6, 0.2), None) == []  # features keep their offset: nothing to say
    assert map_notes("umap", "features", None, None) == []  # UMAP's axes hold no variance share


def synthetic_table(n: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({"x": rng.normal(size=2 * n), "y": 0.01 * rng.normal(size=2 * n),
                         "set": [PointSet.NATURAL.value] * n + [PointSet.PERTURBED.value] * n,
                         "index": list(range(n)) * 2, "label": [0, 1, 2, 0, 1] * 2, "pred": [0, 1, 2, 0, 1] * 2,
                         "label_name": list("abcab") * 2, "pred_name": list("abcab") * 2, "correct": [True] * 2 * n,
                         "d_natural": [np.nan] * 2 * n})


def test_every_map_has_equal_aspect_axes_and_tick_numbers():
    fig = latent_figure(synthetic_table(), axes=("PC1", "PC2"))
    layout = fig.to_plotly_json()["layout"]
    assert layout["yaxis"]["scaleanchor"] == "x" and layout["yaxis"]["scaleratio"] == 1
    assert layout["xaxis"]["showticklabels"] and layout["yaxis"]["showticklabels"]
    from atld.latent.path_figure import trajectory_figure

    coords = np.random.default_rng(1).normal(size=(3, 4, 2))
    path = trajectory_figure(coords, np.zeros(4, int), np.zeros((3, 4), int), ("a",)).to_plotly_json()["layout"]
    assert path["yaxis"]["scaleanchor"] == "x" and path["xaxis"].get("showticklabels", True)
    assert equal_aspect(fig) is fig


def test_segments_join_each_image_natural_to_perturbed_point():
    table = synthetic_table()
    xs, ys = segments(table, [3, 1, 3, 99])
    assert xs[:2] == [table.x[3], table.x[8]] and xs[2] is None and ys[3:5] == [table.y[1], table.y[6]]
    assert len(xs) == 6  # a repeat and an unknown index are dropped


def test_nearest_neighbours_are_taken_in_the_full_latent_space_not_on_the_map():
    # on a 2-D map (the first two coordinates) point 1 is nearest to 0; in all 3 dimensions point 2 is
    z = np.array([[0.0, 0.0, 0.0], [0.1, 0.0, 5.0], [1.0, 1.0, 0.0], [9.0, 9.0, 9.0]])
    near = nearest_points(z, 0, k=2)
    assert [i for i, _ in near] == [2, 1] and near[0][1] == pytest.approx(np.sqrt(2))
    assert nearest_points(z, 7) == [] and len(nearest_points(z, 3, k=10)) == 3


# ----------------------------------------------------------------------------- D's colours, honestly

def check(per_batch: float, per_image: float, mixed: float | None = None) -> dict:
    sep = {"per_batch": per_batch, "per_image": per_image, "mixed": per_image if mixed is None else mixed,
           "n": 200, "batch_size": 128}
    return {"auc_pgd": per_image, "auc_own": per_image, "sep_pgd": sep, "sep_own": dict(sep)}


def test_d_caption_calls_an_auc_below_half_inverted_never_chance():
    lines = d_colour_lines(check(1.0, 0.27))
    text = " ".join(t for _, t in lines)
    assert "0.27 (inverted)" in text and "D scores attacked latents as more natural than clean ones" in text
    assert "0.27 (chance)" not in text
    assert [level for level, _ in lines] == ["caption", "warning"]  # said beside the colour bar


def test_d_caption_says_chance_at_half():
    text = " ".join(t for _, t in d_colour_lines(check(0.52, 0.51)))
    assert "0.51 (chance)" in text and "inverted" not in text and "separates neither" in text


def test_d_caption_when_d_tells_only_batches_apart():
    lines = d_colour_lines(check(0.98, 0.55))
    assert "D tells batches apart, not images" in lines[0][1]
    assert lines[1][0] == "warning" and "do not mark which points are natural" in lines[1][1]
    assert "0.98 per batch" in lines[1][1]


def test_d_caption_when_d_judges_single_images_has_no_warning():
    lines = d_colour_lines(check(0.99, 0.9))
    assert [level for level, _ in lines] == ["caption"] and "D judges single images" in lines[0][1]
    assert d_colour_lines(None) == [] and discriminator_lines(None) == []


def test_an_old_check_without_per_batch_numbers_says_so():
    lines = d_colour_lines({"auc_pgd": 0.3, "auc_own": 0.5})
    assert "no per-batch measurement" in lines[0][1] and "0.30 (inverted)" in lines[0][1]
    assert lines[-1][0] == "warning"


def test_the_attack_page_d_lines_explain_the_score_first():
    lines = discriminator_lines(check(1.0, 0.27))
    assert "probability that the image's latent" in lines[0][1] and "per batch" in lines[1][1]


# ----------------------------------------------------------------------------- the attack-path player

def synthetic_path(steps: int = 3, n: int = 2, imt: bool = True) -> AttackPath:
    logits = torch.randn(steps + 1, n, 3)
    images = torch.rand(1, n, 1, 4, 4).repeat(steps + 1 + imt, 1, 1, 1, 1)
    images[1:] += 0.01 * torch.arange(1, steps + 1 + imt).view(-1, 1, 1, 1, 1)
    return AttackPath(None, logits, logits.argmax(2), torch.tensor([0, 1]), torch.rand(steps + 1, n),
                      torch.randn(n, 3) if imt else None, torch.tensor([2, 1]) if imt else None,
                      torch.rand(n) if imt else None, images.to(torch.float16))


def test_player_steps_stay_in_range_and_name_every_frame():
    names = step_names(3, imt=True)
    assert names == ["natural", "step 1", "step 2", "step 3", "IMT step back"]
    assert step_names(2, imt=False)[-1] == "step 2"
    assert player_step(0, -1, 5) == 0 and player_step(4, +1, 5) == 4 and player_step(2, +1, 5) == 3
    assert player_step(9, 0, 5) == 4  # a stored step past a shorter path


def test_player_frame_shows_the_image_at_step_k_and_its_perturbation_so_far():
    p = synthetic_path()
    first, third, back = path_frame(p, 0, 1), path_frame(p, 2, 1), path_frame(p, 4, 0)
    assert np.abs(first.delta).max() == 0
    assert np.abs(third.delta).max() == pytest.approx(0.02, abs=2e-3)
    assert third.pred == int(p.preds[2, 1]) and third.d == pytest.approx(float(p.d_scores[2, 1]))
    assert back.pred == 2 and back.d == pytest.approx(float(p.imt_d[0]))  # the IMT step back
    assert path_frame(p, 9, 0) is None and path_frame(p, 0, 5) is None


@pytest.mark.slow
def test_the_player_steps_with_its_buttons_in_the_explorer(app_env):
    at = start_app()
    at.session_state["lat_path_open"] = True
    open_page(at, "latent")
    assert not at.exception
    assert any("natural" in m.value and "(0 of" in m.value for m in at.markdown)
    assert at.button(key="lat_path_back").disabled
    at.button(key="lat_path_next").click().run()
    at.button(key="lat_path_next").click().run()
    assert any("step 2" in m.value and "(2 of" in m.value for m in at.markdown)
    at.button(key="lat_path_back").click().run()
    assert any("step 1" in m.value and "(1 of" in m.value for m in at.markdown)
    spec = json.loads(next(c for c in at.get("plotly_chart") if c.key == "lat_path").proto.spec)
    assert spec["layout"]["sliders"][0]["active"] == 1  # the map opens on the step shown
    assert any(t.get("name") == "followed image" for t in spec["data"])
    captions = [img.proto.imgs[0].caption for img in at.get("image")]
    assert any("at step 1" in c for c in captions) and any("perturbation so far" in c for c in captions)
    at.select_slider(key="lat_path_speed").set_value("slow").run()
    spec = json.loads(next(c for c in at.get("plotly_chart") if c.key == "lat_path").proto.spec)
    assert spec["layout"]["updatemenus"][0]["buttons"][0]["args"][1]["frame"]["duration"] == 800


def test_a_found_image_gets_its_segment_and_its_nearest_neighbours(app_env):
    at = open_page(start_app(), "latent")
    at.number_input(key="lat_find").set_value(3).run()
    assert not at.exception
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert any(t.get("name") == "natural → perturbed" for t in spec["data"])
    assert any("Nearest neighbours of natural #3" in m.value for m in at.markdown)
    captions = [img.proto.imgs[0].caption for img in at.get("image")]
    assert sum("distance" in c for c in captions) == 8
    # one clicked point (the page keeps the chart's selection) takes over from the found image
    at.session_state["lat_picked"] = [7]
    at.run()
    assert any("Nearest neighbours of natural #7" in m.value for m in at.markdown)
    at.session_state["lat_picked"] = [7, 8, 9]  # a box: its images are listed, no neighbours
    at.run()
    assert not any("Nearest neighbours" in m.value for m in at.markdown)
    assert any("Selection (5 points)" in h.value for h in at.subheader)  # the found image's two + three
    at.button(key="lat_clear").click().run()
    assert any("Nearest neighbours of natural #3" in m.value for m in at.markdown)


def test_colour_by_d_says_d_s_auc_per_batch_and_per_image_under_the_map(app_env):
    at = open_page(start_app(), "latent")
    assert not any("per image" in c.value for c in at.caption)  # class colours: nothing to say about D
    at.selectbox(key="lat_color").set_value("D score").run()
    assert not at.exception
    text = " ".join(c.value for c in at.caption) + " ".join(w.value for w in at.warning)
    assert "per batch" in text and "per image" in text
    assert any(kind in text for kind in ("D judges single images", "D tells batches apart, not images",
                                         "D separates neither"))
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert any("colorbar" in t.get("marker", {}) for t in spec["data"])


# ----------------------------------------------------------------------------- side by side, shipped models

@pytest.mark.parametrize("order", [("mnist-atld", "mnist-natural"), ("mnist-natural", "mnist-atld")])
def test_side_by_side_with_an_atld_model_on_either_side_gives_two_readable_clouds(order, monkeypatch, tmp_path):
    from atld.ui import compute
    from atld.ui.runs import RunRef

    monkeypatch.setenv("ATLD_DATA_ROOT", str(tmp_path / "no-data"))  # the shipped sample, as a fresh clone has
    refs = tuple(RunRef.of(REPO / "checkpoints" / name) for name in order)
    latent = compute.page_latent(200, "pgd20", 0.3, 0, "logits")
    pair = compute.compare_plots.fn(compute.CompareRequest(refs, order, latent))
    for text, explained in zip(pair["figures"], pair["explained"]):
        assert axis_warning(explained) is None, explained  # both axes hold variance
        spec = json.loads(text)
        xy = np.array([(x, y) for t in spec["data"] if t.get("mode") == "markers"
                       for x, y in zip(_values(t["x"]), _values(t["y"]))])
        spread = xy.std(axis=0)
        assert spread.min() > 0.2 * spread.max(), spread  # a cloud, not a streak
        assert spec["layout"]["yaxis"]["scaleanchor"] == "x"
    assert "nearly a line" not in side_by_side_caption(pair["explained"], pair["rotated"], "logits")
    # what the raw logits would have given: the ATLD model's map collapses onto its offset
    maps = [compute._map(compute.MapRequest(ref, latent)) for ref in refs]
    atld = maps[order.index("mnist-atld")]
    raw = np.concatenate(atld.latents.latents("logits"))[:len(atld.latents)]
    assert axis_warning(pca_axes(raw)[2]) is not None


def _values(v):
    """A plotly JSON array: a list, or plotly's base64 typed array {"dtype", "bdata"}."""
    if isinstance(v, dict):
        import base64

        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"])).tolist()
    return v
