"""The app's stored views (`atld.ui.result_store`, `atld.ui.view_schemas`): every entry is checked
against its view's schema when read, and is used only for the exact request key it was computed
for; anything else is a miss, removed and computed again. The tampered entries below carry the
right header (an attacker can write it too), so only the schema stands between them and a page."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from atld.ui import view_schemas as vs
from atld.ui.latent import MAP_POINTS_CODEC as MAP_VIEW_CODEC
from atld.ui.result_store import ResultStore, entry_header

KEY, OTHER = "ab" * 32, "cd" * 32

FIGURE = json.dumps({"data": [{"type": "scatter", "x": [1], "y": [2]}], "layout": {"title": {"text": "t"}}})
GAP = {**dict.fromkeys(vs._MEASURES, 0.5), "discriminator_auc": None, "n_natural": 3, "n_perturbed": 3,
       "settings": {"folds": 5}, "per_class": [{"label": 0, **dict.fromkeys(vs._MEASURES, None)}]}
CHECK = {"n": 40, "epsilon": 0.3, "auc_pgd": 0.8, "auc_own": 0.7, "train_auc": None, "window": [0.3, 0.7],
         "in_window_natural": 0.1, "in_window_pgd": 0.2, "p_natural": [0.1, 0.5, 0.9], "p_pgd": [0.0, 0.3, 0.8],
         "p_pgd_after_imt": 0.4, "separates": True, "uniform_half_step": False, "sentences": ["a", "b"],
         "separation_auc": 0.75, "window_share": 0.9}

# codec -> (a valid value, {case: a value that must be a miss})
VIEWS = {
    "data_facts": (vs.DATA_FACTS, {"n_test": 450, "note": None}, {
        "empty object": {}, "negative count": {"n_test": -5, "note": None}, "zero": {"n_test": 0, "note": None},
        "count as text": {"n_test": "450", "note": None}, "fraction": {"n_test": 1.5, "note": None},
        "boolean": {"n_test": True, "note": None}, "note missing": {"n_test": 450}, "a list": [450],
        "note not text": {"n_test": 450, "note": 3}, "extra field": {"n_test": 450, "note": None, "x": 1},
        "null": None}),
    "latent_plot": (vs.LATENT_PLOT, FIGURE, {
        "empty object": {}, "JSON of nothing": "{}", "not JSON": "{nope", "a number": 42,
        "data not a list": json.dumps({"data": 5, "layout": {}}), "trace without type": json.dumps(
            {"data": [{"x": [1]}], "layout": {}}), "layout missing": json.dumps({"data": []})}),
    "compare_plots": (vs.COMPARE_PLOTS, {"figures": [FIGURE, FIGURE], "explained": [[0.4, 0.2], [0.3, 0.25]],
                                         "rotated": True, "gaps": [GAP, GAP]}, {
        "empty object": {}, "one figure": {"figures": [FIGURE], "explained": [[0.4, 0.2], [0.3, 0.25]],
                                           "rotated": True, "gaps": [GAP, GAP]},
        "a figure that is not one": {"figures": [FIGURE, "{}"], "explained": [[0.4, 0.2], [0.3, 0.25]],
                                     "rotated": True, "gaps": [GAP, GAP]},
        "a gap without its numbers": {"figures": [FIGURE, FIGURE], "explained": [[0.4, 0.2], [0.3, 0.25]],
                                      "rotated": False, "gaps": [GAP, {"per_class": []}]},
        "a share over 1": {"figures": [FIGURE, FIGURE], "explained": [[1.4, 0.2], [0.3, 0.25]], "rotated": True,
                           "gaps": [GAP, GAP]},
        "rotated as text": {"figures": [FIGURE, FIGURE], "explained": [[0.4, 0.2], [0.3, 0.25]], "rotated": "yes",
                            "gaps": [GAP, GAP]}}),
    "discriminator_check": (vs.DISCRIMINATOR_CHECK, CHECK, {
        "empty object": {}, "AUC over 1": {**CHECK, "auc_pgd": 1.5}, "n negative": {**CHECK, "n": -5},
        "window of one": {**CHECK, "window": [0.3]}, "sentences not a list": {**CHECK, "sentences": "a"},
        "a field missing": {k: v for k, v in CHECK.items() if k != "p_pgd"}}),
}
CASES = [(view, case) for view, (_, _, bad) in VIEWS.items() for case in bad]


@pytest.mark.parametrize("view", list(VIEWS))
def test_a_valid_entry_of_every_view_comes_back(tmp_path, view):
    codec, good, _ = VIEWS[view]
    store = ResultStore(tmp_path)
    store.save(KEY, codec, good)
    assert store.load(KEY, codec) == good


@pytest.mark.parametrize("view, case", CASES, ids=[f"{v}: {c}" for v, c in CASES])
def test_an_entry_that_does_not_fit_its_view_is_a_miss_and_is_removed(tmp_path, view, case):
    codec, _, bad = VIEWS[view]
    store = ResultStore(tmp_path)
    path = store.path(KEY, codec)
    path.write_bytes(entry_header(KEY) + json.dumps(bad[case]).encode())
    assert store.load(KEY, codec) is None
    assert not path.exists()


def _map_arrays():
    from tests.support import small_map

    view = small_map()
    view.gap.update(GAP)
    import io

    with np.load(io.BytesIO(MAP_VIEW_CODEC.encode(view))) as z:
        return {k: z[k] for k in z.files}


def _npz(arrays) -> bytes:
    from atld.fileio import npz_bytes

    return npz_bytes(arrays)


def _meta(**change):
    arrays = _map_arrays()
    meta = json.loads(str(arrays["meta"]))
    meta.update(change)
    return {**arrays, "meta": np.array(json.dumps(meta))}


MAP_CASES = {
    "accuracy over 1": lambda: _meta(accuracy_nat=2.0),
    "accuracy as text": lambda: _meta(accuracy_pert="0.5"),
    "gap empty": lambda: _meta(gap={}),
    "gap numbers as text": lambda: _meta(gap={**GAP, "mmd2": "big"}),
    "images with NaN": lambda: {**_map_arrays(), "images_nat": np.full((3, 1, 4, 4), np.nan, np.float32)},
    "images out of range": lambda: {**_map_arrays(), "images_pert": np.full((3, 1, 4, 4), 7.0, np.float32)},
    "an unknown point set": lambda: {**_map_arrays(), "col_set": np.array(["natural", "evil"] * 3)},
    "coordinates as text": lambda: {**_map_arrays(), "col_x": np.array(["a"] * 6)},
}


@pytest.mark.parametrize("case", list(MAP_CASES))
def test_a_stored_map_that_does_not_fit_is_a_miss_and_is_removed(tmp_path, case):
    store = ResultStore(tmp_path)
    good = _map_arrays()
    store.path(KEY, MAP_VIEW_CODEC).write_bytes(entry_header(KEY) + _npz(good))
    assert store.load(KEY, MAP_VIEW_CODEC) is not None  # the untampered map is read
    path = store.path(KEY, MAP_VIEW_CODEC)
    path.write_bytes(entry_header(KEY) + _npz(MAP_CASES[case]()))
    assert store.load(KEY, MAP_VIEW_CODEC) is None and not path.exists()


# ----------------------------------------------------------------------------- bound to their key

def test_entries_are_used_only_for_the_key_they_were_computed_for(tmp_path, monkeypatch):
    import atld
    import atld.ui.result_store as rs

    store = ResultStore(tmp_path)
    a, b = {"n_test": 450, "note": None}, {"n_test": 100, "note": "the shipped sample"}
    store.save(KEY, vs.DATA_FACTS, a)
    store.save(OTHER, vs.DATA_FACTS, b)
    pa, pb = store.path(KEY, vs.DATA_FACTS), store.path(OTHER, vs.DATA_FACTS)
    swap = tmp_path / "swap"
    os.rename(pa, swap)
    os.rename(pb, pa)
    os.rename(swap, pb)  # swapped: each file now holds the other key's numbers
    assert store.load(KEY, vs.DATA_FACTS) is None and store.load(OTHER, vs.DATA_FACTS) is None
    store.save(KEY, vs.DATA_FACTS, a)
    shutil.copy(pa, pb)  # a copy under another key's name
    assert store.load(OTHER, vs.DATA_FACTS) is None and store.load(KEY, vs.DATA_FACTS) == a
    pa.write_bytes(json.dumps(a).encode())  # an entry of the old format, without its key
    assert store.load(KEY, vs.DATA_FACTS) is None
    store.save(KEY, vs.DATA_FACTS, a)
    monkeypatch.setattr(atld, "__version__", "99.0")  # another version of the lab
    assert store.load(KEY, vs.DATA_FACTS) is None
    monkeypatch.undo()
    store.save(KEY, vs.DATA_FACTS, a)
    monkeypatch.setattr(rs, "STORE_VERSION", rs.STORE_VERSION + 1)  # another format of the store
    assert store.load(KEY, vs.DATA_FACTS) is None


def _eventually(condition, seconds: float = 10.0) -> bool:
    import time

    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_the_service_recomputes_a_tampered_or_swapped_view(tmp_path, monkeypatch):
    """The real `data_facts` view through a thread-mode service: a stored entry replaced by `{}`
    or by `{"n_test": -5}` (with a valid header), or swapped with another request's entry, is
    computed again and the valid result stored back."""
    from atld.ui import compute
    from atld.ui.service import ComputeService, request_key

    monkeypatch.setenv("ATLD_CACHE", str(tmp_path / "cache"))

    def fresh():
        return ComputeService(1, "thread", store_dir=tmp_path / "views").start()

    service = fresh()
    full = service.submit(compute.data_facts, (compute.DataFacts("digits", True),)).result()
    sample = service.submit(compute.data_facts, (compute.DataFacts("digits", False),)).result()
    service.close()
    assert full["n_test"] > 1
    key_full = request_key(compute.data_facts, (compute.DataFacts("digits", True),))
    key_sample = request_key(compute.data_facts, (compute.DataFacts("digits", False),))
    store = ResultStore(tmp_path / "views")
    p_full, p_sample = store.path(key_full, vs.DATA_FACTS), store.path(key_sample, vs.DATA_FACTS)
    assert _eventually(lambda: store.load(key_full, vs.DATA_FACTS) == full
                       and store.load(key_sample, vs.DATA_FACTS) == sample)
    for body in (b"{}", b'{"n_test": -5, "note": null}'):
        p_full.write_bytes(entry_header(key_full) + body)
        service = fresh()
        assert service.submit(compute.data_facts, (compute.DataFacts("digits", True),)).result() == full
        assert service.counts["stored_hits"] == 0 and service.counts["computed"] >= 1
        service.close()
        assert _eventually(lambda: store.load(key_full, vs.DATA_FACTS) == full)  # stored again (after the hand-over)
    data_full, data_sample = p_full.read_bytes(), p_sample.read_bytes()
    p_full.write_bytes(data_sample)
    p_sample.write_bytes(data_full)
    service = fresh()
    assert service.submit(compute.data_facts, (compute.DataFacts("digits", False),)).result() == sample
    assert service.counts["stored_hits"] == 0
    service.close()


def test_what_the_persisted_views_really_return_fits_their_schemas(atld_run, digits):
    """A schema that no longer matches its view would turn every stored entry into a miss (the
    view recomputed on every visit): each view's real result, as JSON, must pass its check."""
    import json

    from atld.evaluate.discriminator import discriminator_check

    x, y = digits.split("test")
    check = discriminator_check(atld_run, x[:40], y[:40], atld_run.spec.epsilon, seed=0).to_dict()
    vs.validate(json.loads(json.dumps(check)), "DISCRIMINATOR_CHECK_SCHEMA")
    from atld.ui import compute

    facts = compute.data_facts.fn(compute.DataFacts("digits", True))
    vs.validate(json.loads(json.dumps(facts)), "DATA_FACTS_SCHEMA")
    from atld.evaluate.discriminator import what_d_learned

    learned = what_d_learned(atld_run, x[:40], y[:40], seed=0, shares=(0.0, 0.5, 1.0))
    vs.validate(json.loads(json.dumps(learned)), "LEARNED_SCHEMA")
    with pytest.raises(ValueError):
        vs.validate({**json.loads(json.dumps(learned)), "n": -1}, "LEARNED_SCHEMA")
