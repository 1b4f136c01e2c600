"""Gradient-masking findings read from evaluation rows, each in plain words (torch-free; docs/method.md §7).

Each check compares like with like: rows of the same protocol (an attack that sees IMT with
another that sees IMT, one that does not with another that does not), except check 3, whose
point is the comparison across protocols. A finding is {"check", "inference", "flagged",
"message"}; flagged means the numbers suggest that a white-box number overstates robustness.

1. `pgd20-autoattack-gap`: PGD-20 more than `GAP_POINTS` above AutoAttack: PGD is misled
   (the paper's own ATLD- drops from 66.4 to 34.5). AutoAttack *above* PGD-20's 95 % interval
   is flagged too: under the non-adaptive protocol it is the sign of an attack that does not
   see the defense (IMT undoes perturbations it was never shown); on the bare classifier it
   should not happen at all. Under the non-adaptive protocol, a PGD-20 and an AutoAttack that
   agree are still flagged when the adaptive attack is more than `GAP_POINTS` below both (no
   "[ok]" for two numbers that are both far above the truth).
2. `black-box-vs-white-box`: Square below the 95 % interval of the strongest gradient attack of
   the same protocol (PGD, CW, APGD; not AutoAttack, which runs Square itself): the gradients
   mislead the white-box attacks.
3. `adaptive-vs-non-adaptive` (atld, atld+): the adaptive attack through IMT more than
   `GAP_POINTS` below the lowest non-adaptive number: the non-adaptive robustness relies on
   the attacker ignoring IMT.
4. `pgd-steps`: PGD accuracy against the number of steps (with restarts; through IMT for
   atld / atld+): a rise above the previous point's 95 % interval, or a fall after 20 steps of
   more than `GAP_POINTS` and below PGD-20's interval, says PGD-20 is not a converged attack.
"""

from __future__ import annotations

from atld.vocab import InferenceMode, Protocol
from atld.evaluate.stats import wilson_interval
from atld.evaluate.verdict import ORDER, attack_label, percent

GAP_POINTS = 5.0  # accuracy points; a larger PGD-20 − AutoAttack (or non-adaptive − adaptive) gap is flagged
WHITE_BOX = ("pgd20", "pgd100", "cw20", "cw100", "autoattack", "adaptive")
GRADIENT_ONLY = ("pgd20", "pgd100", "cw20", "cw100", "adaptive")  # white-box with no black-box part (unlike AutoAttack)


def _interval(row: dict) -> tuple[float, float]:
    """The row's Wilson 95 % interval (computed when the row does not carry one)."""
    if "ci_low" in row and "ci_high" in row:
        return row["ci_low"], row["ci_high"]
    n = int(row.get("n") or 1)
    return wilson_interval(min(max(round(row["accuracy"] * n), 0), n), n)


def _finding(check: str, mode: str, flagged: bool, message: str) -> dict:
    return {"check": check, "inference": mode, "flagged": flagged, "message": message}


def _gap_finding(mode: str, pgd: dict, aa: dict, adaptive: dict | None = None) -> dict:
    gap = 100 * (pgd["accuracy"] - aa["accuracy"])
    head = (f"{mode}: PGD-20 {percent(pgd['accuracy'])} vs AutoAttack {percent(aa['accuracy'])} "
            f"({attack_label('autoattack', mode) if mode == InferenceMode.BARE else 'both non-adaptive'}), ")
    if adaptive is not None and 100 * (min(pgd["accuracy"], aa["accuracy"]) - adaptive["accuracy"]) > GAP_POINTS:
        # two numbers that agree with each other can both be far from the truth: no [ok] for them
        return _finding("pgd20-autoattack-gap", mode, True, head + (
            f"but the adaptive attack through IMT leaves {percent(adaptive['accuracy'])}: both overstate "
            "robustness, as neither attacker sees IMT; trust the adaptive number."))
    if gap > GAP_POINTS:
        return _finding("pgd20-autoattack-gap", mode, True, head + (
            f"PGD-20 is {gap:.1f} points higher: it overstates robustness, the usual sign of gradient masking; "
            "trust the AutoAttack number."))
    if aa["accuracy"] > _interval(pgd)[1] or -gap > GAP_POINTS:
        why = ("AutoAttack is the stronger attack, so this means it does not see what is evaluated: under the "
               "non-adaptive protocol IMT undoes perturbations that were made for the bare classifier. Neither "
               "number measures IMT; trust the adaptive attack through IMT."
               if pgd["protocol"] == Protocol.NON_ADAPTIVE else
               "AutoAttack is the stronger attack and should never leave more; check n, ε and seeds of both rows.")
        return _finding("pgd20-autoattack-gap", mode, True,
                        head + f"AutoAttack is {-gap:.1f} points higher, above PGD-20's 95 % interval. " + why)
    return _finding("pgd20-autoattack-gap", mode, False,
                    head + f"a gap of {gap:.1f} points: PGD-20 is not badly misled.")


def _black_box_finding(mode: str, square: dict, rows: list[dict]) -> dict:
    same = [r for r in rows if r["attack"] in GRADIENT_ONLY and r["protocol"] == square["protocol"]]
    if not same:
        return _finding("black-box-vs-white-box", mode, False, (
            f"{mode}: {attack_label('square', mode)} {percent(square['accuracy'])}; no white-box attack with the "
            "same protocol ran to compare it with" + (" (run adaptive)." if mode != InferenceMode.BARE else ".")))
    best = min(same, key=lambda r: r["accuracy"])
    flagged = square["accuracy"] < _interval(best)[0]
    return _finding("black-box-vs-white-box", mode, flagged, (
        f"{mode}: {attack_label('square', mode)} {percent(square['accuracy'])} vs the strongest white-box attack of "
        f"the same protocol ({attack_label(best['attack'], mode)}) {percent(best['accuracy'])}. " + (
            "The attack without gradients is stronger, below the white-box 95 % interval: the gradients are "
            "misleading (masking)." if flagged else "White-box is at least as strong, as it should be.")))


def _adaptive_finding(mode: str, adaptive: dict, non_adaptive: list[dict]) -> dict:
    worst = min(non_adaptive, key=lambda r: r["accuracy"])
    gap = 100 * (worst["accuracy"] - adaptive["accuracy"])
    flagged = gap > GAP_POINTS
    return _finding("adaptive-vs-non-adaptive", mode, flagged, (
        f"{mode}: adaptive attack through IMT {percent(adaptive['accuracy'])} vs the non-adaptive protocol "
        f"({attack_label(worst['attack'], mode)} on the bare classifier, then IMT) {percent(worst['accuracy'])}. " + (
            f"{gap:.1f} points lower: the non-adaptive number relies on the attacker ignoring IMT."
            if flagged else "IMT holds up about as well when the attacker sees it.")))


def steps_finding(curve: list[dict]) -> dict:
    """Check 4 on one mode's curve: [{steps, accuracy, n, inference, restarts}]."""
    curve = sorted(curve, key=lambda r: r["steps"])
    mode = curve[0].get("inference", InferenceMode.BARE)
    rises = [(a, b) for a, b in zip(curve, curve[1:]) if b["accuracy"] > _interval(a)[1]]
    at20 = next((r for r in curve if r["steps"] == 20), None)
    last = curve[-1]
    still_falling = (at20 is not None and last["steps"] > 20
                     and 100 * (at20["accuracy"] - last["accuracy"]) > GAP_POINTS
                     and last["accuracy"] < _interval(at20)[0])
    text = ", ".join(f"{r['steps']}: {percent(r['accuracy'])}" for r in curve)
    restarts = curve[0].get("restarts", 1)
    how = ("on the bare classifier" if mode == InferenceMode.BARE else "through IMT (BPDA)") + (
        f", worst of {restarts} restarts" if restarts > 1 else "")
    if rises:
        a, b = rises[0]
        why = (f"accuracy rises from {a['steps']} to {b['steps']} steps, above the 95 % interval: more attack effort "
               "should never help the model, so the gradients are erratic (masking).")
    elif still_falling:
        why = (f"accuracy is still falling after 20 steps ({percent(at20['accuracy'])} → "
               f"{percent(last['accuracy'])} at {last['steps']}, below PGD-20's 95 % interval): PGD-20 has not "
               "converged and overstates robustness.")
    else:
        why = "accuracy levels off as steps grow (changes stay within the 95 % intervals), as it should."
    return _finding("pgd-steps", mode, bool(rises) or still_falling,
                    f"{mode}: PGD accuracy by steps {how} ({text}, n = {last.get('n', '?')}): {why}")


def masking_findings(rows: list[dict], steps_curve: list[dict] | None = None) -> list[dict]:
    """Findings from evaluation rows (e.g. `EvalReport.rows` or a card's stored rows) and an
    optional PGD accuracy-vs-steps curve ([{steps, accuracy, n, inference, restarts}], one or
    several modes). Rows without a protocol are read as direct."""
    rows = [{"protocol": Protocol.DIRECT, **r} for r in rows]
    findings = []
    modes = [m for m in ORDER if any(r["inference"] == m for r in rows)]
    for mode in modes:
        by = {r["attack"]: r for r in rows if r["inference"] == mode}
        mode_rows = list(by.values())
        if "pgd20" in by and "autoattack" in by:
            adaptive = by.get("adaptive") if mode != InferenceMode.BARE else None
            findings.append(_gap_finding(mode, by["pgd20"], by["autoattack"], adaptive))
        if "square" in by:
            findings.append(_black_box_finding(mode, by["square"], mode_rows))
        non_adaptive = [r for r in mode_rows if r["protocol"] == Protocol.NON_ADAPTIVE and r["attack"] in WHITE_BOX]
        if mode != InferenceMode.BARE and "adaptive" in by and non_adaptive:
            findings.append(_adaptive_finding(mode, by["adaptive"], non_adaptive))
    for mode in dict.fromkeys(p.get("inference", InferenceMode.BARE) for p in steps_curve or []):
        findings.append(steps_finding([p for p in steps_curve if p.get("inference", InferenceMode.BARE) == mode]))
    return findings
