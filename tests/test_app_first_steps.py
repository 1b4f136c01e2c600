"""AppTest of a researcher's and a newcomer's first steps: Evaluate's side-by-side table of every
checkpoint (the stored numbers to trust), the verdict coloured by outcome, the quick-demo preset
that trains here, form fields that show their defaults, an unknown checkpoint in the address said
in one line, and Home's "Bring your own model" (a refusal in one line; an import that lands in
the sidebar, marked imported, and that Evaluate then evaluates without IMT)."""

from __future__ import annotations

import io
import shutil

import torch
import pytest
from streamlit.testing.v1 import AppTest

from atld.data.registry import get_spec
from atld.evaluate import EvalReport, make_row, store_evaluation
from atld.models.registry import build_classifier
from atld.vocab import Protocol
from tests.support import APP, TIMEOUT, open_page, start_app


def _shipped_with_evaluations(app_checkpoints, tmp_path, monkeypatch):
    """The two test checkpoints as the shipped ones, each with a stored evaluation."""
    shipped = tmp_path / "shipped"
    for name in ("digits-atld", "digits-natural"):
        shutil.copytree(app_checkpoints / name, shipped / name)
    store_evaluation(shipped / "digits-atld", EvalReport([
        make_row("natural", "atld-", Protocol.DIRECT, 90, 100, 0.0, 1.0),
        make_row("pgd20", "atld-", Protocol.DIRECT, 60, 100, 0.2, 1.0),
        make_row("autoattack", "atld-", Protocol.DIRECT, 40, 100, 0.2, 1.0),
        make_row("adaptive", "atld", Protocol.ADAPTIVE, 10, 100, 0.2, 1.0)], {"date": "2026-01-01"}))
    store_evaluation(shipped / "digits-natural", EvalReport([
        make_row("natural", "atld-", Protocol.DIRECT, 95, 100, 0.0, 1.0),
        make_row("pgd20", "atld-", Protocol.DIRECT, 5, 100, 0.2, 1.0)], {"date": "2026-01-01"}))
    monkeypatch.setenv("ATLD_CHECKPOINTS_DIR", str(shipped))
    return shipped


@pytest.mark.slow
def test_evaluate_compares_every_checkpoint_and_colours_a_negative_verdict(app_env, app_checkpoints, tmp_path,
                                                                            monkeypatch):
    _shipped_with_evaluations(app_checkpoints, tmp_path, monkeypatch)
    at = start_app()
    at.switch_page("app_pages/evaluate_page.py").run()
    assert not at.exception
    # IMT's adaptive 10 % is below the bare classifier's AutoAttack 40 %: the finding comes first, as a warning
    assert at.warning[0].value.startswith("atld (one IMT step): 10.0 %") and "less robust" in at.warning[0].value
    assert not any("less robust" in s.value for s in [*at.success, *at.info])
    assert at.info[0].value.startswith("atld- (the bare classifier): 40.0 %")
    table = at.table[0].value
    assert list(table.index) == ["digits-atld (shipped)", "digits-natural (shipped)"]  # most robust first
    atld, natural = table.iloc[0], table.iloc[1]
    assert atld["trusted (measured)"].startswith("40.0 % (") and atld["trusted (measured)"].endswith("n 100) · atld-")
    assert atld["AutoAttack"].startswith("40.0 % (") and atld["adaptive through IMT (atld)"].startswith("10.0 % (")
    assert atld["PGD-20 (upper bound)"].startswith("60.0 % (") and atld["adaptive through IMT (atld+)"] == "–"
    assert natural["trusted (measured)"] == "not measured" and natural["clean"].startswith("95.0 %")
    # the curve's default set: one model per method (the natural baseline beside ATLD), in the address
    assert at.multiselect(key="ev_curve_runs").value == ["digits-atld (shipped)", "digits-natural (shipped)"]


def test_quick_demo_switches_to_a_dataset_that_trains_here_and_fields_show_defaults(app_env, mnist_app_checkpoints,
                                                                                    monkeypatch):
    monkeypatch.setenv("ATLD_CHECKPOINTS_DIR", str(mnist_app_checkpoints))
    at = start_app()
    assert at.sidebar.selectbox(key="atld_dataset").value == "mnist"  # MNIST: only its shipped sample here
    at = open_page(at, "train")
    assert any("Start would fail" in w.value and "mnist" in w.value for w in at.warning)  # said before the click
    assert at.text_input(key="train_batch_size").placeholder == "default: 100"  # MNIST's recipe
    assert "(default: 5)" in at.number_input(key="train_epochs").help
    at.button(key="train_preset_Quick demo").click().run()
    assert at.selectbox(key="train_dataset").value == "digits"
    assert any(i.value.startswith("Quick demo: digits") for i in at.info)
    assert not any("Start would fail" in w.value for w in at.warning)
    assert at.text_input(key="train_batch_size").placeholder == "default: 50"  # digits' recipe now


def test_an_unknown_checkpoint_in_the_address_is_said_in_one_line(app_env):
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params["checkpoint"] = "no-such-run (shipped)"
    at.run()
    assert not at.exception
    shown = at.sidebar.selectbox(key="atld_run").value
    assert shown == "digits-atld (shipped)"
    assert [w.value for w in at.sidebar.warning] == [f"No checkpoint 'no-such-run (shipped)' here: showing "
                                                     f"{shown} instead."]
    at.run()  # the address now names what is shown: no warning any more
    assert not at.sidebar.warning
    known = AppTest.from_file(APP, default_timeout=TIMEOUT)
    known.query_params["checkpoint"] = "digits-natural (shipped)"
    known.run()
    assert known.sidebar.selectbox(key="atld_run").value == "digits-natural (shipped)" and not known.sidebar.warning


def _weights(arch: str = "small-cnn", dataset: str = "digits") -> bytes:
    torch.manual_seed(0)
    buf = io.BytesIO()
    torch.save(build_classifier(arch, get_spec(dataset)).state_dict(), buf)
    return buf.getvalue()


def test_an_upload_that_is_refused_says_why_in_one_line_and_writes_nothing(app_env, monkeypatch):
    monkeypatch.setenv("ATLD_UPLOAD_MB", "1")
    at = start_app()
    uploader = at.get("file_uploader")[0]
    assert "at most 1 MB" in uploader.label
    at.selectbox(key="home_import_arch").set_value("small-cnn")
    at.selectbox(key="home_import_dataset").set_value("digits")
    uploader.set_value(("big.pt", b"\0" * (2**20 + 1), "application/octet-stream"))
    at.run()
    at.button(key="home_import_go").click().run()
    assert [e.value for e in at.error] == ["Not imported: big.pt is 1 MB, over the limit of 1 MB (ATLD\\_UPLOAD\\_MB)."]
    at.get("file_uploader")[0].set_value(("model.pt", _weights("fast-cnn-bn", "mnist"), "application/octet-stream"))
    at.run()
    at.button(key="home_import_go").click().run()  # small-cnn weights expected: the wrong layout
    assert not at.exception and len(at.error) == 1 and at.error[0].value.startswith("Not imported: ")
    assert "\n" not in at.error[0].value
    assert not app_env.exists() or not any(app_env.iterdir())  # nothing written


def test_an_imported_model_lands_in_the_sidebar_and_evaluates_without_imt(app_env):
    at = start_app()
    at.selectbox(key="home_import_arch").set_value("small-cnn")
    at.selectbox(key="home_import_dataset").set_value("digits")
    at.get("file_uploader")[0].set_value(("my model.pt", _weights(), "application/octet-stream"))
    at.run()
    assert any("sample images: under a second" in c.value for c in at.caption)  # the time estimate before the import
    at.button(key="home_import_go").click().run()
    assert not at.exception and not at.error
    (run,) = list(app_env.iterdir())
    label = f"{run.name} (imported)"
    assert at.sidebar.selectbox(key="atld_run").value == label  # selected, marked imported
    assert any(f"as {run.name}" in n.value for n in [*at.warning, *at.success])  # random weights: near chance
    assert any("imported weights" in c.value for c in at.sidebar.caption)
    at = open_page(at, "evaluate")
    assert any("no discriminator, so IMT" in i.value for i in at.info)
    at.multiselect(key="ev_attacks").set_value(["natural", "pgd20"])
    at.number_input(key="ev_limit").set_value(10)
    at.button(key="ev_go").click().run()
    assert not at.exception and not at.error
    quick = [d.value for d in at.dataframe if "attack" in d.value.columns][-1]
    assert set(quick["inference"]) == {"atld-"}
    assert label in list(at.table[0].value.index)


def test_the_import_view_removes_the_upload_whether_imported_or_refused(app_env, tmp_path):
    from atld.errors import ATLDError
    from atld.ui import compute

    for name, data in (("bad", b"not a weights file"), ("good", _weights())):
        upload = tmp_path / f"{name}.upload"
        upload.write_bytes(data)
        request = compute.ImportRequest(str(upload), "x", f"{name}.pt", "small-cnn", "digits", "auto", f"digits-{name}",
                                        str(app_env))
        if name == "bad":
            with pytest.raises(ATLDError):
                compute.import_model(request)
            assert not app_env.exists() or not any(app_env.iterdir())
        else:
            result = compute.import_model(request)
            assert result["name"] == "digits-good" and (app_env / "digits-good" / "card.json").exists()
            assert result["accuracy"] is not None and result["format"]
        assert not upload.exists()
