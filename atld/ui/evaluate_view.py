"""The Evaluate page's table, curve figure and plain-words explanation, Streamlit-free.
Rows are `atld.evaluate` rows (accuracy and interval as fractions, ε in [0, 1] pixel units)."""

from __future__ import annotations

ATTACK_ORDER = ("natural", "fgsm", "pgd20", "pgd100", "cw20", "cw100", "square", "autoattack", "adaptive")
INFERENCE_ORDER = ("atld-", "atld", "atld+")

HONEST_ROBUSTNESS = """
**Why PGD and CW numbers are an upper bound.** A robust accuracy under an attack only says that
*this* attack failed on those images. Any stronger attack can find more adversarial examples, never
fewer, so the true robust accuracy is at most the lowest number in a row.

**What the gap to AutoAttack means.** AutoAttack runs an ensemble of stronger, parameter-free
attacks. When PGD-20 reports much more than AutoAttack, PGD was misled: the loss surface hides its
gradients (*gradient masking*). ATLD's own paper shows it for the bare classifier (ATLD-: 66 % under
PGD-20, 34 % under AutoAttack on CIFAR-10).

**What the adaptive attack means.** ATLD and ATLD+ add a test-time step (IMT). The official
numbers attack the bare classifier and apply IMT afterwards, so the attacker never sees the
defense. The *adaptive* attack differentiates through IMT; if it scores much lower, the
non-adaptive number relied on the attacker ignoring IMT (Croce et al., ICML 2022).
"""


def _order(value: str, order: tuple[str, ...]) -> int:
    return order.index(value) if value in order else len(order)


def accuracy_pivot(rows: list[dict]):
    """attack × inference table of "accuracy % (low–high)" strings, attacks in a fixed order.
    When a cell appears more than once (several ε), the row at the largest n, then latest, wins."""
    import pandas as pd

    cells: dict[tuple[str, str], dict] = {}
    for r in rows:
        key = (r["attack"], r["inference"])
        if key not in cells or r.get("n", 0) >= cells[key].get("n", 0):
            cells[key] = r
    attacks = sorted({a for a, _ in cells}, key=lambda a: _order(a, ATTACK_ORDER))
    modes = sorted({m for _, m in cells}, key=lambda m: _order(m, INFERENCE_ORDER))
    table = {m: [(f"{100 * cells[(a, m)]['accuracy']:.1f} % ({100 * cells[(a, m)]['ci_low']:.0f}–"
                  f"{100 * cells[(a, m)]['ci_high']:.0f})") if (a, m) in cells else "" for a in attacks]
             for m in modes}
    return pd.DataFrame(table, index=pd.Index(attacks, name="attack"))


def curve_figure(curves: dict[str, list[dict]], dataset_epsilon: float):
    """Robust accuracy (%) vs ε for several checkpoints, with 95 % interval bars; a dotted line
    marks the dataset's ε. curves: checkpoint label -> rows of `robust_accuracy_curve`."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for label, rows in curves.items():
        rows = sorted(rows, key=lambda r: r["epsilon"])
        acc = [100 * r["accuracy"] for r in rows]
        fig.add_trace(go.Scatter(
            x=[r["epsilon"] for r in rows], y=acc, mode="lines+markers", name=label,
            error_y=dict(type="data", symmetric=False, array=[100 * r["ci_high"] - a for r, a in zip(rows, acc)],
                         arrayminus=[a - 100 * r["ci_low"] for r, a in zip(rows, acc)], thickness=1)))
    fig.add_vline(x=dataset_epsilon, line_dash="dot", annotation_text="dataset ε", annotation_position="top")
    fig.update_layout(height=420, margin=dict(l=10, r=10, t=30, b=10), xaxis_title="ε ([0, 1] pixel units)",
                      yaxis_title="robust accuracy (%)", yaxis_range=[0, 100], legend=dict(orientation="h"))
    return fig


def epsilon_grid(dataset_epsilon: float, points: int = 6) -> list[float]:
    """0 to 2ε in equal steps (rounded to 6 decimals, so cache keys are stable)."""
    return [round(2 * dataset_epsilon * i / (points - 1), 6) for i in range(points)]


def describe_range(values) -> str:
    """'450' when all rows agree, '200-450' when they differ (e.g. AutoAttack on fewer images)."""
    values = sorted(set(values))
    return "-" if not values else f"{values[0]:.4g}" if len(values) == 1 else f"{values[0]:.4g}-{values[-1]:.4g}"
