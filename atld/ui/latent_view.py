"""The Latent explorer's figure, selection and gap summary, built without Streamlit.

The points are the rows of `atld.latent.maps.points_frame` (the same table the CSV export and
the `embed` command write): row i is point i; i < N is natural image i, N + i its perturbed copy.
Every plotly point carries its id in `customdata[0]`, because plotly's point indices are per
trace and the traces are split by class and set."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from atld.config.vocab import ColorBy, FitMode, LatentSpace, PointSet, Projection

COLOR_MODES = tuple(ColorBy)
KINDS = tuple(PointSet)


@dataclass(frozen=True)
class LatentDefaults:
    """What the Latent explorer shows first (the default view, computed ahead at start-up and
    kept on disk); ε is the dataset's, the seed the sidebar's."""
    attack: str = "pgd20"
    n: int = 300  # test images (at most the test set)
    space: LatentSpace = LatentSpace.LOGITS
    color_by: ColorBy = ColorBy.CLASS
    fit_on: FitMode = FitMode.JOINT
    projection: Projection = Projection.PCA
    height: int = 520  # pixels, the main map
    compare_height: int = 420  # pixels, each of the two side-by-side maps


LATENT_DEFAULTS = LatentDefaults()


def latent_figure(table, color_by: str = ColorBy.CLASS, title: str = "", height: int = 520):
    """A plotly scatter of a point table. Natural points are circles, perturbed are crosses;
    colour by class (one trace per class × set), by D score (a colour scale) or by correctness."""
    import plotly.graph_objects as go
    from plotly.colors import qualitative

    fig = go.Figure()
    symbols = {PointSet.NATURAL: "circle", PointSet.PERTURBED: "x"}

    def add(rows, name, color=None, legendgroup=None, **marker):
        fig.add_trace(go.Scatter(
            x=rows["x"], y=rows["y"], mode="markers", name=name, legendgroup=legendgroup,
            customdata=np.stack([rows.index.values, rows["index"].values], axis=1),
            text=[f"{k} #{i}: label {lab}, pred {p}" + ("" if np.isnan(d) else f", D {d:.2f}")
                  for k, i, lab, p, d in zip(rows["set"], rows["index"], rows["label_name"], rows["pred_name"],
                                             rows["d_natural"])],
            hovertemplate="%{text}<extra></extra>",
            marker=dict(color=color, size=7, symbol=symbols[rows["set"].iloc[0]], opacity=0.75, **marker)))

    if color_by == ColorBy.D_SCORE and table["d_natural"].notna().any():
        for kind in KINDS:
            rows = table[table["set"] == kind]
            add(rows, kind, color=rows["d_natural"], colorscale="RdBu", cmin=0.0, cmax=1.0,
                showscale=kind == PointSet.NATURAL, colorbar=dict(title="D: P(natural)"))
    elif color_by == ColorBy.CORRECT:
        for kind in KINDS:
            for ok, colour in ((True, "#2a9d8f"), (False, "#e63946")):
                rows = table[(table["set"] == kind) & (table["correct"] == ok)]
                if len(rows):
                    add(rows, f"{kind}, {'correct' if ok else 'wrong'}", color=colour)
    else:
        palette = qualitative.D3 + qualitative.Set3
        for c in sorted(table["label"].unique()):
            for kind in KINDS:
                rows = table[(table["label"] == c) & (table["set"] == kind)]
                if len(rows):
                    name = rows["label_name"].iloc[0]
                    add(rows, f"{name} · {kind}", color=palette[c % len(palette)], legendgroup=str(name))
    fig.update_layout(title=title or None, height=height, margin=dict(l=10, r=10, t=40 if title else 10, b=10),
                      dragmode="select", legend=dict(itemsizing="constant", font=dict(size=10)),
                      xaxis=dict(showticklabels=False, title=None), yaxis=dict(showticklabels=False, title=None))
    return fig


def selected_ids(selection) -> list[int]:
    """Point ids from a Streamlit plotly selection (`event.selection` or its dict), in order,
    without repeats. Points without customdata are ignored."""
    points = (selection or {}).get("points", []) if isinstance(selection, dict) else getattr(selection, "points", [])
    ids = []
    for p in points or []:
        data = p.get("customdata") if isinstance(p, dict) else None
        if data is None or (hasattr(data, "__len__") and len(data) == 0):
            continue
        if isinstance(data, dict):  # the browser may send an array as {"0": id, "1": image}
            data = [data[k] for k in sorted(data, key=int)]
        ids.append(int(data[0]) if isinstance(data, (list, tuple)) else int(data))
    return list(dict.fromkeys(ids))


def gap_summary(gap: dict) -> list[tuple[str, str, str]]:
    """(name, value, meaning) rows for the gap numbers beside the plot."""
    def fmt(v, pct=False):
        if v is None:
            return "—"
        return f"{100 * v:.1f} %" if pct else f"{v:.3g}"

    from atld.evaluate.stats import p_value_text

    rows = []
    if gap.get("discriminator_auc") is not None:
        rows.append(("D's AUC", fmt(gap["discriminator_auc"]), "0.5: D cannot tell natural from perturbed"))
    rows.append(("two-sample test accuracy", fmt(gap.get("two_sample_accuracy"), True),
                 f"50 %: no gap ({p_value_text(gap.get('two_sample_p_value'))})"))
    rows.append(("MMD²", fmt(gap.get("mmd2")), f"0: same distribution ({p_value_text(gap.get('mmd_p_value'))})"))
    rows.append(("kNN mixing", fmt(gap.get("knn_mixing"), True),
                 f"share of natural neighbours of perturbed points; {fmt(gap.get('knn_mixing_expected'), True)} "
                 "if perfectly mixed"))
    return rows
