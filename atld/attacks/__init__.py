"""Attacks: the gradient attacks (`gradient`), the official AutoAttack code (`library`) and the
table of named attacks every command and page offers (`registry`)."""

from atld.attacks.gradient import (
                                   CW_KAPPA,
                                   AttackConfig,
                                   attack_batched,
                                   cross_entropy_loss,
                                   cw_margin_loss,
                                   project_linf,
                                   random_start,
                                   run_attack,
                                   uniform_noise,
)
from atld.attacks.library import APGD_STEPS, AUTOATTACK_STANDARD, SQUARE_QUERIES, apgd, autoattack, square
from atld.attacks.registry import (
                                   ATTACK_NAMES,
                                   ATTACKS,
                                   DEFAULT_EVAL_ATTACKS,
                                   PERTURBATION_NAMES,
                                   PRESET_NAMES,
                                   AttackBudget,
                                   NamedAttack,
                                   Target,
                                   attack_from_name,
)

__all__ = ["APGD_STEPS", "ATTACKS", "ATTACK_NAMES", "AUTOATTACK_STANDARD", "CW_KAPPA", "DEFAULT_EVAL_ATTACKS",
           "PERTURBATION_NAMES", "PRESET_NAMES", "SQUARE_QUERIES", "AttackBudget", "AttackConfig", "NamedAttack",
           "Target", "apgd", "attack_batched", "attack_from_name", "autoattack", "cross_entropy_loss", "cw_margin_loss",
           "project_linf", "random_start", "run_attack", "square", "uniform_noise"]
