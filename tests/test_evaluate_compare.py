"""atld.evaluate.compare: stored evaluations side by side, trusting only measured numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from atld.evaluate.compare import cell_text, comparison_row, comparison_rows, stored_rows
from atld.evaluate.report import make_row

REPO = Path(__file__).resolve().parents[1]


def _card(method: str, *rows) -> dict:
    return {"method": method, "evaluations": {"rows": [make_row(*r) for r in rows]}}


NATURAL = ("natural", "atld-", "direct", 98, 100, 0.0, 0.1)


def test_only_measured_numbers_are_trusted_never_an_upper_bound_or_a_non_adaptive_imt_row():
    card = _card("atld", NATURAL, ("pgd20", "atld-", "direct", 40, 100, 0.3, 1.0),
                 ("autoattack", "atld-", "direct", 5, 100, 0.3, 9.0),
                 ("autoattack", "atld", "non-adaptive: attack the bare classifier, then IMT", 60, 100, 0.3, 9.0),
                 ("adaptive", "atld", "adaptive through IMT", 2, 100, 0.3, 9.0))
    row = comparison_row("m", card)
    assert row["trusted"]["accuracy"] == pytest.approx(0.05) and row["trusted"]["inference"] == "atld-"
    assert row["pgd20"]["accuracy"] == pytest.approx(0.40) and row["adaptive_imt"]["accuracy"] == pytest.approx(0.02)
    assert row["adaptive_imt_plus"] is None and row["epsilon"] == pytest.approx(0.3)


def test_imt_is_trusted_when_its_adaptive_number_is_the_highest_measured():
    card = _card("atld", NATURAL, ("autoattack", "atld-", "direct", 5, 100, 0.3, 9.0),
                 ("adaptive", "atld+", "adaptive through IMT", 30, 100, 0.3, 9.0))
    assert comparison_row("m", card)["trusted"]["inference"] == "atld+"


def test_a_checkpoint_with_only_pgd_has_no_trusted_number_and_sorts_last():
    weak = _card("pgd-at", NATURAL, ("pgd20", "atld-", "direct", 90, 100, 0.3, 1.0))
    strong = _card("pgd-at", NATURAL, ("autoattack", "atld-", "direct", 50, 100, 0.3, 9.0))
    bare = {"method": "natural"}
    rows = comparison_rows([("weak", weak), ("none", bare), ("strong", strong)])
    assert [r["checkpoint"] for r in rows] == ["strong", "none", "weak"]
    assert rows[2]["trusted"] is None and rows[2]["pgd20"]["accuracy"] == pytest.approx(0.9)
    assert rows[1]["clean"] is None and cell_text(rows[1]["clean"]) == "–"


@pytest.mark.parametrize("card", [{}, {"evaluations": None}, {"evaluations": {"rows": "x"}},
                                  {"evaluations": {"rows": [{"attack": "pgd20"}, 3]}}])
def test_malformed_stored_evaluations_read_as_none(card):
    assert stored_rows(card) == [] and comparison_row("x", card)["trusted"] is None


def test_every_shipped_checkpoint_of_a_dataset_gets_its_trusted_number_with_interval_and_n():
    cards = [(p.name, json.loads((p / "card.json").read_text())) for p in sorted(REPO.glob("checkpoints/mnist-*"))
             if (p / "card.json").is_file()]
    rows = comparison_rows(cards)
    assert len(rows) >= 4
    for row in rows:
        trusted = row["trusted"]
        assert trusted is not None and trusted["n"] >= 100 and trusted["ci_low"] <= trusted["accuracy"]
        if trusted["inference"] == "atld-" and row["pgd20"] is not None:  # PGD-20 is the bare classifier's bound
            assert row["pgd20"]["accuracy"] >= trusted["accuracy"] - 1e-9
    accuracies = [r["trusted"]["accuracy"] for r in rows]
    assert accuracies == sorted(accuracies, reverse=True)
    top = rows[0]["autoattack"]
    assert f"{100 * top['accuracy']:.1f} %" in cell_text(top) and f"n {top['n']:,})" in cell_text(top)
