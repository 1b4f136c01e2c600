"""Training methods: name -> step function (a closed registry)."""

from atld.train.methods.atld import atld_perturbation, atld_start, atld_step
from atld.train.methods.base import StepContext, StepOutput
from atld.train.methods.feature_scatter import feature_scatter_step
from atld.train.methods.natural import natural_step
from atld.train.methods.pgd_at import pgd_at_step

STEP_FUNCTIONS = {"natural": natural_step, "pgd-at": pgd_at_step, "feature-scatter": feature_scatter_step,
                  "atld": atld_step}

__all__ = ["STEP_FUNCTIONS", "StepContext", "StepOutput", "atld_perturbation", "atld_start", "atld_step", "feature_scatter_step",
           "natural_step", "pgd_at_step"]
