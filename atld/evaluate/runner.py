"""Running an evaluation: every (attack, inference) cell of `EvalConfig` on a checkpoint.

The attack table (`atld.attacks.registry.ATTACKS`) says what each attack targets, which decides
the row's protocol (docs/evaluation.md):
- direct: the attack targets exactly what is evaluated (all atld- rows, and natural inputs).
- non-adaptive (the official ATLD protocol, docs/method.md §5, §7): the attack targets the bare
  classifier and IMT is then applied to the adversarial images; one attack serves every
  inference row.
- adaptive through IMT: the attack targets the whole defense (classifier after IMT, a
  straight-through (BPDA) gradient of its sign step): "adaptive" (APGD-CE and APGD-T; an image
  counts as robust only if it survives both) and "square" (black-box).
Every prediction is made with the real IMT (`atld.inference.predict`), in fp32.
"""

from __future__ import annotations

import os
import time

import torch

from atld.attacks.registry import ATTACKS, NamedAttack, Target
from atld.config.eval import EvalConfig
from atld.vocab import InferenceMode, Protocol
from atld.data.loaders import ImageData, as_float01, load_dataset
from atld.device import resolve_device
from atld.errors import ConfigError, DataError
from atld.evaluate.discriminator import COST as DISCRIMINATOR_COST
from atld.evaluate.discriminator import discriminator_check
from atld.evaluate.progress import IMT_COST, ProgressCallback, ProgressTracker, Task
from atld.evaluate.report import EvalReport, make_row
from atld.fileio import now_iso
from atld.inference import INFERENCE_MODES, IMTPipeline, check_inference, predict, resolve_models
from atld.models.common import eval_mode
from atld.runs.store import LoadedRun, load_checkpoint

def load_run(run, device: torch.device) -> LoadedRun:
    """`run` itself (a LoadedRun) or the checkpoint directory it names, loaded on `device`."""
    if isinstance(run, (str, os.PathLike)):
        return load_checkpoint(run, device=device)
    if not isinstance(run, LoadedRun):
        raise ConfigError("evaluate needs a checkpoint directory or a LoadedRun")
    return run


def evaluation_set(run: LoadedRun, limit: int | None, data: ImageData | None,
                   data_root) -> tuple[torch.Tensor, torch.Tensor]:
    """The first `limit` test images (float [N, C, H, W] in [0, 1]) and labels of the run's dataset."""
    if data is None:
        data = load_dataset(run.config.dataset, data_root)
    if data.spec.name != run.config.dataset:
        raise DataError(f"data is {data.spec.name!r} but the checkpoint was trained on {run.config.dataset!r}")
    n = len(data.y_test) if limit is None else min(limit, len(data.y_test))
    if n == 0:
        raise DataError("the test set is empty")
    return as_float01(data.x_test[:n]), data.y_test[:n].long()


def inference_modes(run: LoadedRun, config: EvalConfig) -> tuple[InferenceMode, ...]:
    if config.inferences is not None:
        models = resolve_models(run)
        return tuple(check_inference(mode, models) for mode in config.inferences)
    return INFERENCE_MODES if run.discriminator is not None else (InferenceMode.BARE,)


def correct_after(run, x: torch.Tensor, y: torch.Tensor, mode: str, batch_size: int, device) -> torch.Tensor:
    """[N] bool: is the prediction after `mode`'s inference right? (batched, on the CPU)"""
    out = [predict(run, xb.to(device), mode).argmax(1).cpu() == yb
           for xb, yb in zip(x.split(batch_size), y.split(batch_size))]
    return torch.cat(out)


def _protocol(target: Target, mode: InferenceMode) -> Protocol:
    if target is Target.NONE or mode is InferenceMode.BARE:
        return Protocol.DIRECT
    return Protocol.ADAPTIVE if target is Target.DEFENSE else Protocol.NON_ADAPTIVE


def _shared(attack: NamedAttack) -> bool:
    """One run on the bare classifier serves every inference row."""
    return attack.target is not Target.DEFENSE


def checks_discriminator(run: LoadedRun, modes) -> bool:
    """Whether an evaluation of `modes` reports on D (`atld.evaluate.discriminator`): when IMT is evaluated."""
    return run.discriminator is not None and any(m is not InferenceMode.BARE for m in modes)


def _attacked_images(name: str) -> tuple[bool, bool]:
    """(on_correct, later_on_robust) of `Task` for a named attack: APGD (AutoAttack, the adaptive
    attack) attacks only the images classified right; AutoAttack's later parts, and APGD-T's
    target classes after APGD-CE, only those still robust."""
    return (True, True) if name in ("autoattack", "adaptive") else (False, False)


def plan(attacks, modes, n: int, suffix: str = "", discriminator: bool = False) -> list[Task]:
    """The attack runs of an evaluation, in the order `evaluate_on` makes them (for the progress
    estimate); `suffix` ends every label (e.g. the ε of a curve's point); discriminator: the D
    check runs last."""
    tasks = []
    for name in attacks:
        attack = ATTACKS[name]
        if _shared(attack):
            serves = f" (serves {', '.join(modes)})" if len(modes) > 1 and attack.target is Target.CLASSIFIER else ""
            tasks.append(Task(f"{name} on the bare classifier{serves}{suffix}", attack.cost, n, 1.0,
                              *_attacked_images(name)))
        else:
            tasks += [Task(f"{name} / {mode}{suffix}", attack.cost, n, 1.0 if mode is InferenceMode.BARE else IMT_COST,
                           *_attacked_images(name)) for mode in modes]
    if discriminator:
        tasks.append(Task("discriminator check", DISCRIMINATOR_COST, n))
    return tasks


def evaluate(run, config: EvalConfig | None = None, data: ImageData | None = None,
             progress: ProgressCallback | None = None, *, data_root=None) -> EvalReport:
    """Evaluate `run` (a LoadedRun or a checkpoint directory) on the first `config.limit` test
    images under every attack × inference of `config`; see the module docstring for protocols.

    data: the dataset (default: loaded for the checkpoint's dataset from `data_root`).
    progress: receives a `ProgressEvent` when each attack run starts, after each of its batches
    and at the end (`atld.evaluate.progress`).
    Raises ConfigError for an unknown name or IMT asked of a checkpoint without discriminator."""
    config = config or EvalConfig()
    device = resolve_device(config.device)
    run = load_run(run, device)
    modes = inference_modes(run, config)
    x, y = evaluation_set(run, config.limit, data, data_root)
    check_d = checks_discriminator(run, modes)
    tracker = ProgressTracker(plan(config.attacks, modes, len(y), discriminator=check_d), progress)
    report = evaluate_on(run, config, modes, x, y, device, tracker, check_discriminator=check_d)
    tracker.finish()
    return report


def evaluate_on(run: LoadedRun, config: EvalConfig, modes, x: torch.Tensor, y: torch.Tensor,
                device: torch.device, tracker: ProgressTracker, check_discriminator: bool = False) -> EvalReport:
    """`evaluate` on given images, its progress going to `tracker` (whose next tasks are
    `plan(config.attacks, modes, len(y), discriminator=check_discriminator)`)."""
    eps = run.spec.epsilon_or_default(config.epsilon)
    budget = config.budget(device)
    run.classifier.to(device)
    if run.discriminator is not None:
        run.discriminator.to(device)
    rows, task = [], tracker.next_index()
    models = [run.classifier] + ([run.discriminator] if run.discriminator is not None else [])
    with eval_mode(*models), torch.autocast(device.type, enabled=False):  # fp32 numbers, never bf16
        for name in config.attacks:
            attack = ATTACKS[name]
            shared = attack_seconds = None
            if _shared(attack):
                t0 = time.perf_counter()
                shared = attack.perturb(run.classifier, x, y, eps, budget, tracker.begin(task))
                attack_seconds, task = time.perf_counter() - t0, task + 1
            for i, mode in enumerate(modes):
                t1 = time.perf_counter()
                if shared is None:
                    pipeline = IMTPipeline(run, mode, straight_through=True).eval()
                    candidates = attack.perturb(pipeline, x, y, eps, budget, tracker.begin(task))
                    task += 1
                else:
                    candidates = shared
                parts = [(label, correct_after(run, xa, y, mode, config.batch_size, device))
                         for label, xa in candidates]
                correct = torch.stack([ok for _, ok in parts]).all(0)
                note = attack.note(budget, mode is InferenceMode.BARE)
                if len(parts) > 1:
                    worst = " and ".join(f"{label} {100 * ok.float().mean().item():.2f}%" for label, ok in parts)
                    note = f"worst case per image over {worst}" + (f" ({note})" if note else "")
                seconds = time.perf_counter() - t1
                if shared is not None and attack.target is not Target.NONE:
                    if i == 0:
                        seconds += attack_seconds  # the shared attack's time, counted once, in its first row
                    else:
                        note = (f"the same bare-classifier attack as the {modes[0]} row "
                                f"(its {attack_seconds:.1f} s are counted there)")
                rows.append(make_row(name, mode, _protocol(attack.target, mode), int(correct.sum()), len(y),
                                     0.0 if attack.target is Target.NONE else eps, seconds, note))
                tracker.observe(float(correct.float().mean()), natural=attack.target is Target.NONE)
    meta = report_meta(run, config, eps, device, len(y))
    if check_discriminator:
        meta["discriminator"] = discriminator_check(run, x, y, eps, batch_size=config.batch_size, device=device,
                                                    seed=config.seed, progress=tracker.begin(task)).to_dict()
    meta["timings"] = timing_rows(tracker)
    return EvalReport(rows, meta)


def report_meta(run: LoadedRun, config: EvalConfig, eps: float, device: torch.device, n: int) -> dict:
    """What was evaluated, on which images, where (`EvalReport.meta`)."""
    return {"checkpoint": run.name, "path": str(run.path), "model_hash": run.model_hash,
            "dataset": run.config.dataset, "method": run.method, "arch": run.config.resolved_arch,
            "n": n, "limit": config.limit, "epsilon": eps, "imt_epsilon": run.config.resolved_epsilon,
            "imt_window": list(run.spec.imt_window), "seed": config.seed, "device": str(device),
            "torch": torch.__version__, "threads": torch.get_num_threads(), "date": now_iso(),
            "config": config.to_dict()}


def timing_rows(tracker: ProgressTracker) -> list[dict]:
    """Seconds of every part of every attack run, each run once (`EvalReport.meta["timings"]`)."""
    return [{"task": t, "part": p, "images": k, "seconds": round(s, 3)} for t, p, k, s in tracker.timings]


def robust_accuracy_curve(run, epsilons, attack="pgd20", inference="atld-", limit: int | None = 450,
                          *, data: ImageData | None = None, data_root=None, seed: int = 0, batch_size: int = 256,
                          device: str = "auto", progress: ProgressCallback | None = None) -> list[dict]:
    """Robust accuracy against ε: one evaluation row per ε and cell (ε in [0, 1] pixel units; the
    IMT radius stays the model's own ε). attack: a name or several; inference: a mode, several, or
    None (every mode the checkpoint supports). Rows as `EvalReport.rows`, ordered by ε."""
    epsilons = list(epsilons)
    if not epsilons:
        raise ConfigError("give at least one epsilon for the curve")
    attacks = (attack,) if isinstance(attack, str) else tuple(attack)
    inferences = (inference,) if isinstance(inference, str) else None if inference is None else tuple(inference)
    configs = [EvalConfig(attacks=attacks, inferences=inferences, limit=limit, batch_size=batch_size,
                          epsilon=eps, seed=seed, device=device) for eps in epsilons]  # all checked before any work
    dev = resolve_device(device)
    run = load_run(run, dev)
    modes = inference_modes(run, configs[0])
    x, y = evaluation_set(run, limit, data, data_root)
    tracker = ProgressTracker([t for eps in epsilons for t in plan(attacks, modes, len(y), f" at ε {eps:.4g}")],
                              progress)
    rows = [r for config in configs for r in evaluate_on(run, config, modes, x, y, dev, tracker).rows]
    tracker.finish()
    return rows




def discriminator_report(run, config: EvalConfig | None = None, data: ImageData | None = None,
                         progress: ProgressCallback | None = None, *, data_root=None) -> EvalReport:
    """D's check alone (`atld.evaluate.discriminator`) on the first `config.limit` test images at
    the evaluation's ε: an `EvalReport` without rows whose meta["discriminator"] holds it (what
    `python -m atld eval --discriminator-only` prints and, with --store, writes to the card)."""
    config = config or EvalConfig()
    device = resolve_device(config.device)
    run = load_run(run, device)
    if run.discriminator is None:
        raise ConfigError(f"checkpoint {run.name!r} has no discriminator to check")
    x, y = evaluation_set(run, config.limit, data, data_root)
    eps = run.spec.epsilon_or_default(config.epsilon)
    tracker = ProgressTracker([Task("discriminator check", DISCRIMINATOR_COST, len(y))], progress)
    run.classifier.to(device)
    run.discriminator.to(device)
    meta = report_meta(run, config, eps, device, len(y))
    meta["discriminator"] = discriminator_check(run, x, y, eps, batch_size=config.batch_size, device=device,
                                                seed=config.seed, progress=tracker.begin(0)).to_dict()
    tracker.finish()
    meta["timings"] = timing_rows(tracker)
    return EvalReport([], meta)
