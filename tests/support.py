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
