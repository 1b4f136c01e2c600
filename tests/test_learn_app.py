"""The Learn page under AppTest: every step of the lesson renders without an exception or an
error box, has its address, colours findings by outcome, and the new steps (the hypothesis, the
maps side by side, what D really learned, the summary) show what their numbers say."""

from __future__ import annotations

from pathlib import Path

import pytest

from atld.ui.learn import STEPS
from tests.support import APP, open_page, start_app

def at_step(k: int, shipped: bool = False, monkeypatch=None):
    if shipped:
        monkeypatch.setenv("ATLD_CHECKPOINTS_DIR", str(Path(APP).parent / "checkpoints"))
    at = start_app()
    at.query_params["step"] = str(k)
    return open_page(at, "learn")


def texts(at) -> str:
    return "\n".join([m.value for m in at.markdown] + [m.value for m in at.caption]
                     + [b.value for b in (*at.success, *at.warning, *at.info)])


@pytest.mark.slow  # nine steps, every view computed
def test_learn_page_walks_all_steps(app_env):
    at = open_page(start_app(), "learn")
    seen = []
    for step in range(len(STEPS)):
        seen.append(at.radio(key="learn_step").value)
        assert not at.exception, (step, [e.value for e in at.exception])
        assert not at.error, (step, [e.value for e in at.error])
        assert at.query_params["step"] == str(step + 1)  # each step has its address
        if step < len(STEPS) - 1:
            at.button(key="learn_next").click().run()
    assert seen[0].startswith("1 · The hypothesis") and seen[-1].startswith("9 · What the numbers showed")
    assert len(set(seen)) == len(STEPS)
    # the summary: one line per model and a verdict, coloured by its outcome
    verdict = [b.value for b in (*at.success, *at.warning, *at.info) if b.value.startswith("Verdict:")]
    assert len(verdict) == 1
    at.button(key="learn_back").click().run()
    assert [m.label for m in at.metric] == ["clean, after IMT", "non-adaptive attack, then IMT",
                                            "adaptive attack through IMT"]


def test_the_first_step_states_the_hypothesis_and_which_steps_test_it(app_env):
    at = at_step(1)
    text = texts(at)
    assert "adversarial inputs leave the natural latent distribution: tested by step 2" in text
    assert "pulling inputs back at test time buys robustness: tested by step 6" in text
    assert "Step 9 sums up" in text


def test_what_d_learned_follows_the_share_slider(app_env):
    at = at_step(7)
    assert at.radio(key="learn_step").value.startswith("7 · What D really learned")
    assert any("per batch" in s or "separate all-natural" in s for s in texts(at).split("\n"))
    before = at.metric[0].value
    note = next(m.value for m in at.markdown if m.value.startswith("A batch of"))
    assert "50.0 % adversarial" in note
    at.slider(key="learn_share").set_value(100).run()
    assert not at.exception
    assert "100.0 % adversarial" in next(m.value for m in at.markdown if m.value.startswith("A batch of"))
    at.slider(key="learn_share").set_value(0).run()
    assert at.metric[0].value != before or "0.0 % adversarial" in texts(at)
    # IMT against the reversed and a random step, on clean and on attacked images
    steps = [b.value for b in (*at.success, *at.warning) if "IMT vs the reversed step" in b.value]
    assert len(steps) == 2


def test_the_path_model_lives_in_the_address_and_steps_one_frame_at_a_time(app_env):
    at = at_step(4)
    choices = at.radio(key="learn_path_model").options
    assert at.query_params["path_model"] == choices[0]
    at.radio(key="learn_path_model").set_value(choices[-1]).run()
    assert at.query_params["path_model"] == choices[-1]
    fresh = start_app()
    fresh.query_params["step"] = "4"
    fresh.query_params["path_model"] = choices[-1]
    assert open_page(fresh, "learn").radio(key="learn_path_model").value == choices[-1]
    assert at.button(key="learn_path_prev").disabled
    at.button(key="learn_path_next").click().run()
    at.button(key="learn_path_next").click().run()
    assert len(at.get("image")) == 2  # the image at step k and its perturbation, beside the map
    assert "step 2" in str([i.proto for i in at.get("image")])
    fig = at.get("plotly_chart")[0].proto.spec
    assert '"active":2' in fig.replace(" ", "")  # the player's slider is at frame 2


@pytest.mark.slow  # the shipped MNIST checkpoints
def test_learn_page_on_the_shipped_checkpoints_tells_what_their_numbers_say(monkeypatch, app_env):
    """The shipped checkpoints (MNIST first): the gap step draws three maps and says when a gap does not rank
    robustness; the fooled examples are fooled."""
    at = at_step(3, shipped=True, monkeypatch=monkeypatch)
    captions = [m.value for m in at.markdown if "predicted" in m.value]
    adversarial = [c for c in captions if c.startswith("predicted")]
    assert adversarial and all("(flipped)" in c and ":red[" in c for c in adversarial)
    assert not at.success  # a demonstration, not a positive finding
    at.button(key="learn_next").click().run()
    at.button(key="learn_next").click().run()
    assert at.radio(key="learn_step").value.startswith("5")
    maps = [c for c in at.get("plotly_chart") if '"scaleanchor":"x"' in c.proto.spec.replace(" ", "")]
    titles = " ".join(c.proto.spec for c in maps)
    assert len(maps) >= 3 and all(n in titles for n in ("natural", "PGD-AT", "ATLD"))  # side by side, equal aspect
    text = texts(at)
    assert "misclassified image by definition" in text
    assert "ATLD does not close the gap more than PGD-AT" in text


def test_learn_step_round_trips_through_the_address(app_env):
    at = at_step(4)
    assert at.radio(key="learn_step").value.startswith("4")
    fig = at.get("plotly_chart")[0].proto.spec
    assert '"frames"' in fig and '"sliders"' in fig  # the attack's path, animated
    at.button(key="learn_next").click().run()
    assert at.query_params["step"] == "5"
    assert at_step(5).radio(key="learn_step").value.startswith("5")  # a reload: a new session, same address
    assert at_step(99).radio(key="learn_step").value.startswith("1")


def test_the_lessons_views_on_the_test_checkpoints(app_env, app_checkpoints):
    """The views the Learn page adds: the player's images are the path's own iterates (the same
    attack, seed and generator), within ε of the natural image; the side-by-side maps are one per
    model, on the same images, each in units of its natural spread; what D learned is plain data."""
    import json

    import base64

    import numpy as np
    import torch

    from atld.ui import compute
    from atld.ui.runs import RunRef
    from atld.vocab import LatentSpace

    def values(v):  # plotly's JSON writes arrays as typed base64
        return np.frombuffer(base64.b64decode(v["bdata"]), v["dtype"]) if isinstance(v, dict) else np.asarray(v)

    natural, atld = (RunRef.of(app_checkpoints / name) for name in ("digits-natural", "digits-atld"))
    indices = (0, 1, 2)
    images = compute.path_images.fn(compute.PathImagesRequest(natural, indices, "pgd20", 0.2, 0))
    pm = compute.attack_path.fn(compute.PathRequest(natural, indices, "pgd20", 0.2, 0))
    assert images.shape[:2] == (pm.path.steps + 1, 3)
    assert np.abs(images - images[0]).max() <= 0.2 + 1e-6
    run = compute.load_run(natural)
    with torch.no_grad():
        for k in (0, 7, pm.path.steps):
            assert torch.allclose(run.classifier(torch.from_numpy(images[k])), pm.path.logits[k], atol=1e-4)
    latent = compute.page_latent(40, "pgd20", 0.2, 0, LatentSpace.LOGITS)
    sbs = compute.side_by_side_plots.fn(compute.SideBySideRequest((natural, atld), ("natural", "ATLD"), latent))
    assert len(sbs["figures"]) == 2 and sbs["n"] == 40 and len(sbs["gaps"]) == 2
    for fig, explained, warning in zip(sbs["figures"], sbs["explained"], sbs["warnings"]):
        spec = json.loads(fig)
        assert spec["layout"]["yaxis"]["scaleanchor"] == "x" and spec["layout"]["xaxis"]["showticklabels"]
        assert (warning is not None) == (explained[1] < 0.01)
        natural_points = np.concatenate([np.c_[values(t["x"]), values(t["y"])] for t in spec["data"]
                                         if t["marker"]["symbol"] == "circle"])
        assert np.sqrt((natural_points ** 2).sum(1).mean()) == pytest.approx(1.0, rel=1e-6)  # natural spread = 1
    learned = compute.what_d_learned.fn(compute.LearnedRequest(atld, 40, 0))
    json.dumps(learned)  # plain data: the result store keeps it as JSON
    assert learned["n"] == 40 and [c["share"] for c in learned["share_curve"]][::5] == [0.0, 0.5, 1.0]
