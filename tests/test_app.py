"""The Streamlit app under streamlit.testing.v1.AppTest: every page renders without an exception
and shows its key widgets; widgets change what is computed; a short training run started from
the Train page finishes and its checkpoint appears in the picker; Stop really stops; the
server-wide cap refuses a second job with a clear message.

Every AppTest run goes through app.py (see the note on page file names there), so the sidebar
and the selection it stores are exercised on every page."""

from __future__ import annotations

import re
import shutil
import time

import pytest
from streamlit.testing.v1 import AppTest

from atld.config.train import TrainConfig
from atld.runs.card import read_card
from tests.support import APP, TIMEOUT, metric, open_page, start_app

def test_home_shows_the_picker_and_the_current_card(app_env):
    at = start_app()
    assert at.title[0].value == "ATLD lab"
    dataset, checkpoint = at.sidebar.selectbox
    assert dataset.value == "digits"
    assert checkpoint.options == ["digits-atld (shipped)", "digits-natural (shipped)"]
    assert checkpoint.value == "digits-atld (shipped)"  # an ATLD run is preferred
    assert at.sidebar.number_input(key="atld_seed").value == 0
    assert "**method** atld ·" in markdown_text(at) and metric(at, "epochs") == "1/1"
    assert {b.key for b in at.get("download_button")} == {"dl_config", "dl_zip"}
    checkpoint.set_value("digits-natural (shipped)").run()
    assert "**method** natural ·" in markdown_text(at) and metric(at, "epochs") == "4/4"


def test_attack_page_widgets_drive_the_attack(app_env):
    at = open_page(start_app(), "attack")
    for key in ("atk_kind", "atk_imt"):
        assert at.radio(key=key) is not None
    assert at.slider(key="atk_eps").value == pytest.approx(0.2) and at.slider(key="atk_steps").value == 20
    assert len(at.get("image")) == 6 * 4  # natural, adversarial, perturbation, IMT per image
    table = at.dataframe[0].value
    assert len(table) == 6 and (table["‖δ‖∞"] <= 0.2 + 1e-4).all() and table["‖δ‖∞"].max() > 0.1
    assert {"D(nat)", "D(adv)", "ATLD (IMT) → pred"} <= set(table.columns)
    at.slider(key="atk_eps").set_value(0.0).run()
    assert not at.exception
    table = at.dataframe[0].value
    assert (table["‖δ‖∞"] == 0).all()
    assert metric(at, "correct after attack") == metric(at, "correct before")  # ε = 0 changes nothing
    at.radio(key="atk_kind").set_value("fgsm").run()
    assert at.slider(key="atk_steps").disabled
    at.slider(key="atk_count").set_value(2).run()
    assert len(at.dataframe[0].value) == 2 and len(at.get("image")) == 2 * 4


def markdown_text(at: AppTest) -> str:
    return "\n".join(m.value for m in at.markdown)


def test_attack_page_marks_flips_shows_probabilities_and_explains(app_env):
    at = open_page(start_app(), "attack")
    table = at.dataframe[0].value
    text = markdown_text(at)
    # every adversarial prediction carries its mark; the count of "fooled" marks is the table's flips
    flips = int((table["adversarial → pred"] != table["label"]).sum())
    imt_flips = int((table["ATLD (IMT) → pred"] != table["label"]).sum())
    assert text.count("✗ fooled") == flips + imt_flips
    assert text.count("✓ not fooled") == 2 * len(table) - flips - imt_flips
    # top-3 probability bars under the natural, adversarial and IMT images: the true class is marked
    assert text.count("░") > 0 and sum(line.count("█") + line.count("░") == 12
                                       for line in text.replace("`", "\n").splitlines()) == 6 * 3 * 3
    captions = " ".join(c.value for c in at.caption)
    assert "label smoothing δ = 0.5" in captions and "about 0.50" in captions  # the ATLD run's own δ
    # D's scores come with D's AUC per batch and per image and the sentence saying which separation D has
    assert "per batch" in captions and "per image" in captions
    assert any(kind in captions for kind in ("D judges single images", "D tells batches apart, not images",
                                             "D separates neither"))
    images = at.get("image")
    assert all(img.proto.imgs[0].caption for img in images)  # every image says what it is, under it
    # ε: no note at the dataset's ε; a note past it; a warning from 4/3 of it on
    assert not at.warning or all("ε =" not in w.value for w in at.warning)
    at.slider(key="atk_eps").set_value(0.24).run()
    assert any("past the dataset's ε" in i.value for i in at.info)
    at.slider(key="atk_eps").set_value(0.3).run()
    assert any("can change what the image shows" in w.value for w in at.warning)


def test_attack_page_without_discriminator_has_no_imt(app_env):
    at = start_app()
    at.sidebar.selectbox(key="atld_run").set_value("digits-natural (shipped)").run()
    open_page(at, "attack")
    assert at.radio(key="atk_imt").disabled
    assert len(at.get("image")) == 6 * 3
    assert "D(nat)" not in at.dataframe[0].value.columns


def test_latent_page_plots_gap_numbers_and_comparison(app_env):
    at = open_page(start_app(), "latent")
    for key in ("lat_attack", "lat_color", "lat_other"):
        assert at.selectbox(key=key) is not None
    for key in ("lat_space", "lat_fit", "lat_method"):
        assert at.radio(key=key) is not None
    charts = at.get("plotly_chart")
    assert [c.key for c in charts if c.key == "lat_path"] == []  # the attack's path: drawn once opened
    assert len(charts) == 3  # the main map, two side by side
    at.session_state["lat_path_open"] = True  # open the path's expander
    at.run()
    charts = at.get("plotly_chart")
    path = [c for c in charts if c.key == "lat_path"]
    assert len(charts) == 4 and len(path) == 1
    assert '"frames"' in path[0].proto.spec and '"sliders"' in path[0].proto.spec
    labels = [m.label for m in at.metric]
    assert labels == ["D's AUC, per image", "two-sample test accuracy", "MMD²", "kNN mixing"]
    assert 0.0 <= float(metric(at, "D's AUC, per image")) <= 1.0
    assert [b.key for b in at.get("download_button")] == ["lat_csv"]
    at.selectbox(key="lat_color").set_value("D score").run()
    at.radio(key="lat_fit").set_value("natural").run()
    at.radio(key="lat_space").set_value("features").run()
    assert not at.exception
    at.radio(key="lat_method").set_value("umap").run()  # UMAP waits for an explicit request
    assert not at.exception and at.button(key="lat_umap_go").label == "Compute UMAP"
    assert len(at.get("plotly_chart")) == 4  # PCA stays on screen meanwhile


def _start_training(at: AppTest, name: str, epochs: int) -> AppTest:
    at.selectbox(key="train_method").set_value("natural")
    at.number_input(key="train_epochs").set_value(epochs)
    at.number_input(key="train_eval_limit").set_value(0)
    at.text_input(key="train_name").input(name)
    return at.button(key="train_start").click().run()


def _wait_for(at: AppTest, done, seconds: float = 180.0) -> AppTest:
    deadline = time.monotonic() + seconds
    while not done(at):
        assert time.monotonic() < deadline, "timed out waiting for the training job"
        time.sleep(0.5)
        at.run()
        assert not at.exception, [e.value for e in at.exception]
    return at


def test_training_from_the_train_page_lands_in_the_picker(app_env):
    at = open_page(start_app(), "train")
    assert at.number_input(key="train_epochs").value == 5 and at.selectbox(key="train_dataset").value == "digits"
    _start_training(at, "from-the-app", epochs=1)
    assert not at.error, [e.value for e in at.error]
    _wait_for(at, lambda a: len(a.success) > 0)
    assert "from-the-app" in at.success[0].value and "finished" in at.success[0].value
    card = read_card(app_env / "from-the-app")
    assert card["status"] == "finished" and card["epochs_done"] == 1 and card["method"] == "natural"
    assert at.sidebar.selectbox(key="atld_run").value == "from-the-app (runs)"  # selected for the user
    # the form keeps what was submitted (it was not drawn while the run ran)
    assert at.number_input(key="train_epochs").value == 1 and at.selectbox(key="train_method").value == "natural"
    assert at.number_input(key="train_eval_limit").value == 0
    assert "from-the-app (runs)" in start_app().sidebar.selectbox(key="atld_run").options  # and for everyone



def test_own_runs_resume_to_more_epochs_and_delete_after_confirmation(app_env):
    at = open_page(start_app(), "train")
    assert not [s for s in at.selectbox if s.key == "train_own_run"]  # shipped checkpoints are not offered
    _start_training(at, "mine", epochs=1)
    _wait_for(at, lambda a: len(a.success) > 0)
    picker = at.selectbox(key="train_own_run")
    assert picker.value == "mine" and len(picker.options) == 1  # the runs directory's own runs only
    assert at.number_input(key="train_resume_epochs_mine").value == 2
    at.button(key="train_resume").click().run()
    assert not at.error, [e.value for e in at.error]
    _wait_for(at, lambda a: any("after 2 epoch(s)" in s.value for s in a.success))
    card = read_card(app_env / "mine")
    assert card["epochs_done"] == 2 and card["status"] == "finished" and len(card["metrics"]) == 2
    at.button(key="train_delete").click().run()
    assert "cannot be undone" in at.warning[0].value
    at.button(key="train_delete_no").click().run()  # cancelled: nothing happens
    assert (app_env / "mine" / "card.json").exists() and not at.warning
    at.button(key="train_delete").click().run()
    at.button(key="train_delete_yes").click().run()
    assert not at.exception
    assert not (app_env / "mine").exists()
    assert any("Deleted run" in s.value for s in at.success)
    assert "mine (runs)" not in at.sidebar.selectbox(key="atld_run").options

def test_train_form_speaks_plainly_and_presets_fill_it(app_env):
    at = open_page(start_app(), "train")
    method = at.selectbox(key="train_method")
    assert method.label == "Method" and "training method" in method.help.lower()
    assert at.text_input(key="train_batch_size").label == "Batch size"
    assert at.text_input(key="train_lr").label == "Learning rate"
    guide = " ".join(m.value for m in at.markdown)
    assert "IMT" in guide and "standard robust baseline" in guide  # one line per method, from the methods table
    at.button(key="train_preset_Quick demo").click().run()
    assert at.number_input(key="train_epochs").value == 2 and method.value == "atld"
    assert at.number_input(key="train_eval_limit").value == 100
    at.button(key="train_preset_Paper settings").click().run()
    assert at.number_input(key="train_epochs").value == 30 and at.text_input(key="train_batch_size").value == "50"
    assert at.number_input(key="train_eval_limit").value == 450 and at.selectbox(key="train_dataset").value == "digits"
    assert not at.warning  # no "default value and Session State" warning from the presets


def test_bad_settings_and_names_are_refused_in_one_line(app_env):
    at = open_page(start_app(), "train")
    at.text_input(key="train_epsilon").input("lots")
    at.button(key="train_start").click().run()
    assert at.error[0].value == "epsilon must be a number, got 'lots'"
    at.text_input(key="train_epsilon").input("")
    at.text_input(key="train_name").input("../escape")
    at.button(key="train_start").click().run()
    assert at.error[0].value.startswith("bad run name '../escape'")
    assert not app_env.exists() or not any(app_env.iterdir())


def test_stop_really_stops_and_the_cap_refuses_a_second_job(app_env):
    first = open_page(start_app(), "train")
    _start_training(first, "long-run", epochs=500)
    assert first.button(key="train_stop").label == "Stop"
    second = open_page(start_app(), "train")  # another browser session, same server
    _start_training(second, "second-run", epochs=1)
    assert "server is busy" in second.error[0].value
    assert not (app_env / "second-run").exists()
    first.button(key="train_stop").click().run()
    _wait_for(first, lambda a: any("stopped" in m.value for m in a.markdown))
    assert not [b for b in first.button if b.key == "train_stop"]
    card_path = app_env / "long-run" / "card.json"
    if card_path.exists():  # it stopped after at least one finished epoch
        card = read_card(app_env / "long-run")
        assert card["status"] in ("stopped", "running") and card["epochs_done"] < 500
    # the cap is free again: the second session may now train
    _start_training(second, "second-run", epochs=1)
    assert not second.error
    _wait_for(second, lambda a: len(a.success) > 0)


@pytest.mark.slow  # over 10 s
def test_evaluate_page_table_quick_run_and_curve(app_env, app_checkpoints, tmp_path, monkeypatch):
    from atld.vocab import Protocol
    from atld.evaluate import EvalReport, make_row, store_evaluation

    shipped = tmp_path / "shipped"
    for name in ("digits-atld", "digits-natural"):
        shutil.copytree(app_checkpoints / name, shipped / name)
    rows = [make_row("pgd20", "atld-", Protocol.DIRECT, 60, 100, 0.2, 1.0),
            make_row("autoattack", "atld-", Protocol.DIRECT, 30, 100, 0.2, 1.0),
            make_row("pgd20", "atld", Protocol.NON_ADAPTIVE, 70, 100, 0.2, 1.0)]
    store_evaluation(shipped / "digits-atld", EvalReport(rows, {"date": "2026-01-01"}))
    monkeypatch.setenv("ATLD_CHECKPOINTS_DIR", str(shipped))

    at = open_page(start_app(), "evaluate")
    assert at.info[0].value.startswith("atld- (the bare classifier): 30.0 % robust accuracy")  # the verdict first
    assert at.warning[0].value.startswith("atld (one IMT step): robustness unverified")
    table = at.dataframe[0].value
    assert list(table.columns) == ["inference", "attack", "accuracy", "95% CI", "n", "eps", "protocol"]
    assert list(table["attack"]) == ["PGD-20 (upper bound)", "AutoAttack", "PGD-20 (upper bound)",
                                     "adaptive attack through IMT (APGD-CE + APGD-T)"]
    assert list(table["protocol"])[2:] == ["non-adaptive (attacks the bare classifier)",
                                           "adaptive through IMT: robustness unverified"]
    assert table["accuracy"].iloc[3] == "not run"  # a non-adaptive row never stands alone
    assert any("gap of 30.0 points" in w.value or "30.0 points higher" in w.value for w in at.warning)
    assert any("Why PGD and CW numbers are an upper bound" in m.value for m in at.markdown)
    at.multiselect(key="ev_attacks").set_value(["natural", "pgd20"])
    at.number_input(key="ev_limit").set_value(20)
    at.button(key="ev_go").click().run()
    assert not at.exception and not at.error
    quick = [d.value for d in at.dataframe if "attack" in d.value.columns][-1]
    assert list(quick["attack"].iloc[:2]) == ["natural (no attack)", "PGD-20 (upper bound)"]
    assert set(quick["inference"]) == {"atld-", "atld", "atld+"} and "not run" in set(quick["accuracy"])
    assert any(x.value.startswith("D ") and "per batch" in x.value for x in [*at.warning, *at.info])  # the sentence
    auc = [d.value for d in at.dataframe if "D's AUC" in d.value.columns][-1]  # D's check: per batch and per image
    assert list(auc["D's AUC"]) == ["natural vs PGD-20", "natural vs D's own training perturbation"]
    assert all(re.fullmatch(r"\d\.\d\d( \((chance|inverted)\))?", v) for v in auc.iloc[:, 1:3].values.ravel())
    assert [b.key for b in at.get("download_button")] == ["ev_csv"]
    assert not [b for b in at.button if b.key == "ev_store"]  # a shipped checkpoint's card is read-only
    assert any("Shipped checkpoints are read-only" in c.value for c in at.caption)
    at.multiselect(key="ev_curve_runs").set_value([])  # nothing chosen: a message, not empty axes
    at.button(key="ev_curve_go").click().run()
    assert not at.get("plotly_chart") and any("Nothing to draw" in i.value for i in at.info)
    at.multiselect(key="ev_curve_runs").set_value(["digits-atld (shipped)", "digits-natural (shipped)"])
    at.multiselect(key="ev_curve_attacks").set_value(["pgd20", "adaptive"])
    at.multiselect(key="ev_curve_modes").set_value(["atld"])
    at.number_input(key="ev_curve_limit").set_value(10)
    at.button(key="ev_curve_go").click().run()
    assert not at.exception and len(at.get("plotly_chart")) == 1
    assert _trace_names(at) == ["PGD-20 / atld", "adaptive attack through IMT (APGD-CE + APGD-T) / atld",
                                "PGD-20 / atld-", "APGD-CE + APGD-T (bare classifier) / atld-"]
    traces = _traces(at)
    assert all(0.2 in t["x"] for t in traces)  # the dataset's ε is on every curve's grid
    assert [t["xaxis"] for t in traces] == ["x", "x", "x2", "x2"]  # one panel per checkpoint
    assert all(re.fullmatch(r".* at ε [\d.]+: \d+\.\d % \(\d+\.\d-\d+\.\d %, n 10\)", h)
               for t in traces for h in t["hovertext"])  # rounded hover text
    # the same address in a new session draws the computed chart at once, without a click
    again = AppTest.from_file(APP, default_timeout=TIMEOUT)
    again.query_params.update(dict(at.query_params))
    again.run()
    again.switch_page("app_pages/evaluate_page.py").run()
    assert not again.exception and _trace_names(again) == _trace_names(at)


def test_a_quick_evaluation_is_stored_in_the_card_of_an_own_run(app_env):
    from atld.train.trainer import train as train_run

    train_run(TrainConfig(dataset="digits", method="natural", epochs=1, batch_size=64, eval_limit=0, device="cpu"),
              run_dir=app_env / "tiny", name="tiny")
    from atld.runs.owner import claim_owner

    claim_owner(app_env / "tiny", "tiny-owner-key")  # as a run started by this session: its key in the address
    at = start_app()
    at.query_params.update(run="tiny", key="tiny-owner-key")
    at.sidebar.selectbox(key="atld_run").set_value("tiny (runs)").run()
    open_page(at, "evaluate")
    assert any("no stored evaluation yet" in c.value for c in at.caption)
    at.multiselect(key="ev_attacks").set_value(["natural", "fgsm"])
    at.number_input(key="ev_limit").set_value(20)
    at.button(key="ev_go").click().run()
    at.button(key="ev_store").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.success[0].value.startswith("Stored 2 row(s) in the card of tiny (runs)")
    rows = read_card(app_env / "tiny")["evaluations"]["rows"]
    assert sorted((r["attack"], r["n"]) for r in rows) == [("fgsm", 20), ("natural", 20)]
    assert len(at.dataframe[0].value) == 2  # the stored evaluation on the page shows them
    shutil.rmtree(app_env / "tiny")  # the run went away meanwhile: one line, nothing written
    at.button(key="ev_store").click().run()
    assert at.error[0].value.startswith("Not stored:") and "\n" not in at.error[0].value

def _traces(at: AppTest) -> list[dict]:
    import json

    return json.loads(at.get("plotly_chart")[0].proto.spec)["data"]


def _trace_names(at: AppTest) -> list[str]:
    return [t["name"] for t in _traces(at)]


@pytest.mark.slow  # over 10 s
def test_the_shipped_atld_model_headline_is_its_adaptive_verdict(app_env, atld_run, tmp_path, monkeypatch):
    """Home and Evaluate on the shipped digits-atld: the headline for ATLD is the adaptive 0 %, not
    the non-adaptive number nor the training-time PGD-20; a quick run says the same."""
    shipped = tmp_path / "shipped"
    shutil.copytree(atld_run.path, shipped / "digits-atld")
    monkeypatch.setenv("ATLD_CHECKPOINTS_DIR", str(shipped))
    at = start_app()
    stored = read_card(shipped / "digits-atld").get("evaluations")
    if stored is None:
        pytest.skip("the ATLD run in use carries no stored evaluation")
    assert metric(at, "atld: robust accuracy") == "0.0 %"
    # IMT makes this model less robust than the bare classifier: said first, never as good news
    assert any(w.value.startswith("atld (one IMT step): 0.0 % robust accuracy") and "adaptive attack" in w.value
               for w in at.warning)
    assert "PGD-20 acc" not in [m.label for m in at.metric]
    open_page(at, "evaluate")
    assert at.warning[0].value.startswith("atld (one IMT step): 0.0 % robust accuracy")
    at.multiselect(key="ev_attacks").set_value(["natural", "pgd20", "adaptive"])
    at.number_input(key="ev_limit").set_value(10)
    at.button(key="ev_go").click().run()
    assert not at.exception and not at.error
    quick = [x.value for x in [*at.info, *at.warning]
             if x.value.startswith("atld (one IMT step)") and "n = 10" in x.value]
    assert quick and quick[0].startswith("atld (one IMT step): 0.0 % robust accuracy")


def test_a_checkpoint_that_fails_to_load_gives_one_line_not_a_traceback(app_env, app_checkpoints, tmp_path,
                                                                         monkeypatch):
    import json

    shipped = tmp_path / "shipped"
    shutil.copytree(app_checkpoints / "digits-natural", shipped / "digits-natural")
    card_path = shipped / "digits-natural" / "card.json"
    card = json.loads(card_path.read_text())
    card["sha256"][card["files"]["model"]] = "0" * 64  # the tensors no longer match the card
    card_path.write_text(json.dumps(card))
    monkeypatch.setenv("ATLD_CHECKPOINTS_DIR", str(shipped))
    at = start_app()
    assert at.sidebar.selectbox(key="atld_run").value == "digits-natural (shipped)"
    for page in ("attack", "latent", "evaluate", "learn"):
        at.switch_page(f"app_pages/{page}_page.py").run()
        if page == "learn":  # the lesson's first step (the hypothesis) loads no model
            at.button(key="learn_next").click().run()
        assert not at.exception
        message = at.error[0].value
        assert message.startswith("cannot load digits-natural (shipped): model-") and "does not match" in message


def test_a_reload_finds_the_running_job_with_its_curves_and_stop(app_env):
    """The job belongs to its run: the Train page's address carries the run and its key, so a
    reload (a new session with the same address) shows the job again, with its Stop; the same
    run with a wrong key is only listed, not controlled."""
    first = open_page(start_app(), "train")
    _start_training(first, "reloaded", epochs=500)
    run, key = first.query_params["run"], first.query_params["key"]
    assert run == ["reloaded"] or run == "reloaded"
    reloaded = AppTest.from_file(APP, default_timeout=TIMEOUT)
    reloaded.query_params.update(run="reloaded", key=key[0] if isinstance(key, list) else key)
    open_page(reloaded.run(), "train")
    assert reloaded.button(key="train_stop").label == "Stop"
    _wait_for(reloaded, lambda a: not any("Curves appear after the first epoch" in c.value for c in a.caption))
    assert any(e.type == "arrow_vega_lite_chart" or "chart" in e.type for e in reloaded.main)  # the curves are back
    stranger = AppTest.from_file(APP, default_timeout=TIMEOUT)
    stranger.query_params.update(run="reloaded", key="guessed")
    open_page(stranger.run(), "train")
    assert not [b for b in stranger.button if b.key == "train_stop"]
    assert any("Also training on this server: reloaded" in c.value for c in stranger.caption)
    reloaded.button(key="train_stop").click().run()
    _wait_for(reloaded, lambda a: any("stopped" in m.value for m in a.markdown))
    card = read_card(app_env / "reloaded") if (app_env / "reloaded" / "card.json").exists() else None
    assert card is None or card["status"] in ("stopped", "running")


def test_card_text_is_shown_as_plain_text_and_odd_cards_do_not_crash(app_env, app_checkpoints, tmp_path,
                                                                     monkeypatch):
    """A card's message is shown as text (an image link in it is not rendered, so no viewer's
    browser fetches it); a card whose content fails the schema is not offered at all."""
    import json

    shipped = tmp_path / "shipped"
    shutil.copytree(app_checkpoints / "digits-atld", shipped / "digits-atld")
    shutil.copytree(app_checkpoints / "digits-natural", shipped / "odd")
    card_path = shipped / "digits-atld" / "card.json"
    card = json.loads(card_path.read_text())
    card_path.write_text(json.dumps({**card, "message": "![pixel](http://tracker.example/p.png) **bold**"}))
    odd = json.loads((shipped / "odd" / "card.json").read_text())
    (shipped / "odd" / "card.json").write_text(json.dumps({**odd, "metrics": [{"loss": "low"}]}))
    monkeypatch.setenv("ATLD_CHECKPOINTS_DIR", str(shipped))
    at = start_app()
    assert at.sidebar.selectbox(key="atld_run").options == ["digits-atld (shipped)"]
    texts = [t.value for t in at.text]
    assert "![pixel](http://tracker.example/p.png) **bold**" in texts
    assert not any("tracker.example" in m.value for m in at.markdown)
    for page in ("attack", "latent", "evaluate", "learn"):
        at.switch_page(f"app_pages/{page}_page.py").run()
        assert not at.exception, (page, [e.value for e in at.exception])


def test_a_bad_setting_stops_the_app_with_one_line(app_env, monkeypatch):
    monkeypatch.setenv("ATLD_MAX_JOBS", "lots")
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert not at.exception
    shown = at.error[0].value.replace("\\", "")  # the message is Markdown-escaped: ATLD\_MAX\_JOBS
    assert shown.startswith("ATLD_MAX_JOBS must be a whole number") and "\n" not in shown, shown


# ----------------------------------------------------------------------------- real data: samples, default, download

def test_the_first_view_is_mnist_when_an_mnist_checkpoint_ships(app_env, mnist_app_checkpoints, monkeypatch):
    monkeypatch.setenv("ATLD_CHECKPOINTS_DIR", str(mnist_app_checkpoints))
    at = start_app()
    dataset, checkpoint = at.sidebar.selectbox
    assert dataset.value == "mnist" and checkpoint.value == "mnist-atld (shipped)"
    assert dataset.options[:2] == ["mnist · 1 checkpoint · sample only", "digits · 2 checkpoints · full data"]
    assert "**method** atld ·" in markdown_text(at)
    open_page(at, "attack")  # the shipped MNIST sample provides the test images
    assert any("on the shipped sample of 2,000 test images" in i.value for i in at.info)
    assert len(at.get("image")) == 6 * 4
    open_page(at, "train")
    assert any("needs its full data set" in w.value for w in at.warning)


def test_without_an_mnist_checkpoint_the_first_view_stays_digits(app_env, monkeypatch, tmp_path):
    monkeypatch.setenv("ATLD_SAMPLES_DIR", str(tmp_path / "no-samples"))
    at = start_app()
    dataset, checkpoint = at.sidebar.selectbox
    assert dataset.value == "digits" and checkpoint.value == "digits-atld (shipped)"
    assert dataset.options == ["digits · 2 checkpoints · full data"]  # no sample, no data: nothing else listed
    assert not any("shipped sample" in i.value for i in at.info)


def test_home_downloads_a_dataset_with_progress_and_then_uses_it(app_env, monkeypatch, tmp_path, tiny_idx_set):
    import hashlib
    import http.server
    import threading
    from functools import partial

    from torchvision.datasets import MNIST

    served = tmp_path / "served"
    files = tiny_idx_set(served, n_train=5, n_test=3)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(http.server.SimpleHTTPRequestHandler,
                                                                       directory=str(served)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(MNIST, "mirrors", [f"http://127.0.0.1:{server.server_address[1]}/"])
    monkeypatch.setattr(MNIST, "resources", [(n, hashlib.md5(d).hexdigest()) for n, d in files.items()])
    monkeypatch.setenv("ATLD_DATA_ROOT", str(tmp_path / "data"))
    try:
        at = start_app()
        at.button(key="dl_data_mnist").click().run()
        assert not at.exception
        from atld.ui.server import current_download
        job = current_download("mnist")
        assert job is not None and job.wait(60) and job.finished, job.error
        at.run()
        assert any("downloaded (4 files)" in s.value for s in at.success)
        assert "mnist · no checkpoint · full data" in at.sidebar.selectbox(key="atld_dataset").options
        assert (tmp_path / "data" / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz").is_file()
    finally:
        server.shutdown()
        server.server_close()
