"""What the Home and Evaluate pages say about robustness, Streamlit-free: the verdict first
(`atld.evaluate.verdict`, the same function as the CLI's), the rows with their protocol (the
same cells as the CLI table), the curve figure and the plain-words explanation.
Rows are `atld.evaluate` rows (accuracy and interval as fractions, ε in [0, 1] pixel units)."""

from __future__ import annotations

from atld.vocab import VerdictKind
from atld.evaluate.report import TABLE_COLUMNS, table_cells
from atld.evaluate.verdict import verdicts


HONEST_ROBUSTNESS = """
**Why PGD and CW numbers are an upper bound.** A robust accuracy under an attack only says that
*this* attack failed on those images. Any stronger attack can find more adversarial examples, never
fewer, so the true robust accuracy is at most the lowest number in a row.

**What the gap to AutoAttack means.** AutoAttack runs an ensemble of stronger, parameter-free
attacks. When PGD-20 reports much more than AutoAttack, PGD was misled: the loss surface hides its
gradients (*gradient masking*). ATLD's own paper shows it for the bare classifier (ATLD-: 66 % under
PGD-20, 34 % under AutoAttack on CIFAR-10).

**What the adaptive attack means.** ATLD and ATLD+ add a test-time step (IMT). The official
numbers attack the bare classifier and apply IMT afterwards (*non-adaptive*), so the attacker never
sees the defense. The *adaptive* attack differentiates through IMT; if it scores much lower, the
non-adaptive number relied on the attacker ignoring IMT (Croce et al., ICML 2022). So the verdict
for ATLD and ATLD+ counts only adaptive attacks, and a non-adaptive row is always shown beside
the adaptive one.
"""

NO_VERDICT = ("Robustness not measured: this checkpoint carries no stored evaluation. Any training-time PGD-20 "
              "number is only an upper bound; `python -m atld eval --checkpoint DIR --store` stores the verdict.")


def verdict_messages(rows: list[dict]) -> list[tuple[str, str]]:
    """(level, text) per inference mode, the verdict's one line: level "info" when a strong
    attack measured it, "warning" when it is only an upper bound, unverified or not attacked."""
    return [("info" if v.kind is VerdictKind.MEASURED else "warning", v.text) for v in verdicts(rows)]


def headline(rows: list[dict]) -> dict[str, tuple[str, str]]:
    """Per inference mode, the verdict as a metric: (value, the verdict's line). value: "32.0 %"
    (measured), "≤ 49.8 %" (an upper bound only), "unverified" or "not attacked"."""
    out = {}
    for v in verdicts(rows):
        if v.kind is VerdictKind.MEASURED:
            value = f"{100 * v.row['accuracy']:.1f} %"
        elif v.kind is VerdictKind.UPPER_BOUND:
            value = f"≤ {100 * v.row['accuracy']:.1f} %"
        else:
            value = v.kind.value
        out[v.inference.value] = (value, v.text)
    return out


def evaluation_table(rows: list[dict]):
    """Every row with its protocol, grouped by inference mode, each non-adaptive IMT group beside
    its adaptive row (or a "not run" row): the CLI table's cells, without the seconds."""
    import pandas as pd

    columns = [c for c in TABLE_COLUMNS if c != "seconds"]
    return pd.DataFrame([{c: cell[c] for c in columns} for cell in table_cells(latest_cells(rows))], columns=columns)


def latest_cells(rows: list[dict]) -> list[dict]:
    """One row per (attack, inference): when a cell appears more than once (several ε), the row
    at the largest n, then the latest, wins."""
    cells: dict[tuple[str, str], dict] = {}
    for r in rows:
        key = (r["attack"], r["inference"])
        if key not in cells or r.get("n", 0) >= cells[key].get("n", 0):
            cells[key] = r
    return list(cells.values())


# AutoAttack costs thousands of gradient evaluations per image: the curve shows it as points at the
# dataset's ε beside the cheaper attacks' curves, not as a full curve.
POINT_ATTACKS = ("autoattack",)
_DASH = {"atld-": "solid", "atld": "dash", "atld+": "dot"}  # line style per inference mode
_SYMBOL = ("circle", "diamond", "square", "triangle-up", "x", "star")  # marker per attack


def curve_epsilons(attack: str, dataset_epsilon: float) -> tuple[float, ...]:
    """The ε at which the curve evaluates `attack`: the grid, or only the dataset's ε (POINT_ATTACKS)."""
    if attack in POINT_ATTACKS:
        return (round(float(dataset_epsilon), 6),)
    return tuple(epsilon_grid(dataset_epsilon))


def curve_figure(curves: dict[str, list[dict]], dataset_epsilon: float):
    """Robust accuracy (%) vs ε for several checkpoints, attacks and inference modes, with 95 %
    interval bars; a dotted line marks the dataset's ε. curves: trace label -> rows of
    `robust_accuracy_curve`. Every trace gets its own colour (a 24-colour palette), its inference
    mode's line style and its attack's marker, so traces differ without colour too."""
    import plotly.express as px
    import plotly.graph_objects as go

    palette = px.colors.qualitative.Dark24
    attacks = sorted({r["attack"] for rows in curves.values() for r in rows})
    fig = go.Figure()
    for i, (label, rows) in enumerate(curves.items()):
        rows = sorted(rows, key=lambda r: r["epsilon"])
        acc = [100 * r["accuracy"] for r in rows]
        mode = rows[0]["inference"] if rows else "atld-"
        symbol = _SYMBOL[attacks.index(rows[0]["attack"]) % len(_SYMBOL)] if rows else "circle"
        fig.add_trace(go.Scatter(
            x=[r["epsilon"] for r in rows], y=acc, mode="lines+markers" if len(rows) > 1 else "markers", name=label,
            line=dict(color=palette[i % len(palette)], dash=_DASH.get(mode, "solid")),
            marker=dict(symbol=symbol, size=9 if len(rows) > 1 else 13),
            error_y=dict(type="data", symmetric=False, array=[100 * r["ci_high"] - a for r, a in zip(rows, acc)],
                         arrayminus=[a - 100 * r["ci_low"] for r, a in zip(rows, acc)], thickness=1)))
    fig.add_vline(x=dataset_epsilon, line_dash="dot", annotation_text="dataset ε", annotation_position="top")
    fig.update_layout(height=460, margin=dict(l=10, r=10, t=30, b=10), xaxis_title="ε ([0, 1] pixel units)",
                      yaxis_title="robust accuracy (%)", yaxis_range=[0, 100],
                      legend=dict(orientation="h", yanchor="top", y=-0.18, font=dict(size=11)))
    return fig


def epsilon_grid(dataset_epsilon: float, points: int = 5) -> list[float]:
    """0 to 2ε in equal steps, always with the dataset's ε itself on the grid (the point the page
    marks and the verdicts are measured at), rounded to 6 decimals so cache keys are stable."""
    grid = {round(2 * dataset_epsilon * i / (points - 1), 6) for i in range(points)}
    return sorted(grid | {round(float(dataset_epsilon), 6)})


def describe_range(values) -> str:
    """'450' when all rows agree, '200-450' when they differ (e.g. AutoAttack on fewer images)."""
    values = sorted(set(values))
    return "-" if not values else f"{values[0]:.4g}" if len(values) == 1 else f"{values[0]:.4g}-{values[-1]:.4g}"


D_CHECK_IMAGES = 200  # test images of the discriminator check on the pages that show D scores

D_TRAINING_METRIC = ("Training metrics: D in train mode (BatchNorm on the batch), on its own perturbations of training "
                     "batches. IMT uses D in eval mode on attacked test images, where it can do much worse: the "
                     "Attack, Latent and Evaluate pages measure that.")


def discriminator_messages(check: dict | None) -> list[tuple[str, str]]:
    """D's check (`DiscriminatorCheck.to_dict()`, or a card's stored one) as (level, text) lines,
    every line with the level the check gave it ("warning" where D cannot separate the clouds, where
    ATLD+ is a uniform half step, where IMT's step carries no information, ...)."""
    if not check:
        return []
    sentences = check["sentences"]
    levels = check.get("levels") or ["info"] * len(sentences)
    return list(zip(levels, sentences))
