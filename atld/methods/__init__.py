"""Training methods: one step function each, in the table `METHODS` (the method names, traits and
titles are the closed vocabulary `atld.vocab.Method`).

Adding a method is a `Method` member with its traits, its module (a `step(ctx, x, y) -> StepOutput`)
and one row in `METHODS`.
"""

from atld.methods.atld import atld_perturbation, atld_start, atld_step
from atld.methods.base import MethodSpec, StepContext, StepOutput, descend
from atld.methods.feature_scatter import feature_scatter_step
from atld.methods.natural import natural_step
from atld.methods.pgd_at import pgd_at_step
from atld.vocab import METHOD_NAMES, Method

METHODS: dict[str, MethodSpec] = {m.name: m for m in (
    MethodSpec(Method.NATURAL, natural_step),
    MethodSpec(Method.PGD_AT, pgd_at_step),
    MethodSpec(Method.FEATURE_SCATTER, feature_scatter_step),
    MethodSpec(Method.ATLD, atld_step),
)}
assert set(METHODS) == set(METHOD_NAMES), "every Method has one step function"

__all__ = ["METHODS", "METHOD_NAMES", "MethodSpec", "StepContext", "StepOutput", "atld_perturbation", "atld_start",
           "atld_step", "descend", "feature_scatter_step", "natural_step", "pgd_at_step"]
