"""Draw a study's robust accuracy vs ε curve (OUT/curve.json from benchmarks/study.py) as a PNG.

  python -m benchmarks.study_figure runs/study-digits-bn/curve.json docs/figures/digits-bn-robust-vs-eps.png \\
      --title "digits, small CNN, PGD-20"

One line per run and inference (ATLD- = bare classifier; ATLD = IMT after a non-adaptive PGD-20
on the bare classifier), with the Wilson 95 % interval as error bars. Needs plotly and kaleido
(kaleido drives a local Chromium; no network)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

LABELS = {"natural": "natural", "pgd-at": "PGD-AT", "feature-scatter": "Feature Scattering", "atld": "ATLD"}


def label(key: str) -> str:
    run, mode = key.split("/")
    method = run.rsplit("-s", 1)[0]
    name = LABELS.get(method, method)
    if method == "atld":
        name += " (IMT, non-adaptive)" if mode == "atld" else "- (bare classifier)"
    return name


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("curve", type=Path)
    p.add_argument("png", type=Path)
    p.add_argument("--title", default="")
    p.add_argument("--train-epsilon", type=float, help="draw a vertical line at the training ε")
    args = p.parse_args(argv)
    import plotly.graph_objects as go

    curves = json.loads(args.curve.read_text())
    fig = go.Figure()
    for key, rows in curves.items():
        x = [r["epsilon"] for r in rows]
        y = [100 * r["accuracy"] for r in rows]
        fig.add_trace(go.Scatter(
            x=x, y=y, mode="lines+markers", name=label(key),
            line={"dash": "dot"} if key.endswith("/atld") else {},
            error_y={"type": "data", "symmetric": False,
                     "array": [100 * r["ci_high"] - v for r, v in zip(rows, y)],
                     "arrayminus": [v - 100 * r["ci_low"] for r, v in zip(rows, y)], "thickness": 1}))
    if args.train_epsilon is not None:
        fig.add_vline(x=args.train_epsilon, line={"color": "grey", "dash": "dash"},
                      annotation_text="training ε", annotation_position="top")
    n = next(iter(curves.values()))[0]["n"] if curves else 0
    fig.update_layout(title=f"{args.title} (n = {n}, Wilson 95 % intervals)", template="plotly_white",
                      xaxis_title="ε (ℓ∞, [0, 1] pixel units)", yaxis_title="accuracy under PGD-20 (%)",
                      yaxis_range=[0, 101], width=820, height=500,
                      legend={"x": 0.01, "y": 0.02, "bgcolor": "rgba(255,255,255,0.8)"})
    args.png.parent.mkdir(parents=True, exist_ok=True)
    fig.write_image(str(args.png), scale=1.5)
    print(f"wrote {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
