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
from collections.abc import Callable

import torch

from atld.attacks.registry import ATTACKS, Target
from atld.config.eval import EvalConfig
from atld.config.vocab import InferenceMode, Protocol
from atld.data.loaders import ImageData, as_float01, load_dataset
from atld.device import resolve_device
from atld.errors import ConfigError, DataError
from atld.evaluate.report import EvalReport, make_row
from atld.fileio import now_iso
from atld.inference import INFERENCE_MODES, IMTPipeline, check_inference, predict, resolve_models
from atld.models.common import eval_mode
from atld.runs.store import LoadedRun, load_checkpoint

EvalProgress = Callable[[int, int, str], None]  # (cells done, cells in all, what runs next)


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


def evaluate(run, config: EvalConfig | None = None, data: ImageData | None = None,
             progress: EvalProgress | None = None, *, data_root=None) -> EvalReport:
    """Evaluate `run` (a LoadedRun or a checkpoint directory) on the first `config.limit` test
    images under every attack × inference of `config`; see the module docstring for protocols.

    data: the dataset (default: loaded for the checkpoint's dataset from `data_root`).
    progress(done, total, label) is called before each cell and once at the end.
    Raises ConfigError for an unknown name or IMT asked of a checkpoint without discriminator."""
    config = config or EvalConfig()
    device = resolve_device(config.device)
    run = load_run(run, device)
    modes = inference_modes(run, config)
    x, y = evaluation_set(run, config.limit, data, data_root)
    eps = run.spec.epsilon_or_default(config.epsilon)
    budget = config.budget(device)
    run.classifier.to(device)
    if run.discriminator is not None:
        run.discriminator.to(device)
    total, done, rows = len(config.attacks) * len(modes), 0, []

    def tick(label: str) -> None:
        if progress is not None:
            progress(done, total, label)

    models = [run.classifier] + ([run.discriminator] if run.discriminator is not None else [])
    with eval_mode(*models), torch.autocast(device.type, enabled=False):  # fp32 numbers, never bf16
        for name in config.attacks:
            attack = ATTACKS[name]
            shared = None
            if attack.target is not Target.DEFENSE:  # one attack on the bare classifier serves every mode
                tick(f"{name} (bare classifier)")
                t0 = time.perf_counter()
                shared = attack.perturb(run.classifier, x, y, eps, budget), time.perf_counter() - t0
            for mode in modes:
                tick(f"{name} / {mode}")
                t1 = time.perf_counter()
                if shared is None:
                    candidates = attack.perturb(IMTPipeline(run, mode, straight_through=True).eval(), x, y, eps,
                                                budget)
                    spent = 0.0
                else:
                    candidates, spent = shared
                parts = [(label, correct_after(run, xa, y, mode, config.batch_size, device))
                         for label, xa in candidates]
                correct = torch.stack([ok for _, ok in parts]).all(0)
                note = attack.note(budget, mode is InferenceMode.BARE)
                if len(parts) > 1:
                    worst = " and ".join(f"{label} {100 * ok.float().mean().item():.2f}%" for label, ok in parts)
                    note = f"worst case per image over {worst}" + (f" ({note})" if note else "")
                if shared is not None and attack.target is not Target.NONE and len(modes) > 1:
                    note = "one bare-classifier attack serves every inference row; seconds include it"
                rows.append(make_row(name, mode, _protocol(attack.target, mode), int(correct.sum()), len(y),
                                     0.0 if attack.target is Target.NONE else eps,
                                     spent + time.perf_counter() - t1, note))
                done += 1
    tick("done")
    meta = {"checkpoint": run.name, "path": str(run.path), "model_hash": run.model_hash,
            "dataset": run.config.dataset, "method": run.config.method, "arch": run.config.resolved_arch,
            "n": len(y), "limit": config.limit, "epsilon": eps, "imt_epsilon": run.config.resolved_epsilon,
            "imt_window": list(run.spec.imt_window), "seed": config.seed, "device": str(device),
            "torch": torch.__version__, "date": now_iso(), "config": config.to_dict()}
    return EvalReport(rows, meta)


def robust_accuracy_curve(run, epsilons, attack: str = "pgd20", inference: str = "atld-", limit: int | None = 450,
                          *, data: ImageData | None = None, data_root=None, seed: int = 0, batch_size: int = 256,
                          device: str = "auto", progress: EvalProgress | None = None) -> list[dict]:
    """Robust accuracy against ε for one attack and inference: one evaluation row per ε (ε in
    [0, 1] pixel units; the IMT radius stays the model's own ε). Rows as `EvalReport.rows`."""
    epsilons = list(epsilons)
    if not epsilons:
        raise ConfigError("give at least one epsilon for the curve")
    run = load_run(run, resolve_device(device))
    if data is None:
        data = load_dataset(run.config.dataset, data_root)  # once, not once per ε
    rows = []
    for i, eps in enumerate(epsilons):
        config = EvalConfig(attacks=(attack,), inferences=(inference,), limit=limit, batch_size=batch_size,
                            epsilon=eps, seed=seed, device=device)
        if progress is not None:
            progress(i, len(epsilons), f"{attack} / {inference} at eps {eps:.4g}")
        rows.extend(evaluate(run, config, data=data, data_root=data_root).rows)
    if progress is not None:
        progress(len(epsilons), len(epsilons), "done")
    return rows
