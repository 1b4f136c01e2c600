"""The Learn page's lesson plan and the comparison it makes, Streamlit-free."""

from __future__ import annotations

import numpy as np

from atld.ui.runs import RunEntry

STEPS = (
    ("1 · Natural clouds", "Natural images of each class land in their own region of the classifier's latent "
     "space (its logits): a cloud per class. That set of clouds is the *data manifold* as the classifier sees it."),
    ("2 · Perturbation", "An adversarial perturbation is tiny in pixel space (at most ε per pixel) but moves the "
     "image's latent far: off its cloud, often into another class's region."),
    ("3 · D sees the gap", "ATLD trains a discriminator D on the latents: natural = 1, perturbed = 0. If D can tell "
     "them apart, perturbed latents lie off the natural manifold: there is a distribution gap."),
    ("4 · ATLD closes it", "ATLD builds its training perturbations to fool D the most and trains the classifier to "
     "pull perturbed latents back onto the natural clouds, so the gap numbers shrink and robust accuracy rises."),
    ("5 · Honest evaluation", "Robust accuracy under PGD or CW is an upper bound: a stronger or adaptive attack can "
     "only lower it. Compare PGD with AutoAttack and with the adaptive attack through IMT before trusting a number."),
)


def pick_by_method(runs: list[RunEntry], dataset: str) -> dict[str, RunEntry]:
    """One checkpoint per training method for `dataset`, shipped runs first."""
    out: dict[str, RunEntry] = {}
    for r in sorted(runs, key=lambda r: (r.source != "shipped", r.label)):
        if r.dataset == dataset and r.method not in out:
            out[r.method] = r
    return out


def d_histogram(d_nat: np.ndarray, d_pert: np.ndarray, bins: int = 20):
    """A plotly histogram of D's natural probability for natural and perturbed latents."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for name, values, colour in (("natural", d_nat, "#1f77b4"), ("perturbed", d_pert, "#d62728")):
        fig.add_trace(go.Histogram(x=values, name=name, xbins=dict(start=0, end=1, size=1 / bins), opacity=0.6,
                                   marker_color=colour))
    fig.update_layout(barmode="overlay", height=300, margin=dict(l=10, r=10, t=10, b=10),
                      xaxis_title="D: P(natural)", yaxis_title="images")
    return fig


def comparison_rows(entries: dict[str, RunEntry], maps: dict) -> list[dict]:
    """Per method: accuracy natural / perturbed and the gap numbers (from `atld.latent.LatentMap`s),
    for the step-4 table."""
    rows = []
    for method, entry in entries.items():
        m = maps[method]
        rows.append({"checkpoint": entry.label, "method": method,
                     "clean acc %": round(100 * m.latents.accuracy_nat, 1),
                     "attacked acc %": round(100 * m.latents.accuracy_pert, 1),
                     "two-sample acc %": round(100 * m.gap["two_sample_accuracy"], 1),
                     "MMD²": round(m.gap["mmd2"], 4),
                     "kNN mixing %": round(100 * m.gap["knn_mixing"], 1)})
    return rows
