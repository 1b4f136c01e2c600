"""The runs list (`atld.ui.runs.discover_runs`) is bounded and incremental: one scan and one lstat
per run, a card parsed only when it changed, no cliff past any number of runs (it used to clear
its cache at 1,000 cards and re-parse every card on each rerun), small summaries kept for the
listing and a bounded number of full cards; oversized cards are refused without being read, big
but valid ones are checked in full without jsonschema walking every epoch. (Speed figures:
benchmarks/bench_runs_list.py.)"""

from __future__ import annotations

import json
import os

import pytest

import atld.ui.runs as ui_runs
from atld.runs.card import CARD, MAX_CARD_BYTES, read_card
from atld.ui.runs import card_of, discover_runs


@pytest.fixture
def small_card(app_checkpoints):
    card = read_card(app_checkpoints / "digits-natural")
    return {**card, "metrics": card["metrics"][:1], "evaluations": card.get("evaluations", {"format": "atld-eval",
                                                                                          "version": 1, "rows": []})}


def _make(root, names, card):
    text = json.dumps(card)
    for name in names:
        (root / name).mkdir(parents=True)
        (root / name / CARD).write_text(text)


@pytest.fixture
def counted_reads(monkeypatch):
    reads = []
    real = ui_runs.read_card
    monkeypatch.setattr(ui_runs, "read_card", lambda path: reads.append(path) or real(path))
    monkeypatch.setattr(ui_runs, "_summaries", type(ui_runs._summaries)())
    monkeypatch.setattr(ui_runs, "_cache", type(ui_runs._cache)())
    return reads


def test_past_a_thousand_runs_a_listing_reads_nothing_that_did_not_change(tmp_path, small_card, counted_reads):
    root = tmp_path / "runs"
    names = [f"run-{i:05d}" for i in range(1200)]
    _make(root, names, small_card)
    first = discover_runs([("runs", root)])
    assert [r.path.name for r in first] == names and len(counted_reads) == 1200
    for _ in range(3):  # every rerun: no card parsed (the old cache cleared itself at 1,000 and re-read all)
        assert discover_runs([("runs", root)]) == first
    assert len(counted_reads) == 1200
    changed = root / names[700] / CARD  # incremental: a changed card, a removed run, a new run
    changed.write_text(json.dumps({**small_card, "status": "stopped"}))
    os.rename(root / names[5], tmp_path / "gone")
    _make(root, ["run-new"], small_card)
    again = discover_runs([("runs", root)])
    assert len(counted_reads) == 1202 and len(again) == 1200
    assert {r.path.name: r.status for r in again}[names[700]] == "stopped"
    assert names[5] not in {r.path.name for r in again} and "run-new" in {r.path.name for r in again}


def test_the_caches_stay_bounded_and_evict_one_entry_at_a_time(tmp_path, small_card, counted_reads, monkeypatch):
    monkeypatch.setattr(ui_runs, "MAX_CACHED_CARDS", 10)
    monkeypatch.setattr(ui_runs, "MAX_CACHED_SUMMARIES", 50)
    root = tmp_path / "runs"
    names = [f"r{i:03d}" for i in range(40)]
    _make(root, names, small_card)
    for name in names:
        assert card_of(root / name)["dataset"] == small_card["dataset"]
    assert len(ui_runs._cache) == 10  # the 10 most recent full cards, not cleared
    assert [p.name for p in ui_runs._cache] == names[-10:]
    card_of(root / names[-1])
    assert len(counted_reads) == 40  # still cached: no cliff
    discover_runs([("runs", root)])
    assert len(ui_runs._summaries) == 40 and len(counted_reads) == 80
    _make(root, [f"s{i:03d}" for i in range(20)], small_card)
    discover_runs([("runs", root)])
    assert len(ui_runs._summaries) == 50  # bounded


def test_oversized_and_subtly_broken_big_cards(tmp_path, small_card, counted_reads):
    root = tmp_path / "runs"
    metrics = [{f"m{k}": 0.25 * k for k in range(40)} for _ in range(5000)]  # a valid card of ~4.6 MB
    big = {**small_card, "metrics": metrics, "epochs_done": 5000, "config": {**small_card["config"], "epochs": 5000}}
    _make(root, ["big-valid"], big)
    bad = {**big, "metrics": [*metrics[:-1], {**metrics[-1], "m3": "x"}]}  # one string deep inside
    _make(root, ["big-bad-metric"], bad)
    bad_bool = {**big, "metrics": [*metrics[:-1], {**metrics[-1], "m3": True}]}
    _make(root, ["big-bool-metric"], bad_bool)
    too_many = {**big, "metrics": [*metrics[:-1], {f"k{i}": 1 for i in range(101)}]}
    _make(root, ["big-101-metrics"], too_many)
    (root / "oversized").mkdir()
    with open(root / "oversized" / CARD, "wb") as fh:  # sparse: 17 MB on paper, nothing on disk
        fh.truncate(MAX_CARD_BYTES + 2**20)
    listed = {r.path.name for r in discover_runs([("runs", root)])}
    assert listed == {"big-valid"}
    assert card_of(root / "big-valid")["epochs_done"] == 5000 and card_of(root / "big-bad-metric") is None
