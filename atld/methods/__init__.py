"""Training methods: one step function each, and the table that names them with their traits.

Adding a method is its module (a `step(ctx, x, y) -> StepOutput`) and one row in `METHODS`.
"""

from atld.methods.atld import atld_perturbation, atld_start, atld_step
from atld.methods.base import MethodSpec, StepContext, StepOutput, descend
from atld.methods.feature_scatter import feature_scatter_step
from atld.methods.natural import natural_step
from atld.methods.pgd_at import pgd_at_step

METHODS: dict[str, MethodSpec] = {m.name: m for m in (
    MethodSpec("natural", natural_step, "clean cross-entropy", title="Natural (no defence)",
               pick_when="Plain training on clean images: the fast baseline, and the model attacks fool."),
    MethodSpec("pgd-at", pgd_at_step, "Madry's PGD adversarial training", title="PGD adversarial training",
               pick_when="Trains on PGD attacks with labels: the standard robust baseline, about k+1 times slower."),
    MethodSpec("feature-scatter", feature_scatter_step,
               "Feature Scattering, label-free optimal-transport perturbations", title="Feature Scattering",
               pick_when="Label-free perturbations that scatter the batch's features: ATLD's closest relative."),
    MethodSpec("atld", atld_step, "ATLD, label-free perturbations against a latent discriminator", discriminator=True,
               title="ATLD (latent discriminator)",
               pick_when="Label-free perturbations against a discriminator on the logits; the only method "
                         "whose model has D, so IMT (atld / atld+) can correct inputs at test time."),
)}
METHOD_NAMES = tuple(METHODS)


def methods_help() -> str:
    """One line naming every method and what it does (the config's help text)."""
    return "; ".join(f"{m.name} = {m.help}" for m in METHODS.values())


__all__ = ["METHODS", "METHOD_NAMES", "MethodSpec", "StepContext", "StepOutput", "atld_perturbation", "atld_start",
           "atld_step", "descend", "feature_scatter_step", "methods_help", "natural_step", "pgd_at_step"]
