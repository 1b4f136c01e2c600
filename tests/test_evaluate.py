"""Evaluation: the table's numbers, protocols, intervals, storage, curve and diagnostics."""

from __future__ import annotations

import csv
import io
import json
import shutil

import pytest

from atld.attacks.registry import ATTACK_NAMES
from atld.config.eval import EvalConfig
from atld.vocab import Protocol
from atld.errors import CheckpointError, ConfigError
from atld.evaluate import (EvalReport, evaluate, robust_accuracy_curve,
                           store_evaluation, wilson_interval)
from atld.evaluate.report import ROW_KEYS
from atld.inference import predict
from atld.runs.card import read_card
from atld.runs.store import load_checkpoint

PROTOCOL_DIRECT, PROTOCOL_NON_ADAPTIVE, PROTOCOL_ADAPTIVE = Protocol.DIRECT, Protocol.NON_ADAPTIVE, Protocol.ADAPTIVE


# ----------------------------------------------------------------------------- Wilson interval

@pytest.mark.parametrize("k, n", [(0, 10), (5, 10), (10, 10), (37, 64), (1, 450), (449, 450)])
def test_wilson_interval_matches_scipy(k, n):
    from scipy.stats import binomtest

    expected = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    low, high = wilson_interval(k, n)
    assert low == pytest.approx(expected.low, abs=1e-9) and high == pytest.approx(expected.high, abs=1e-9)
    assert 0 <= low <= k / n <= high <= 1


def test_wilson_interval_rejects_nonsense():
    for k, n in [(1, 0), (-1, 5), (6, 5)]:
        with pytest.raises(ConfigError):
            wilson_interval(k, n)


# ----------------------------------------------------------------------------- config validation

@pytest.mark.parametrize("kwargs, message", [
    ({"attacks": ("pgd7",)}, "unknown attack"),
    ({"attacks": ()}, "at least one attack"),
    ({"attacks": ""}, "at least one attack"),
    ({"inferences": ("atld++",)}, "unknown inference"),
    ({"limit": 0}, "limit"),
    ({"epsilon": -0.1}, "epsilon"),
    ({"epsilon": 1.5}, "epsilon"),
    ({"apgd_steps": 0}, "APGD steps"),
    ({"square_queries": 0}, "Square queries"),
    ({"batch_size": 0}, "batch size"),
    ({"device": "tpu"}, "device"),
])
def test_bad_eval_config_gives_one_line_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message) as info:
        EvalConfig(**kwargs)
    assert "\n" not in str(info.value)


def test_eval_config_accepts_comma_lists_and_dedupes():
    config = EvalConfig(attacks="natural, pgd20,pgd20", inferences="atld-,atld")
    assert config.attacks == ("natural", "pgd20") and config.inferences == ("atld-", "atld")
    assert set(ATTACK_NAMES) >= {"natural", "fgsm", "pgd20", "pgd100", "cw20", "cw100", "autoattack", "adaptive",
                                 "square"}


# ----------------------------------------------------------------------------- evaluate

def test_evaluate_natural_checkpoint(natural_run, digits, digits_batch):
    run = natural_run
    config = EvalConfig(attacks=("natural", "fgsm", "pgd20", "cw20"), limit=40, device="cpu")
    report = evaluate(run, config, data=digits)
    assert [(r["attack"], r["inference"]) for r in report.rows] == [
        ("natural", "atld-"), ("fgsm", "atld-"), ("pgd20", "atld-"), ("cw20", "atld-")]
    x, y = digits_batch(40)
    clean = (predict(run, x, "atld-").argmax(1) == y).sum().item()
    for r in report.rows:
        assert tuple(r) == ROW_KEYS
        assert r["n"] == 40 and r["accuracy"] == r["correct"] / 40
        assert r["ci_low"] <= r["accuracy"] <= r["ci_high"]
        assert r["protocol"] == PROTOCOL_DIRECT
        assert r["correct"] <= clean
    assert report.row("natural", "atld-")["correct"] == clean and report.row("natural", "atld-")["epsilon"] == 0
    assert report.row("pgd20", "atld-")["epsilon"] == run.spec.epsilon
    assert report.row("pgd20", "atld-")["accuracy"] < report.row("natural", "atld-")["accuracy"] - 0.3
    again = evaluate(run, config, data=digits)
    assert [r["correct"] for r in again.rows] == [r["correct"] for r in report.rows]  # seeded
    assert report.meta["model_hash"] == run.model_hash and report.meta["n"] == 40


def test_imt_on_a_checkpoint_without_discriminator_is_refused(natural_run, digits):
    with pytest.raises(ConfigError, match="no discriminator"):
        evaluate(natural_run, EvalConfig(attacks=("natural",), inferences=("atld",), limit=4, device="cpu"),
                 data=digits)


@pytest.mark.slow  # over 10 s
def test_adaptive_attack_is_at_least_as_strong_as_the_non_adaptive_protocol(atld_run, digits, digits_batch):
    """On an ATLD digits model: the adaptive attack through IMT (APGD-CE + APGD-T, BPDA) leaves no
    more accuracy than the official protocol (attack the bare classifier, then IMT), for ATLD and
    ATLD+. Also: IMT is applied to clean inputs, and every row carries its protocol."""
    run = atld_run
    config = EvalConfig(attacks=("natural", "pgd20", "autoattack", "adaptive"), limit=40, device="cpu",
                        apgd_steps=25)
    report = evaluate(run, config, data=digits)
    x, y = digits_batch(40)
    for mode in ("atld-", "atld", "atld+"):
        clean = (predict(run, x, mode).argmax(1) == y).sum().item()
        assert report.row("natural", mode)["correct"] == clean
        adaptive = report.row("adaptive", mode)
        assert adaptive["protocol"] == (PROTOCOL_DIRECT if mode == "atld-" else PROTOCOL_ADAPTIVE)
        assert "APGD-CE" in adaptive["note"] and "APGD-T" in adaptive["note"]
        for attack in ("pgd20", "autoattack"):
            row = report.row(attack, mode)
            assert row["protocol"] == (PROTOCOL_DIRECT if mode == "atld-" else PROTOCOL_NON_ADAPTIVE)
            assert adaptive["accuracy"] <= row["accuracy"] + 1 / 40
    # the point of the adaptive attack: IMT's non-adaptive gain does not survive it
    assert report.row("adaptive", "atld")["accuracy"] < report.row("pgd20", "atld")["accuracy"]


def test_report_formats(natural_run, digits):
    rows = evaluate(natural_run, EvalConfig(attacks=("natural", "pgd20"), limit=16, device="cpu"),
                    data=digits).rows
    report = EvalReport(rows, {"checkpoint": "x", "seed": 0, "model_hash": "ab" * 32})
    parsed = list(csv.DictReader(io.StringIO(report.to_csv())))
    assert [p["attack"] for p in parsed] == ["natural", "pgd20"] and list(parsed[0]) == [*ROW_KEYS, "label"]
    assert float(parsed[1]["accuracy"]) == pytest.approx(rows[1]["accuracy"]) and parsed[1]["label"] == "PGD-20"
    doc = json.loads(report.to_json())
    assert [{k: v for k, v in r.items() if k != "label"} for r in doc["rows"]] == rows
    assert doc["verdicts"][0]["kind"] == "upper bound" and doc["verdicts"][0]["attack"] == "pgd20"
    table = report.to_table()
    assert "PGD-20 (upper bound)" in table and "95% CI" in table
    assert table.splitlines()[3].startswith("  atld- (the bare classifier): at most")  # the verdict comes first
    card = report.to_card()
    assert card["rows"][0]["model_hash"] == "ab" * 32


def test_store_evaluation_merges_into_the_card(tmp_path, natural_run, digits):
    src = natural_run.path
    run_dir = tmp_path / "run"
    shutil.copytree(src, run_dir)
    run = load_checkpoint(run_dir)
    first = evaluate(run, EvalConfig(attacks=("natural", "fgsm"), limit=8, device="cpu"), data=digits)
    store_evaluation(run_dir, first)
    second = evaluate(run, EvalConfig(attacks=("fgsm", "pgd20"), limit=8, device="cpu"), data=digits)
    store_evaluation(run_dir, second)
    stored = read_card(run_dir)["evaluations"]
    assert sorted(r["attack"] for r in stored["rows"]) == ["fgsm", "natural", "pgd20"]  # fgsm replaced, not doubled
    assert all(r["model_hash"] == run.model_hash for r in stored["rows"])
    load_checkpoint(run_dir)  # still a valid checkpoint
    other = EvalReport(first.rows, {**first.meta, "model_hash": "0" * 64})
    with pytest.raises(CheckpointError, match="different model"):
        store_evaluation(run_dir, other)


def test_robust_accuracy_curve_falls_with_epsilon(natural_run, digits, digits_batch):
    run = natural_run
    rows = robust_accuracy_curve(run, [0.0, 0.05, 0.1, 0.2], attack="pgd20", limit=40, data=digits, device="cpu")
    acc = [r["accuracy"] for r in rows]
    assert [r["epsilon"] for r in rows] == [0.0, 0.05, 0.1, 0.2]
    x, y = digits_batch(40)
    assert rows[0]["correct"] == (predict(run, x, "atld-").argmax(1) == y).sum().item()
    assert all(b <= a + 1 / 40 for a, b in zip(acc, acc[1:]))
    assert acc[-1] < acc[0] - 0.3
    with pytest.raises(ConfigError):
        robust_accuracy_curve(run, [], data=digits, device="cpu")


