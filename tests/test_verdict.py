"""The verdict (atld.evaluate.verdict): per inference mode, the number to trust, read from rows the
same way by the CLI table, the JSON output and the app; and the table beside it."""

from __future__ import annotations

import json

from atld.vocab import Protocol, VerdictKind
from atld.evaluate import EvalReport, make_row, verdicts
from atld.evaluate.report import table_cells
from atld.evaluate.verdict import attack_label

D, NA, AD = Protocol.DIRECT, Protocol.NON_ADAPTIVE, Protocol.ADAPTIVE


def _row(attack, mode, protocol, correct, n=200, eps=0.2):
    return make_row(attack, mode, protocol, correct, n, 0.0 if attack == "natural" else eps, 1.0)


# the shipped digits-atld evaluation, as the card stores it (n = 450; AutoAttack and adaptive on 200)
SHIPPED = [_row("natural", "atld-", D, 449, 450), _row("pgd20", "atld-", D, 224, 450),
           _row("autoattack", "atld-", D, 64), _row("adaptive", "atld-", D, 66),
           _row("natural", "atld", D, 406, 450), _row("pgd20", "atld", NA, 219, 450),
           _row("autoattack", "atld", NA, 109), _row("adaptive", "atld", AD, 0),
           _row("natural", "atld+", D, 440, 450), _row("pgd20", "atld+", NA, 231, 450),
           _row("autoattack", "atld+", NA, 109), _row("adaptive", "atld+", AD, 4)]


def test_imt_verdict_is_the_adaptive_number_never_the_non_adaptive_one():
    by = {v.inference: v for v in verdicts(SHIPPED)}
    assert list(by) == ["atld-", "atld", "atld+"]
    atld = by["atld"]
    assert atld.kind is VerdictKind.MEASURED and atld.accuracy == 0.0 and atld.row["attack"] == "adaptive"
    assert atld.text.startswith("atld (one IMT step): 0.0 % robust accuracy at ε = 0.2")
    assert atld.text.split(":")[1].endswith("against the adaptive attack through IMT (APGD-CE + APGD-T)")
    assert "non-adaptive 54.5 %" in atld.text and "does not count" in atld.text
    assert by["atld+"].accuracy == 0.02
    bare = by["atld-"]  # AutoAttack (32 %) is lower than APGD on the bare classifier (33 %)
    assert bare.accuracy == 0.32 and bare.row["attack"] == "autoattack" and "PGD-20's 49.8 %" in bare.text


def test_imt_without_the_adaptive_attack_is_unverified():
    rows = [r for r in SHIPPED if r["attack"] != "adaptive"]
    v = {v.inference: v for v in verdicts(rows)}["atld"]
    assert v.kind is VerdictKind.UNVERIFIED and v.accuracy is None
    assert v.text.startswith("atld (one IMT step): robustness unverified") and "at most 48.7 % (PGD-20)" in v.text
    assert "never see IMT" in v.text
    # a black-box Square through IMT is an adaptive upper bound, still not a verdict
    rows.append(_row("square", "atld", AD, 30))
    v = {v.inference: v for v in verdicts(rows)}["atld"]
    assert v.kind is VerdictKind.UNVERIFIED and "15.0 %, only an upper bound" in v.text


def test_weak_attacks_only_give_an_upper_bound_and_no_attack_gives_no_number():
    v = verdicts([_row("natural", "atld-", D, 190), _row("pgd20", "atld-", D, 120), _row("cw20", "atld-", D, 110)])[0]
    assert v.kind is VerdictKind.UPPER_BOUND and v.row["attack"] == "cw20"
    assert "at most 55.0 %" in v.text and "upper bound" in v.text
    v = verdicts([_row("natural", "atld-", D, 190)])[0]
    assert v.kind is VerdictKind.NOT_ATTACKED and v.accuracy is None and "robustness unknown" in v.text


def test_the_verdict_reads_the_evaluation_epsilon_only():
    rows = [_row("autoattack", "atld-", D, 100, eps=0.2), _row("autoattack", "atld-", D, 5, eps=0.4),
            _row("pgd20", "atld-", D, 120, eps=0.2)]
    assert verdicts(rows)[0].accuracy == 0.5  # two rows at 0.2, one at 0.4
    assert verdicts(rows, epsilon=0.4)[0].accuracy == 0.025


def test_labels_say_what_each_cell_is():
    assert attack_label("adaptive", "atld-") == "APGD-CE + APGD-T (bare classifier)"
    assert attack_label("adaptive", "atld") == "adaptive attack through IMT (APGD-CE + APGD-T)"
    assert attack_label("square", "atld-") == "Square (black-box)"


def test_table_json_and_cells_put_the_verdict_first_and_never_a_lone_non_adaptive_row():
    report = EvalReport(SHIPPED, {"checkpoint": "digits-atld", "dataset": "digits", "seed": 0, "device": "cpu"})
    lines = report.to_table().splitlines()
    assert lines[0].startswith("digits-atld (digits): n = 450 test images (200 for ")
    assert lines[2].startswith("Verdict") and lines[4].startswith("  atld (one IMT step): 0.0 %")
    assert any("PGD-20 (upper bound)" in line and "non-adaptive (attacks the bare classifier)" in line
               for line in lines)
    doc = json.loads(report.to_json())
    assert [v["accuracy"] for v in doc["verdicts"]] == [0.32, 0.0, 0.02]
    assert doc["verdicts"][1]["label"] == "adaptive attack through IMT (APGD-CE + APGD-T)"
    without = [r for r in SHIPPED if not (r["attack"] == "adaptive" and r["inference"] == "atld")]
    cells = [c for c in table_cells(without) if c["inference"] == "atld"]
    assert cells[-1]["accuracy"] == "not run" and "unverified" in cells[-1]["protocol"]
    assert [c["inference"] for c in table_cells(SHIPPED)] == ["atld-"] * 4 + ["atld"] * 4 + ["atld+"] * 4


# the shipped Fashion-MNIST ATLD evaluation, as its card stores it (n = 1000): IMT under the
# adaptive attack far below the bare classifier
FASHION = [_row("natural", "atld-", D, 800, 1000, 0.1), _row("fgsm", "atld-", D, 600, 1000, 0.1),
           _row("pgd20", "atld-", D, 465, 1000, 0.1), _row("autoattack", "atld-", D, 407, 1000, 0.1),
           _row("fgsm", "atld", NA, 700, 1000, 0.1), _row("pgd20", "atld", NA, 520, 1000, 0.1),
           _row("autoattack", "atld", NA, 538, 1000, 0.1), _row("adaptive", "atld", AD, 108, 1000, 0.1)]


def test_imt_below_the_bare_classifier_is_said_to_make_the_model_less_robust():
    by = {v.inference: v for v in verdicts(FASHION)}
    text = by["atld"].text
    assert "IMT makes the model less robust: 10.8 % with IMT against 40.7 % for the bare classifier (AutoAttack)" \
        in text
    # inside the bare classifier's interval: no measurable gain; above it: a gain
    same = [r for r in FASHION if r["inference"] != "atld"] + [_row("adaptive", "atld", AD, 410, 1000, 0.1)]
    assert "IMT adds no measurable robustness" in {v.inference: v for v in verdicts(same)}["atld"].text
    above = [r for r in FASHION if r["inference"] != "atld"] + [_row("adaptive", "atld", AD, 600, 1000, 0.1)]
    assert "IMT adds robustness" in {v.inference: v for v in verdicts(above)}["atld"].text
    # an upper bound only (no strong attack on the bare classifier) is never compared
    weak_bare = [r for r in FASHION if r["attack"] != "autoattack" or r["inference"] != "atld-"]
    assert "less robust" not in {v.inference: v for v in verdicts(weak_bare)}["atld"].text


def test_the_foil_is_the_number_a_reader_would_quote_not_fgsm():
    by = {v.inference: v for v in verdicts(FASHION)}
    assert "PGD-20's 46.5 % is only an upper bound" in by["atld-"].text and "FGSM" not in by["atld-"].text
    assert "The non-adaptive 53.8 % (AutoAttack on the bare classifier, then IMT)" in by["atld"].text
    assert "70.0 %" not in by["atld"].text
    only_fgsm = [_row("fgsm", "atld", NA, 700, 1000, 0.1), _row("adaptive", "atld", AD, 108, 1000, 0.1)]
    assert "70.0 % (FGSM" in verdicts(only_fgsm)[0].text  # FGSM only when nothing else ran


def test_no_ok_for_two_non_adaptive_numbers_that_the_adaptive_row_shows_far_too_high():
    from atld.evaluate.findings import masking_findings

    gap = {(f["inference"], f["check"]): f for f in masking_findings(FASHION)}
    imt = gap[("atld", "pgd20-autoattack-gap")]
    assert imt["flagged"] and "the adaptive attack through IMT leaves 10.8 %" in imt["message"]
    assert "PGD-20 is 5.8 points higher" in gap[("atld-", "pgd20-autoattack-gap")]["message"]  # no adaptive row used
    close = [r for r in FASHION if r["attack"] != "adaptive"] + [_row("adaptive", "atld", AD, 515, 1000, 0.1)]
    imt_close = {(f["inference"], f["check"]): f for f in masking_findings(close)}[("atld", "pgd20-autoattack-gap")]
    assert "adaptive attack through IMT leaves" not in imt_close["message"]


def test_a_weak_attack_is_never_the_number_to_trust_even_when_lower():
    rows = [_row("pgd20", "atld-", D, 197, 500, 0.3), _row("autoattack", "atld-", D, 84, 200, 0.3)]
    v = verdicts(rows)[0]
    assert v.row["attack"] == "autoattack" and v.accuracy == 0.42 and v.kind is VerdictKind.MEASURED
    assert "42.0 % robust accuracy at ε = 0.3" in v.text and "against AutoAttack: the number to trust" in v.text
    assert "PGD-20 leaves less, 39.4 %, on other images (n = 500 against 200)" in v.text
