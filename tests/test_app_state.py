"""Settings in the address (`atld.ui.session.url_setting`) and the Latent explorer's views, under
AppTest: each page's settings survive a reload (the address) and a page switch (the session),
hostile addresses fall back to defaults, the selection lists misclassified perturbed points
first, colour by D on a model without D says so, and PCA axes carry their explained variance;
and the start-up work that waits until no page runs (`atld.ui.server.background_start`)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from atld.vocab import PointSet
from atld.ui.latent import axis_titles, page_of, selection_order
from streamlit.testing.v1 import AppTest

from tests.support import APP, TIMEOUT, open_page, start_app


def params(at) -> dict:
    return {k: (v[0] if isinstance(v, list) else v) for k, v in at.query_params.items()}


def reload_with(at, page: str):
    """A fresh session (a reload, or the link opened elsewhere) on `page` with `at`'s address."""
    fresh = start_app()
    fresh.query_params.update(params(at))
    return open_page(fresh, page)


def test_latent_settings_survive_a_reload_and_a_page_switch(app_env):
    at = open_page(start_app(), "latent")
    at.radio(key="lat_space").set_value("features").run()
    at.selectbox(key="lat_color").set_value("predicted class").run()
    at.number_input(key="lat_find").set_value(7).run()
    assert not at.exception
    assert params(at)["space"] == "features" and params(at)["color"] == "predicted class"
    assert params(at)["find"] == "7"
    again = reload_with(at, "latent")
    assert again.radio(key="lat_space").value == "features"
    assert again.selectbox(key="lat_color").value == "predicted class"
    assert again.number_input(key="lat_find").value == 7
    open_page(at, "attack")
    open_page(at, "latent")  # a page switch clears the address; the session remembers
    assert at.radio(key="lat_space").value == "features"
    assert at.selectbox(key="lat_color").value == "predicted class"


def test_attack_settings_round_trip_and_hostile_values_fall_back(app_env):
    at = open_page(start_app(), "attack")
    at.radio(key="atk_kind").set_value("fgsm").run()
    at.slider(key="atk_eps").set_value(0.1).run()
    at.number_input(key="atk_start").set_value(12).run()
    assert params(at)["kind"] == "fgsm" and float(params(at)["eps"]) == 0.1 and params(at)["start"] == "12"
    again = reload_with(at, "attack")
    assert again.radio(key="atk_kind").value == "fgsm"
    assert abs(again.slider(key="atk_eps").value - 0.1) < 1e-9
    assert again.number_input(key="atk_start").value == 12
    hostile = start_app()
    hostile.query_params.update(kind="<script>", eps="nan", steps="1e9", start="-3", count="x")
    hostile = open_page(hostile, "attack")
    assert hostile.radio(key="atk_kind").value == "pgd"
    assert hostile.slider(key="atk_steps").value == 20
    assert hostile.number_input(key="atk_start").value == 0
    assert hostile.slider(key="atk_count").value == 6


def test_evaluate_settings_come_from_the_address(app_env):
    # the forms' values commit on submit (which runs an evaluation): check the address -> widget side
    at = start_app()
    at.query_params.update(limit="30", curve_attacks="fgsm,adaptive", curve_limit="50", curve_modes="atld-",
                           attacks="natural,bogus")
    at = open_page(at, "evaluate")
    assert at.number_input(key="ev_limit").value == 30
    assert at.multiselect(key="ev_curve_attacks").value == ["fgsm", "adaptive"]
    assert at.multiselect(key="ev_curve_modes").value == ["atld-"]
    assert at.number_input(key="ev_curve_limit").value == 50
    assert "bogus" not in at.multiselect(key="ev_attacks").value  # an unknown name: the default instead
    assert params(at)["limit"] == "30" and params(at)["curve_attacks"] == "fgsm,adaptive"
    assert params(at)["attacks"] == ",".join(at.multiselect(key="ev_attacks").value)


def test_colour_by_d_on_a_model_without_d_says_so(app_env):
    at = start_app()
    at.sidebar.selectbox(key="atld_run").set_value("digits-natural (shipped)").run()
    open_page(at, "latent")
    assert not any("discriminator" in w.value for w in at.warning)
    at.selectbox(key="lat_color").set_value("D score").run()
    assert any("needs a checkpoint with a discriminator" in w.value for w in at.warning)


def test_the_map_axes_carry_the_explained_variance_and_the_comparison_is_a_table(app_env):
    at = open_page(start_app(), "latent")
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    for axis in ("xaxis", "yaxis"):
        title = spec["layout"][axis]["title"]["text"]
        assert "% of variance" in title
        assert 0.0 < float(title.split("(")[1].split(" %")[0]) <= 100.0
    table = at.table[0].value
    assert "D's AUC, per image" in list(table.index) and "MMD²" in list(table.index)
    assert len(table.columns) == 3  # both checkpoints and what "no gap" means
    thumbs = [d[2] for trace in spec["data"] if "customdata" in trace for d in trace["customdata"]]
    assert thumbs and all(t.startswith("data:image/png;base64,") for t in thumbs)


def test_umap_axes_say_they_have_no_units():
    x, y = axis_titles("umap", None)
    assert "no units" in x and "no units" in y
    assert axis_titles("pca", (0.5, 0.25)) == ("PC1 (50.0 % of variance)", "PC2 (25.0 % of variance)")


def test_selection_lists_perturbed_misclassified_points_first_then_pages():
    n = 6
    table = pd.DataFrame({"set": [PointSet.NATURAL.value] * n + [PointSet.PERTURBED.value] * n,
                          "correct": [True, False, True, True, True, True, True, True, False, True, False, True]})
    order = selection_order(table, list(range(2 * n)))
    assert order[:2] == [8, 10]  # perturbed and wrong
    assert order[2] == 1  # then natural and wrong
    assert order[3:3 + 4] == [6, 7, 9, 11]  # then perturbed
    assert sorted(order) == list(range(2 * n))
    assert selection_order(table, [3, 10, 3, 99]) == [10, 3]  # repeats and unknown ids dropped
    shown, page, pages = page_of(list(np.arange(50)), 3, size=24)
    assert (page, pages, len(shown)) == (3, 3, 2)
    assert page_of([], 5)[1:] == (1, 1)


def test_the_sidebar_choice_travels_in_the_address_of_every_page(app_env):
    at = start_app()
    at.sidebar.selectbox(key="atld_run").set_value("digits-natural (shipped)").run()
    at.sidebar.number_input(key="atld_seed").set_value(7).run()
    open_page(at, "attack")
    assert params(at)["checkpoint"] == "digits-natural (shipped)" and params(at)["seed"] == "7"
    assert params(at)["dataset"] == "digits" and "run" not in params(at)  # "run" is the Train page's job
    shared = AppTest.from_file(APP, default_timeout=TIMEOUT)  # the link opened elsewhere
    shared.query_params.update(params(at))
    shared.run()
    assert not shared.exception
    assert shared.sidebar.selectbox(key="atld_run").value == "digits-natural (shipped)"
    assert shared.sidebar.number_input(key="atld_seed").value == 7
    hostile = AppTest.from_file(APP, default_timeout=TIMEOUT)
    hostile.query_params.update(checkpoint="../../etc (shipped)", seed="-3", dataset="nope")
    hostile.run()
    assert not hostile.exception
    assert hostile.sidebar.selectbox(key="atld_run").value == "digits-atld (shipped)"  # the defaults instead
    assert hostile.sidebar.number_input(key="atld_seed").value == 0
    assert hostile.sidebar.selectbox(key="atld_dataset").value == "digits"


def test_start_up_warm_ups_wait_until_no_page_runs(monkeypatch):
    """The workers' warm-ups (UMAP's code: seconds of CPU each) and the server's torch import start
    only once no page has run for a quiet moment: on two cores they slowed every page drawn
    meanwhile."""
    import dataclasses
    import time

    from atld.config.settings import settings
    from atld.ui import server

    warmed = []

    class Service:
        def warm_workers(self, requests):
            warmed.append(time.monotonic())

    monkeypatch.setattr(server, "compute_service", lambda: Service())
    monkeypatch.setattr(server, "settings", lambda: dataclasses.replace(settings(), preload=True, prewarm=False))
    monkeypatch.setattr(server, "START_UP_QUIET_S", 0.3)
    monkeypatch.setattr(server, "PRELOAD", ())
    monkeypatch.setattr(server, "configure_torch", lambda: None)
    monkeypatch.setattr(server.gc, "freeze", lambda: None)
    server.background_start.clear()  # once per process (st.cache_resource): an earlier test may have run it
    try:
        with server.script_activity():  # a page is running
            status = server.background_start()
            time.sleep(0.8)
            assert warmed == [] and not status["preloaded"].is_set()
        ended = time.monotonic()
        assert status["preloaded"].wait(10) and status["error"] is None
        assert len(warmed) == 1 and warmed[0] - ended >= 0.25  # after the quiet moment, not before
    finally:
        server.background_start.clear()
