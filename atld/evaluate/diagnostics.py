"""Gradient-masking diagnostics (docs/method.md §7): run the attacks the checks need on every
inference mode, plus PGD accuracy against the number of steps, and read them with
`atld.evaluate.findings` (whose docstring lists the checks).

The steps curve attacks exactly what is evaluated: the bare classifier for atld-, the whole
defense through IMT (straight-through gradient, as the adaptive attack) for atld and atld+. Each
point is the worst case per image over `restarts` random starts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from atld.attacks.gradient import AttackConfig, attack_batched
from atld.config.eval import EvalConfig
from atld.vocab import AttackKind, InferenceMode
from atld.device import resolve_device
from atld.errors import check_int_in, require
from atld.evaluate.findings import masking_findings
from atld.evaluate.progress import IMT_COST, ProgressCallback, ProgressTracker, Task
from atld.evaluate.runner import (checks_discriminator, correct_after, evaluate_on, evaluation_set, inference_modes,
                                 load_run, plan, timing_rows)
from atld.inference import IMTPipeline
from atld.models.common import eval_mode

STEPS = (1, 5, 10, 20, 50, 100)  # PGD steps for the accuracy-vs-steps curve


def diagnostic_attacks(modes) -> tuple[str, ...]:
    """What `--diagnose` runs when no attacks are given: every check's inputs (the adaptive
    attack when an IMT mode is evaluated)."""
    imt = any(m is not InferenceMode.BARE for m in modes)
    return ("natural", "pgd20", "autoattack", *(("adaptive",) if imt else ()), "square")


@dataclass
class MaskingReport:
    """steps_curve: [{steps, accuracy, n, inference, restarts}]; rows: the evaluation rows used;
    findings: see `masking_findings`; meta: as `EvalReport.meta`."""
    steps_curve: list[dict]
    rows: list[dict]
    findings: list[dict] = field(default_factory=list)
    meta: dict = field(default_factory=dict)

    @property
    def flagged(self) -> bool:
        return any(f["flagged"] for f in self.findings)

    def to_text(self) -> str:
        return "\n".join(("[!] " if f["flagged"] else "[ok] ") + f["message"] for f in self.findings) + "\n"


def _steps_point(run, mode, x, y, eps, k, restarts, config, device, begin) -> dict:
    """One point of the curve; begin(r) starts restart r's progress task."""
    model = run.classifier if mode is InferenceMode.BARE else IMTPipeline(run, mode, straight_through=True).eval()
    attack = AttackConfig(AttackKind.PGD, eps, steps=k)
    robust = torch.ones(len(y), dtype=torch.bool)
    for r in range(restarts):
        gen = torch.Generator(device).manual_seed(config.seed + r)
        x_adv = attack_batched(model, x, y, attack, config.batch_size, gen, begin(r))
        robust &= correct_after(run, x_adv, y, mode, config.batch_size, device)
    return {"steps": k, "accuracy": robust.float().mean().item(), "n": len(y), "inference": mode.value,
            "restarts": restarts}


def masking_diagnostics(run, config: EvalConfig | None = None, *, steps=STEPS, data=None, data_root=None,
                        progress: ProgressCallback | None = None) -> MaskingReport:
    """Run the checks of `atld.evaluate.findings` on `run` for every inference mode of `config`
    (default: all the checkpoint supports) with `config`'s attacks (`diagnostic_attacks` gives
    what every check needs), plus the PGD steps curve with `config.restarts` random starts per point."""
    config = config or EvalConfig()
    steps = tuple(steps)
    require(len(steps) > 0, "give at least one number of PGD steps")
    for k in steps:
        check_int_in("PGD steps", k, 1, 10_000)
    restarts = config.restarts
    device = resolve_device(config.device)
    run = load_run(run, device)
    modes = inference_modes(run, config)
    x, y = evaluation_set(run, config.limit, data, data_root)
    eps = run.spec.epsilon_or_default(config.epsilon)
    points = [(mode, k) for mode in modes for k in steps]
    curve_tasks = [Task(f"steps curve: PGD-{k} / {mode}, start {r + 1} of {restarts}", ((f"PGD-{k}", float(k)),),
                        len(y), 1.0 if mode is InferenceMode.BARE else IMT_COST)
                   for mode, k in points for r in range(restarts)]
    check_d = checks_discriminator(run, modes)
    tracker = ProgressTracker(curve_tasks + plan(config.attacks, modes, len(y), discriminator=check_d), progress)
    curve = []
    models = [run.classifier] + ([run.discriminator] if run.discriminator is not None else [])
    with eval_mode(*models), torch.autocast(device.type, enabled=False):
        for i, (mode, k) in enumerate(points):
            curve.append(_steps_point(run, mode, x, y, eps, k, restarts, config, device,
                                      lambda r, i=i: tracker.begin(i * restarts + r)))
    report = evaluate_on(run, config, modes, x, y, device, tracker, check_discriminator=check_d)
    tracker.finish()
    return MaskingReport(curve, report.rows, masking_findings(report.rows, curve),
                         {**report.meta, "timings": timing_rows(tracker)})
