"""The app's on-disk result store (atld.ui.result_store) and the Latent explorer's stored map
(atld.ui.latent.MapPointsCodec): results come back equal; a corrupt, foreign, oversized or
pickled entry is a miss that is removed, never an error; an unwritable folder is skipped."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import atld.ui.result_store as rs
from atld.ui.latent import MAP_POINTS_CODEC
from atld.ui.result_store import JSON, ResultStore
from tests.support import small_map

KEY = "ab" * 32


def test_json_results_come_back_equal(tmp_path):
    store = ResultStore(tmp_path)
    store.save(KEY, JSON, {"n_test": 450, "note": None, "x": [1.5, float("inf")]})
    assert store.load(KEY, JSON) == {"n_test": 450, "note": None, "x": [1.5, float("inf")]}
    assert store.load("cd" * 32, JSON) is None  # another key: a miss


def test_a_map_comes_back_equal(tmp_path):
    store, view = ResultStore(tmp_path), small_map()
    store.save(KEY, MAP_POINTS_CODEC, view)
    back = store.load(KEY, MAP_POINTS_CODEC)
    pd.testing.assert_frame_equal(back.table, view.table, check_dtype=False)
    assert (back.images_nat == view.images_nat).all() and (back.images_pert == view.images_pert).all()
    assert (back.accuracy_nat, back.accuracy_pert, len(back)) == (0.5, 0.25, 3)
    assert back.gap["mmd2"] == 0.1 and np.isnan(back.gap["per_class"][0]["discriminator_auc"])


def _npz(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _good_arrays() -> dict:
    view = small_map()
    with np.load(io.BytesIO(MAP_POINTS_CODEC.encode(view))) as z:
        return {k: z[k] for k in z.files}


@pytest.mark.parametrize("entry", [
    b"\x00garbage" * 10,  # not a zip
    b"",  # empty
    _npz(meta=np.array([{"a": 1}], dtype=object)),  # a pickled object: refused, never unpickled
    _npz(**{**_good_arrays(), "images_pert": np.zeros((2, 1, 4, 4), np.float32)}),  # parts that do not fit
    _npz(**{k: v for k, v in _good_arrays().items() if k != "col_x"}),  # a column missing
    _npz(**{**_good_arrays(), "meta": np.array("[1, 2]")}),  # meta that is not an object
], ids=["garbage", "empty", "pickle", "shapes", "column", "meta"])
def test_a_bad_map_entry_is_a_miss_and_is_removed(tmp_path, entry):
    store = ResultStore(tmp_path)
    path = store.path(KEY, MAP_POINTS_CODEC)
    path.write_bytes(entry)
    assert store.load(KEY, MAP_POINTS_CODEC) is None
    assert not path.exists()


def test_a_bad_or_oversized_json_entry_is_a_miss(tmp_path, monkeypatch):
    store = ResultStore(tmp_path)
    store.path(KEY, JSON).write_text("{not json")
    assert store.load(KEY, JSON) is None
    store.save(KEY, JSON, {"x": "y" * 100})
    monkeypatch.setattr(rs, "MAX_ENTRY_BYTES", 50)
    assert store.load(KEY, JSON) is None and not store.path(KEY, JSON).exists()


def test_entries_that_are_not_regular_files_are_misses(tmp_path):
    store = ResultStore(tmp_path)
    store.path(KEY, JSON).mkdir()
    assert store.load(KEY, JSON) is None
    os.mkfifo(store.path("cd" * 32, JSON))
    assert store.load("cd" * 32, JSON) is None  # never blocks on a FIFO


def test_an_unwritable_folder_is_skipped(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    store = ResultStore(blocker / "views")
    store.save(KEY, JSON, {"x": 1})  # no error
    assert store.load(KEY, JSON) is None


def test_a_stored_map_is_read_without_torch(tmp_path):
    """The server draws the Latent explorer from stored results without importing torch: the
    modules the page and the service use, and reading a stored map, must not pull it in."""
    ResultStore(tmp_path).save(KEY, MAP_POINTS_CODEC, small_map())
    code = f"""
import sys
import atld.ui.attack, atld.ui.compute, atld.ui.evaluate, atld.ui.hover
import atld.ui.latent, atld.ui.server, atld.ui.service, atld.ui.session
from atld.ui.result_store import ResultStore
from atld.ui.latent import MAP_POINTS_CODEC
assert len(ResultStore({str(tmp_path)!r}).load({KEY!r}, MAP_POINTS_CODEC)) == 3
assert "torch" not in sys.modules, "torch was imported"
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
