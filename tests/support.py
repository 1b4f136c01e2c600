"""Helpers shared by several test files (test files never import each other; fixtures live in
conftest.py, which takes its constants from here): where the shipped checkpoints are, the class a
collapsing test run predicts, and how a test opens the app under AppTest."""

from __future__ import annotations

import os
from pathlib import Path

from streamlit.testing.v1 import AppTest

REPO = Path(__file__).resolve().parents[1]
# the shipped checkpoints; ATLD_TEST_CHECKPOINTS points elsewhere (e.g. to try other trained runs)
SHIPPED = Path(os.environ.get("ATLD_TEST_CHECKPOINTS", REPO / "checkpoints"))
COLLAPSE_CLASS = 3  # the class a collapsing run ends up predicting everywhere (conftest's `collapsing` fixture)

APP = str(REPO / "app.py")
TIMEOUT = 120  # seconds per script run: torch work on a busy 2-core machine


def start_app() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def open_page(at: AppTest, page: str) -> AppTest:
    at.switch_page(f"app_pages/{page}_page.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def small_map(n: int = 3):
    """A tiny stored map of the Latent explorer (`MapPoints`) with realistic gap numbers."""
    import numpy as np
    import pandas as pd

    from atld.config.latent import POINT_COLUMNS
    from atld.latent.gap import MEASURE_KEYS
    from atld.ui.latent import MapPoints

    rng = np.random.default_rng(0)
    table = pd.DataFrame({"index": np.tile(np.arange(n), 2), "set": ["natural"] * n + ["perturbed"] * n,
                          "label": np.tile(np.arange(n), 2), "label_name": ["a", "b", "c"][:n] * 2,
                          "pred": np.zeros(2 * n, dtype=np.int64), "pred_name": ["a"] * (2 * n),
                          "correct": np.arange(2 * n) % n == 0, "d_natural": [np.nan] * (2 * n),
                          "x": rng.normal(size=2 * n), "y": rng.normal(size=2 * n)}, columns=list(POINT_COLUMNS))
    images = rng.random((n, 1, 4, 4), dtype=np.float32)
    gap = {**dict.fromkeys(MEASURE_KEYS, 0.1), "discriminator_auc": None,
           "per_class": [{"label": 0, "discriminator_auc": float("nan")}]}
    return MapPoints(table, 0.5, 0.25, gap, images, np.clip(images + 0.1, 0, 1))
