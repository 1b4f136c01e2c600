"""Honest robustness evaluation: attacks × inference modes with n, a Wilson 95 % interval, ε and
time per cell; a verdict per inference mode (the number to trust first); results stored in the
checkpoint card; robust accuracy vs ε; gradient-masking diagnostics; D's honesty check; progress
with a time estimate. See docs/evaluation.md.

Names are imported on first use (PEP 562): `report`, `verdict` and `findings` are torch-free,
so the app's torch-free pages can read stored evaluations."""

from __future__ import annotations

from atld.lazy import lazy_exports

_EXPORTS = {
    "atld.evaluate.report": ("EvalReport", "make_row", "store_evaluation", "wilson_interval"),
    "atld.evaluate.verdict": ("Verdict", "attack_label", "verdicts"),
    "atld.evaluate.findings": ("masking_findings",),
    "atld.evaluate.progress": ("ProgressEvent", "ProgressTracker"),
    "atld.evaluate.runner": ("evaluate", "robust_accuracy_curve", "discriminator_report"),
    "atld.evaluate.diagnostics": ("MaskingReport", "masking_diagnostics"),
    "atld.evaluate.discriminator": ("DiscriminatorCheck", "discriminator_check", "separation", "batch_context_scores",
                                    "share_curve", "step_comparison", "perturbation_diagnostic", "what_d_learned",
                                    "latents_of"),
    "atld.evaluate.dwords": ("auc_words", "separation_sentence", "d_score_caption"),
}
__getattr__, __all__ = lazy_exports("atld.evaluate", _EXPORTS)
