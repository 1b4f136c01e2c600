"""Attacks: the gradient attacks (`gradient`), the official AutoAttack code (`library`), the facts
of AutoAttack's standard version (`standard`), per-batch progress events (`progress`) and the
table of named attacks every command and page offers (`registry`).

Names are imported on first use (PEP 562), so `atld.attacks.registry`, `standard` and `progress`
stay torch-free for the app's torch-free pages."""

from __future__ import annotations

import importlib

_EXPORTS = {
    "atld.attacks.gradient": ("CW_KAPPA", "AttackConfig", "attack_batched", "cross_entropy_loss", "cw_margin_loss",
                              "project_linf", "random_start", "run_attack", "uniform_noise"),
    "atld.attacks.library": ("apgd", "autoattack", "square", "standard_evaluation"),
    "atld.attacks.standard": ("APGD_STEPS", "AUTOATTACK_STANDARD", "SQUARE_QUERIES"),
    "atld.attacks.progress": ("BatchEvent", "BatchProgress"),
    "atld.attacks.registry": ("ATTACK_NAMES", "ATTACKS", "DEFAULT_EVAL_ATTACKS", "PERTURBATION_NAMES", "PRESET_NAMES",
                              "AttackBudget", "NamedAttack", "Strength", "Target", "attack_from_name"),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'atld.attacks' has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)
