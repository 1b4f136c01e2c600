"""Honest robustness evaluation (issue 3): attacks × inference modes with n, a Wilson 95 %
interval, ε and time per cell; results stored in the checkpoint card; robust accuracy vs ε;
gradient-masking diagnostics. See docs/evaluation.md."""

from atld.attacks import attack_from_name
from atld.evaluate.config import (ATTACK_NAMES, DEFAULT_ATTACKS, PROTOCOL_ADAPTIVE, PROTOCOL_DIRECT,
                                  PROTOCOL_NON_ADAPTIVE, PROTOCOLS, EvalConfig)
from atld.evaluate.diagnostics import MaskingReport, masking_diagnostics, masking_findings
from atld.evaluate.report import EvalReport, store_evaluation, wilson_interval
from atld.evaluate.runner import evaluate, robust_accuracy_curve

__all__ = ["ATTACK_NAMES", "DEFAULT_ATTACKS", "PROTOCOLS", "PROTOCOL_ADAPTIVE", "PROTOCOL_DIRECT",
           "PROTOCOL_NON_ADAPTIVE", "EvalConfig", "EvalReport", "MaskingReport", "attack_from_name", "evaluate",
           "masking_diagnostics", "masking_findings", "robust_accuracy_curve", "store_evaluation",
           "wilson_interval"]
