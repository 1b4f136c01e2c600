"""Attacks: the gradient attacks (`gradient`), the official AutoAttack code (`library`), the facts
of AutoAttack's standard version (`standard`), per-batch progress events (`progress`) and the
table of named attacks every command and page offers (`registry`).

Names are imported on first use (PEP 562), so `atld.attacks.registry`, `standard` and `progress`
stay torch-free for the app's torch-free pages."""

from __future__ import annotations

from atld.lazy import lazy_exports

_EXPORTS = {
    "atld.attacks.gradient": ("CW_KAPPA", "AttackConfig", "attack_batched", "cross_entropy_loss", "cw_margin_loss",
                              "project_linf", "random_start", "run_attack", "uniform_noise"),
    "atld.attacks.library": ("apgd", "autoattack", "square", "standard_evaluation"),
    "atld.attacks.standard": ("APGD_STEPS", "AUTOATTACK_STANDARD", "SQUARE_QUERIES"),
    "atld.attacks.progress": ("BatchEvent", "BatchProgress"),
    "atld.attacks.step": ("STEP_FRACTION", "attack_step"),
    "atld.attacks.registry": ("ATTACK_NAMES", "ATTACKS", "DEFAULT_EVAL_ATTACKS", "PERTURBATION_NAMES", "PRESET_NAMES",
                              "AttackBudget", "NamedAttack", "Strength", "Target", "attack_from_name"),
}
__getattr__, __all__ = lazy_exports("atld.attacks", _EXPORTS)
