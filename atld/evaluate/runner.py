"""Running an evaluation: every (attack, inference) cell of `EvalConfig` on a checkpoint.

Protocols (the row's "protocol"):
- direct: the attack targets exactly what is evaluated (all atld- rows, and natural inputs).
- non-adaptive (the official ATLD protocol, method doc §5/§7): FGSM / PGD / CW / AutoAttack
  attack the bare classifier; IMT is then applied to the adversarial images. One attack serves
  the three inference rows.
- adaptive through IMT: the attack targets the whole defense (classifier after IMT). "adaptive"
  runs APGD-CE and APGD-T (official AutoAttack code) through IMT with a straight-through
  (BPDA) gradient of its sign step; an image counts as robust only if it survives both.
  "square" (black-box, needs no gradient) also queries the whole defense.
Every prediction is made with the real IMT (`atld.inference.predict`), in fp32.
"""

from __future__ import annotations

import datetime as _dt
import os
import time
from typing import Callable

import torch

from atld.attacks import apgd, attack_batched, attack_from_name, autoattack, square
from atld.data import ImageData, as_float01, load_dataset
from atld.device import resolve_device
from atld.errors import ConfigError, DataError
from atld.evaluate.config import (PROTOCOL_ADAPTIVE, PROTOCOL_DIRECT, PROTOCOL_NON_ADAPTIVE, EvalConfig)
from atld.evaluate.report import EvalReport, make_row
from atld.inference import INFERENCE_MODES, IMTPipeline, check_inference, eval_mode, predict, resolve_models

Progress = Callable[[int, int, str], None]  # (cells done, cells in all, what runs next)


def _load(run, device: torch.device):
    from atld.checkpoints import LoadedRun, load_checkpoint

    if isinstance(run, (str, os.PathLike)):
        return load_checkpoint(run, device=device)
    if not isinstance(run, LoadedRun):
        raise ConfigError("evaluate needs a checkpoint directory or a LoadedRun")
    return run


def _test_set(run, config: EvalConfig, data: ImageData | None, data_root) -> tuple[torch.Tensor, torch.Tensor]:
    if data is None:
        data = load_dataset(run.config.dataset, data_root)
    if data.spec.name != run.config.dataset:
        raise DataError(f"data is {data.spec.name!r} but the checkpoint was trained on {run.config.dataset!r}")
    n = len(data.y_test) if config.limit is None else min(config.limit, len(data.y_test))
    if n == 0:
        raise DataError("the test set is empty")
    return as_float01(data.x_test[:n]), data.y_test[:n].long()


def _inferences(run, config: EvalConfig) -> tuple[str, ...]:
    if config.inferences is not None:
        models = resolve_models(run)
        for mode in config.inferences:
            check_inference(mode, models)
        return config.inferences
    return INFERENCE_MODES if run.discriminator is not None else ("atld-",)


def _correct(run, x: torch.Tensor, y: torch.Tensor, mode: str, batch_size: int, device) -> torch.Tensor:
    """[N] bool: is the prediction after `mode`'s inference right? (batched, on the CPU)"""
    out = [predict(run, xb.to(device), mode).argmax(1).cpu() == yb
           for xb, yb in zip(x.split(batch_size), y.split(batch_size))]
    return torch.cat(out)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def evaluate(run, config: EvalConfig = EvalConfig(), data: ImageData | None = None,
             progress: Progress | None = None, *, data_root=None) -> EvalReport:
    """Evaluate `run` (a LoadedRun or a checkpoint directory) on the first `config.limit` test
    images under every attack × inference of `config`; see the module docstring for protocols.

    data: the dataset (default: loaded for the checkpoint's dataset from `data_root`).
    progress(done, total, label) is called before each cell and once at the end.
    Raises ConfigError for an unknown name or IMT asked of a checkpoint without discriminator."""
    device = resolve_device(config.device)
    run = _load(run, device)
    modes = _inferences(run, config)
    x, y = _test_set(run, config, data, data_root)
    eps = run.spec.epsilon if config.epsilon is None else config.epsilon
    run.classifier.to(device)
    if run.discriminator is not None:
        run.discriminator.to(device)
    total = sum(len(modes) for _ in config.attacks)
    done = 0
    rows = []

    def tick(label: str) -> None:
        if progress is not None:
            progress(done, total, label)

    def batch_attack(fn) -> torch.Tensor:
        out = [fn(xb.to(device), yb.to(device)).detach().cpu()
               for xb, yb in zip(x.split(config.batch_size), y.split(config.batch_size))]
        return torch.cat(out)

    models = [run.classifier] + ([run.discriminator] if run.discriminator is not None else [])
    with eval_mode(*models), torch.autocast(device.type, enabled=False):  # fp32 numbers, never bf16
        for attack in config.attacks:
            if attack in ("adaptive", "square"):
                for mode in modes:
                    tick(f"{attack} / {mode}")
                    rows.append(_attack_the_defense(run, attack, mode, x, y, eps, config, device, batch_attack))
                    done += 1
                continue
            tick(f"{attack} (bare classifier)")
            t0 = time.perf_counter()
            if attack == "natural":
                x_adv = x
            elif attack == "autoattack":
                x_adv = autoattack(run.classifier, x, y, eps, device=device, seed=config.seed,
                                   batch_size=config.batch_size)
            else:
                gen = torch.Generator(device).manual_seed(config.seed)
                x_adv = attack_batched(run.classifier, x, y, attack_from_name(attack, eps), config.batch_size, gen)
            attack_seconds = time.perf_counter() - t0
            shared = len([m for m in modes if m != "atld-"]) > 0 and attack != "natural"
            for mode in modes:
                tick(f"{attack} / {mode}")
                t1 = time.perf_counter()
                correct = _correct(run, x_adv, y, mode, config.batch_size, device)
                seconds = attack_seconds + time.perf_counter() - t1
                protocol = PROTOCOL_NON_ADAPTIVE if mode != "atld-" and attack != "natural" else PROTOCOL_DIRECT
                note = ("one bare-classifier attack serves every inference row; seconds include it"
                        if shared else "")
                rows.append(make_row(attack, mode, protocol, int(correct.sum()), len(y),
                                     0.0 if attack == "natural" else eps, seconds, note))
                done += 1
    tick("done")
    meta = {"checkpoint": run.name, "path": str(run.path), "model_hash": run.model_hash,
            "dataset": run.config.dataset, "method": run.config.method, "arch": run.config.resolved_arch,
            "n": len(y), "limit": config.limit, "epsilon": eps, "imt_epsilon": run.config.resolved_epsilon,
            "imt_window": list(run.spec.imt_window), "seed": config.seed, "device": str(device),
            "torch": torch.__version__, "date": _now(), "config": config.to_dict()}
    return EvalReport(rows, meta)


def _attack_the_defense(run, attack, mode, x, y, eps, config: EvalConfig, device, batch_attack) -> dict:
    """adaptive (APGD-CE + APGD-T through IMT, BPDA) or square (black-box) on f after `mode`."""
    t0 = time.perf_counter()
    pipeline = IMTPipeline(run, mode, straight_through=True).eval()
    protocol = PROTOCOL_DIRECT if mode == "atld-" else PROTOCOL_ADAPTIVE
    common = dict(device=device, seed=config.seed, batch_size=config.batch_size)
    if attack == "square":
        x_adv = batch_attack(lambda xb, yb: square(pipeline, xb, yb, eps, queries=config.square_queries, **common))
        correct = _correct(run, x_adv, y, mode, config.batch_size, device)
        note = f"black-box Square ({config.square_queries} queries) on the whole defense"
    else:
        correct = torch.ones(len(y), dtype=torch.bool)
        parts = []
        for loss, label in (("ce", "APGD-CE"), ("targeted", "APGD-T")):
            x_adv = batch_attack(lambda xb, yb: apgd(pipeline, xb, yb, eps, loss=loss, steps=config.apgd_steps,
                                                     **common))
            ok = _correct(run, x_adv, y, mode, config.batch_size, device)
            parts.append(f"{label} {100 * ok.float().mean().item():.2f}%")
            correct &= ok
        how = "through IMT with a straight-through (BPDA) gradient" if mode != "atld-" else "on the bare classifier"
        note = (f"worst case per image over {' and '.join(parts)} ({config.apgd_steps} steps each), {how}")
    return make_row(attack, mode, protocol, int(correct.sum()), len(y), eps, time.perf_counter() - t0, note)


def robust_accuracy_curve(run, epsilons, attack: str = "pgd20", inference: str = "atld-", limit: int | None = 450,
                          *, data: ImageData | None = None, data_root=None, seed: int = 0, batch_size: int = 256,
                          device: str = "auto", progress: Progress | None = None) -> list[dict]:
    """Robust accuracy against ε for one attack and inference: one evaluation row per ε (ε in
    [0, 1] pixel units; the IMT radius stays the model's own ε). Rows as `EvalReport.rows`."""
    epsilons = list(epsilons)
    if not epsilons:
        raise ConfigError("give at least one epsilon for the curve")
    resolved = resolve_device(device)
    run = _load(run, resolved)
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
