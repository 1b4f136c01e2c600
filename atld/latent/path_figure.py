"""The attack's path as an animation, built without Streamlit: natural points moving, PGD step by
PGD step, across the natural map into other classes' regions, and (for a model with a
discriminator) the one IMT step back. One plotly Figure with a frame per step, play/pause and a
step slider; the Learn page, the Latent explorer and `python -m atld embed --trajectories --html`
draw the same figure.

Inputs are the arrays of `atld.latent.trajectories.attack_path` / `embed_path`: coords
[S+1, N, 2] (step 0 natural), labels [N], preds [S+1, N]; optionally the IMT step (coords [N, 2],
preds [N]) and a background of natural points (coords [B, 2], labels [B]) drawn faintly."""

from __future__ import annotations

import numpy as np

IMT_FRAME = "IMT"  # the name of the extra frame of the IMT step back
FLIP_COLOUR = "#d62728"  # a point whose prediction is no longer its true class
KEPT_COLOUR = "#2ca02c"


def frame_names(steps: int, imt: bool) -> list[str]:
    """"0" (natural), "1" … str(steps), then IMT_FRAME when the IMT step is drawn."""
    return [str(k) for k in range(steps + 1)] + ([IMT_FRAME] if imt else [])


def _caption(name: str, steps: int, preds: np.ndarray, labels: np.ndarray) -> str:
    flipped = int((preds != labels).sum())
    where = ("natural images" if name == "0" else "after one IMT step from the last iterate" if name == IMT_FRAME
             else f"PGD step {name}/{steps}")
    return f"{where}: {flipped} of {len(labels)} misclassified"


def trajectory_figure(coords: np.ndarray, labels: np.ndarray, preds: np.ndarray, class_names, *,
                      indices: np.ndarray | None = None, imt_coords: np.ndarray | None = None,
                      imt_preds: np.ndarray | None = None, background: np.ndarray | None = None,
                      background_labels: np.ndarray | None = None, title: str = "", height: int = 600,
                      frame_ms: int = 250, start: int = 0, focus: int | None = None):
    """The animation (see the module docstring). Frames: steps + 1, plus one for IMT when
    `imt_coords` is given. Moving points are coloured by their true class; a flipped point (its
    prediction is not its true class) is a red-edged cross, a kept one a green-edged circle.
    `start`: the frame shown first (the explorer's player steps through them); `focus`: one of
    the N images, ringed as it moves."""
    import plotly.graph_objects as go
    from atld.latent.palette import class_colour

    coords, labels, preds = np.asarray(coords, float), np.asarray(labels), np.asarray(preds)
    steps, n = coords.shape[0] - 1, coords.shape[1]
    if preds.shape != coords.shape[:2] or labels.shape != (n,):
        raise ValueError(f"coords {coords.shape}, preds {preds.shape} and labels {labels.shape} disagree")
    indices = np.arange(n) if indices is None else np.asarray(indices)
    colour = class_colour
    positions = [coords[k] for k in range(steps + 1)]
    predictions = [preds[k] for k in range(steps + 1)]
    if imt_coords is not None:
        positions.append(np.asarray(imt_coords, float))
        predictions.append(np.asarray(imt_preds))
    names = frame_names(steps, imt_coords is not None)

    fig = go.Figure()
    if background is not None:
        back, back_labels = np.asarray(background, float), np.asarray(background_labels)
        for c in np.unique(back_labels):
            rows = back[back_labels == c]
            fig.add_trace(go.Scatter(x=rows[:, 0], y=rows[:, 1], mode="markers", name=f"natural {class_names[c]}",
                                     marker=dict(color=colour(c), size=5, opacity=0.25), hoverinfo="skip"))

    def trail(k: int):
        # each point's path up to frame k, one polyline per point separated by gaps
        xs, ys = [], []
        for i in range(n):
            path = np.stack([p[i] for p in positions[:k + 1]])
            xs += [*path[:, 0], None]
            ys += [*path[:, 1], None]
        return go.Scatter(x=xs, y=ys, mode="lines", name="path", line=dict(color="rgba(90,90,90,0.45)", width=1),
                          hoverinfo="skip")

    def points(k: int):
        p, pred = positions[k], predictions[k]
        flipped = pred != labels
        text = [f"#{idx}: true {class_names[t]} → predicted {class_names[q]}"
                for idx, t, q in zip(indices, labels, pred)]
        return go.Scatter(
            x=p[:, 0], y=p[:, 1], mode="markers", name="attacked images", text=text,
            hovertemplate="%{text}<extra></extra>",
            marker=dict(color=[colour(t) for t in labels], size=12,
                        symbol=["x" if f else "circle" for f in flipped],
                        line=dict(color=[FLIP_COLOUR if f else KEPT_COLOUR for f in flipped], width=2)))

    def ring(k: int):
        p = positions[k][[focus]] if focus is not None else np.empty((0, 2))
        return go.Scatter(x=p[:, 0], y=p[:, 1], mode="markers", name="followed image", hoverinfo="skip",
                          marker=dict(size=24, color="rgba(0,0,0,0)", line=dict(color="black", width=2.5)))

    start = min(max(0, int(start)), len(names) - 1)
    focus = None if focus is None or not 0 <= int(focus) < n else int(focus)
    parts = (trail, points) + ((ring,) if focus is not None else ())
    moving = list(range(len(fig.data), len(fig.data) + len(parts)))
    for part in parts:
        fig.add_trace(part(start))
    fig.frames = [go.Frame(name=name, data=[part(k) for part in parts], traces=moving,
                           layout=dict(title=dict(text=_caption(name, steps, predictions[k], labels))))
                  for k, name in enumerate(names)]

    every = np.concatenate([np.concatenate(positions)] + ([np.asarray(background, float)]
                                                          if background is not None else []))
    low, high = every.min(0), every.max(0)
    pad = 0.05 * np.maximum(high - low, 1e-9)
    # redraw: each frame's title (how many are misclassified by then) is a layout change, which
    # Plotly applies only when it redraws
    play = dict(frame=dict(duration=frame_ms, redraw=True), fromcurrent=True, transition=dict(duration=frame_ms // 2))
    pause = dict(frame=dict(duration=0, redraw=False), mode="immediate", transition=dict(duration=0))
    fig.update_layout(
        # the title on top, the buttons between it and the plot, the step slider under the x axis,
        # the legend under the slider: nothing covers anything (Plotly grows the margins for them)
        height=height, margin=dict(l=10, r=10, t=90, b=10),
        title=dict(text=title or _caption(names[start], steps, predictions[start], labels), y=0.985, yanchor="top"),
        # equal units on both axes, with tick numbers: a stretched axis would draw a thin cloud round
        xaxis=dict(range=[low[0] - pad[0], high[0] + pad[0]], title="PC 1 (natural map)", autorange=False,
                   constrain="range", ticks="outside"),
        yaxis=dict(range=[low[1] - pad[1], high[1] + pad[1]], title="PC 2", autorange=False, scaleanchor="x",
                   scaleratio=1, ticks="outside"),
        legend=dict(orientation="h", yanchor="top", y=-0.5),
        updatemenus=[dict(type="buttons", direction="left", showactive=False, x=0.0, y=1.02, xanchor="left",
                          yanchor="bottom",
                          buttons=[dict(label="▶ Play", method="animate", args=[None, play]),
                                   dict(label="❚❚ Pause", method="animate", args=[[None], pause])])],
        sliders=[dict(active=start, y=-0.1, yanchor="top", len=0.9, x=0.1, currentvalue=dict(prefix="step: "),
                      steps=[dict(label="natural" if name == "0" else name, method="animate",
                                  args=[[name], dict(pause, frame=dict(duration=0, redraw=True))])
                             for name in names])])
    return fig


def path_figure(path, coords, imt_coords, background, background_labels, class_names, *, indices=None,
                title: str = "", height: int = 600, frame_ms: int = 250, start: int = 0, focus: int | None = None):
    """`trajectory_figure` of an `atld.latent.trajectories.AttackPath` and its `embed_path` output."""
    return trajectory_figure(coords, path.labels.numpy(), path.preds.numpy(), class_names, indices=indices,
                             imt_coords=imt_coords,
                             imt_preds=None if path.imt_preds is None else path.imt_preds.numpy(),
                             background=background, background_labels=background_labels, title=title,
                             height=height, frame_ms=frame_ms, start=start, focus=focus)
