"""The Latent explorer's figure, selection and tables, built without Streamlit.

Point ids: a map of N images has 2N points; id i < N is natural image i, id N + i is its
perturbed copy. Every plotly point carries its id in `customdata[0]`, because plotly's point
indices are per trace and the traces are split by class and kind."""

from __future__ import annotations

import numpy as np

COLOR_MODES = ("class × natural/perturbed", "D score", "correct / wrong")
KINDS = ("natural", "perturbed")


def point_table(embedding: np.ndarray, labels: np.ndarray, pred_nat: np.ndarray, pred_pert: np.ndarray,
                d_nat: np.ndarray | None, d_pert: np.ndarray | None, class_names: tuple[str, ...],
                indices: np.ndarray | None = None):
    """One row per point (2N rows, natural first): id, kind, image (test index), x, y, class (the
    label's index), label, prediction (names), correct, d_score (NaN without D). embedding: [2N, 2]."""
    import pandas as pd

    n = len(labels)
    if indices is None:
        indices = np.arange(n)
    both = lambda a, b: np.concatenate([a, b])  # noqa: E731
    d = both(d_nat, d_pert) if d_nat is not None else np.full(2 * n, np.nan)
    lab = both(labels, labels)
    pred = both(pred_nat, pred_pert)
    return pd.DataFrame({
        "id": np.arange(2 * n), "kind": np.repeat(KINDS, n), "image": both(indices, indices),
        "x": embedding[:, 0], "y": embedding[:, 1], "class": lab,
        "label": [class_names[i] for i in lab], "prediction": [class_names[i] for i in pred],
        "correct": lab == pred, "d_score": d.astype(float)})


def latent_figure(table, color_by: str = COLOR_MODES[0], title: str = "", height: int = 520):
    """A plotly scatter of `point_table` rows. Natural points are circles, perturbed are crosses;
    colour by class (one trace per class × kind), by D score (a colour scale) or by correctness."""
    import plotly.graph_objects as go
    from plotly.colors import qualitative

    fig = go.Figure()
    symbols = {"natural": "circle", "perturbed": "x"}

    def add(rows, name, color=None, legendgroup=None, **marker):
        fig.add_trace(go.Scatter(
            x=rows["x"], y=rows["y"], mode="markers", name=name, legendgroup=legendgroup,
            customdata=np.stack([rows["id"], rows["image"]], axis=1),
            text=[f"{k} #{i}: label {lab}, pred {p}" + ("" if np.isnan(d) else f", D {d:.2f}")
                  for k, i, lab, p, d in zip(rows["kind"], rows["image"], rows["label"], rows["prediction"],
                                             rows["d_score"])],
            hovertemplate="%{text}<extra></extra>",
            marker=dict(color=color, size=7, symbol=symbols[rows["kind"].iloc[0]], opacity=0.75, **marker)))

    if color_by == "D score" and table["d_score"].notna().any():
        for kind in KINDS:
            rows = table[table["kind"] == kind]
            add(rows, kind, color=rows["d_score"], colorscale="RdBu", cmin=0.0, cmax=1.0,
                showscale=kind == "natural", colorbar=dict(title="D: P(natural)"))
    elif color_by == "correct / wrong":
        for kind in KINDS:
            for ok, colour in ((True, "#2a9d8f"), (False, "#e63946")):
                rows = table[(table["kind"] == kind) & (table["correct"] == ok)]
                if len(rows):
                    add(rows, f"{kind}, {'correct' if ok else 'wrong'}", color=colour)
    else:
        palette = qualitative.D3 + qualitative.Set3
        for c in sorted(table["class"].unique()):
            for kind in KINDS:
                rows = table[(table["class"] == c) & (table["kind"] == kind)]
                if len(rows):
                    label = rows["label"].iloc[0]
                    add(rows, f"{label} · {kind}", color=palette[c % len(palette)], legendgroup=str(label))
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

    rows = []
    if gap.get("discriminator_auc") is not None:
        rows.append(("D's AUC", fmt(gap["discriminator_auc"]), "0.5: D cannot tell natural from perturbed"))
    rows.append(("two-sample test accuracy", fmt(gap.get("two_sample_accuracy"), True),
                 f"50 %: no gap (p = {fmt(gap.get('two_sample_p_value'))})"))
    rows.append(("MMD²", fmt(gap.get("mmd2")), f"0: same distribution (p = {fmt(gap.get('mmd_p_value'))})"))
    rows.append(("kNN mixing", fmt(gap.get("knn_mixing"), True),
                 f"share of natural neighbours of perturbed points; {fmt(gap.get('knn_mixing_expected'), True)} "
                 "if perfectly mixed"))
    return rows
