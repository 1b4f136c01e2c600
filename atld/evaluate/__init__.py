"""Honest robustness evaluation: attacks × inference modes with n, a Wilson 95 % interval, ε and
time per cell; results stored in the checkpoint card; robust accuracy vs ε; gradient-masking
diagnostics. See docs/evaluation.md."""

from atld.evaluate.diagnostics import MaskingReport, masking_diagnostics, masking_findings
from atld.evaluate.report import EvalReport, make_row, store_evaluation, wilson_interval
from atld.evaluate.runner import evaluate, robust_accuracy_curve

__all__ = ["EvalReport", "MaskingReport", "evaluate", "make_row", "masking_diagnostics", "masking_findings",
           "robust_accuracy_curve", "store_evaluation", "wilson_interval"]
