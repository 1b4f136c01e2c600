"""The one class palette of every map and figure (torch-free, no plotly import): class c is drawn
in `class_colour(c)` on the Learn page, the Latent explorer, the attack's path and the side by
side maps alike, so a class keeps its colour from page to page. `atld.ui.display` re-exports it
for the pages."""

from __future__ import annotations

# plotly's D3 (Category10) for the first ten classes, then Set3's darker half: distinct on a projector.
CLASS_PALETTE = ("#1F77B4", "#FF7F0E", "#2CA02C", "#D62728", "#9467BD", "#8C564B", "#E377C2", "#7F7F7F",
                 "#BCBD22", "#17BECF", "#8DD3C7", "#BEBADA", "#FB8072", "#80B1D3", "#FDB462", "#B3DE69",
                 "#FCCDE5", "#BC80BD", "#CCEBC5", "#FFED6F")


def class_colour(c) -> str:
    """The colour of class index `c` (classes beyond the palette reuse it cyclically)."""
    return CLASS_PALETTE[int(c) % len(CLASS_PALETTE)]
