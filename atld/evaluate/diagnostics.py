"""Gradient-masking diagnostics (docs/method.md §7), each finding in plain words.

Checks, each flagged when it suggests that a white-box number overstates robustness:
1. PGD accuracy against the number of steps: more steps should never help the model; a curve
   still falling after 20 steps, or rising, says the gradient is a poor guide.
2. PGD-20 − AutoAttack gap above 5 points (the paper's own ATLD- drops from 66.4 to 34.5).
3. A black-box attack (Square, no gradients) stronger than the white-box ones.
4. For IMT (atld, atld+): the adaptive attack through IMT more than 5 points below the
   non-adaptive protocol, i.e. the reported robustness relies on the attacker ignoring IMT.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from atld.attacks.gradient import AttackConfig, attack_batched
from atld.config.eval import EvalConfig
from atld.config.vocab import AttackKind
from atld.device import resolve_device
from atld.errors import check_int_at_least, require
from atld.evaluate.runner import correct_after, evaluate, evaluation_set, load_run
from atld.inference import check_inference, resolve_models
from atld.models.common import eval_mode

GAP_POINTS = 5.0  # accuracy points; a larger PGD-20 − AutoAttack (or non-adaptive − adaptive) gap is flagged
STEPS = (1, 5, 10, 20, 50, 100)  # PGD steps for the accuracy-vs-steps curve


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _noise(n: int) -> float:
    """Two images' worth of accuracy, at least one point: differences below it are noise."""
    return max(2 / max(n, 1), 0.01)


def masking_findings(rows: list[dict], steps_curve: list[dict] | None = None) -> list[dict]:
    """Findings from evaluation rows (e.g. `EvalReport.rows` or a card's stored rows) and an
    optional PGD accuracy-vs-steps curve ([{steps, accuracy, n}]). Each finding is
    {"check", "inference", "flagged" (bool), "message"} with the numbers in the message."""
    findings = []
    by = {(r["attack"], r["inference"]): r for r in rows}
    for mode in dict.fromkeys(r["inference"] for r in rows):
        pgd, aa = by.get(("pgd20", mode)), by.get(("autoattack", mode))
        if pgd and aa:
            gap = 100 * (pgd["accuracy"] - aa["accuracy"])
            flagged = gap > GAP_POINTS
            msg = (f"{mode}: PGD-20 {_pct(pgd['accuracy'])} vs AutoAttack {_pct(aa['accuracy'])}, a gap of "
                   f"{gap:.1f} points. " + (
                       "Above 5 points: PGD-20 overstates robustness here, the usual sign of gradient masking; "
                       "trust the AutoAttack number." if flagged else "Small: PGD-20 is not badly misled."))
            findings.append({"check": "pgd20-autoattack-gap", "inference": mode, "flagged": flagged, "message": msg})
        white = [by[(a, mode)] for a in ("pgd20", "pgd100", "cw20", "cw100", "autoattack", "adaptive")
                 if (a, mode) in by]
        sq = by.get(("square", mode))
        if sq and white:
            best = min(white, key=lambda r: r["accuracy"])
            flagged = sq["accuracy"] < best["accuracy"] - _noise(sq["n"])
            msg = (f"{mode}: black-box Square {_pct(sq['accuracy'])} vs the strongest white-box attack "
                   f"({best['attack']}) {_pct(best['accuracy'])}. " + (
                       "The attack without gradients is stronger: the gradients are misleading (masking)."
                       if flagged else "White-box is at least as strong, as it should be."))
            findings.append({"check": "black-box-vs-white-box", "inference": mode, "flagged": flagged,
                             "message": msg})
        adaptive = by.get(("adaptive", mode))
        non_adaptive = [by[(a, mode)] for a in ("pgd20", "cw20", "autoattack") if (a, mode) in by]
        if mode != "atld-" and adaptive and non_adaptive:
            worst = min(non_adaptive, key=lambda r: r["accuracy"])
            gap = 100 * (worst["accuracy"] - adaptive["accuracy"])
            flagged = gap > GAP_POINTS
            msg = (f"{mode}: adaptive attack through IMT {_pct(adaptive['accuracy'])} vs the non-adaptive protocol "
                   f"({worst['attack']} on the bare classifier, then IMT) {_pct(worst['accuracy'])}. " + (
                       f"{gap:.1f} points lower: the non-adaptive number relies on the attacker ignoring IMT."
                       if flagged else "IMT holds up about as well when the attacker sees it."))
            findings.append({"check": "adaptive-vs-non-adaptive", "inference": mode, "flagged": flagged,
                             "message": msg})
    if steps_curve:
        curve = sorted(steps_curve, key=lambda r: r["steps"])
        n = curve[0].get("n", 100)
        acc = {r["steps"]: r["accuracy"] for r in curve}
        rises = [(a["steps"], b["steps"]) for a, b in zip(curve, curve[1:])
                 if b["accuracy"] > a["accuracy"] + _noise(n)]
        at20 = acc.get(20)
        last = curve[-1]
        still_falling = at20 is not None and last["steps"] > 20 and 100 * (at20 - last["accuracy"]) > GAP_POINTS
        flagged = bool(rises) or still_falling
        text = ", ".join(f"{r['steps']}: {_pct(r['accuracy'])}" for r in curve)
        if rises:
            why = (f"accuracy goes up from {rises[0][0]} to {rises[0][1]} steps: more attack effort should never "
                   "help the model, so the gradients are erratic (masking).")
        elif still_falling:
            why = (f"accuracy is still falling after 20 steps ({_pct(at20)} → {_pct(last['accuracy'])} at "
                   f"{last['steps']}): PGD-20 has not converged and overstates robustness.")
        else:
            why = "accuracy levels off as steps grow, as it should."
        findings.append({"check": "pgd-steps", "inference": curve[0].get("inference", "atld-"), "flagged": flagged,
                         "message": f"PGD accuracy by steps ({text}): {why}"})
    return findings


@dataclass
class MaskingReport:
    """steps_curve: [{steps, accuracy, n, inference}]; rows: the evaluation rows used;
    findings: see `masking_findings`."""
    steps_curve: list[dict]
    rows: list[dict]
    findings: list[dict] = field(default_factory=list)

    @property
    def flagged(self) -> bool:
        return any(f["flagged"] for f in self.findings)

    def to_text(self) -> str:
        return "\n".join(("[!] " if f["flagged"] else "[ok] ") + f["message"] for f in self.findings) + "\n"


def masking_diagnostics(run, *, inference: str = "atld-", limit: int | None = 200, steps=STEPS,
                        epsilon: float | None = None, data=None, data_root=None, seed: int = 0,
                        batch_size: int = 256, device: str = "auto", square_queries: int = 5000,
                        attacks=("pgd20", "autoattack", "square")) -> MaskingReport:
    """Run the checks of the module docstring on `run` for one inference mode (the PGD-steps
    curve attacks the bare classifier, then applies the inference, like the official protocol)."""
    steps = tuple(steps)
    require(len(steps) > 0, "give at least one number of PGD steps")
    for k in steps:
        check_int_at_least("PGD steps", k, 1)
    dev = resolve_device(device)
    run = load_run(run, dev)
    check_inference(inference, resolve_models(run))
    config = EvalConfig(attacks=tuple(attacks), inferences=(inference,), limit=limit, batch_size=batch_size,
                        epsilon=epsilon, seed=seed, device=device, square_queries=square_queries)
    x, y = evaluation_set(run, config.limit, data, data_root)
    eps = run.spec.epsilon_or_default(epsilon)
    curve = []
    with eval_mode(run.classifier), torch.autocast(dev.type, enabled=False):
        for k in steps:
            gen = torch.Generator(dev).manual_seed(seed)
            x_adv = attack_batched(run.classifier, x, y, AttackConfig(AttackKind.PGD, eps, steps=k), batch_size, gen)
            correct = correct_after(run, x_adv, y, inference, batch_size, dev)
            curve.append({"steps": k, "accuracy": correct.float().mean().item(), "n": len(y), "inference": inference})
    rows = evaluate(run, config, data=data, data_root=data_root).rows
    return MaskingReport(curve, rows, masking_findings(rows, curve))
