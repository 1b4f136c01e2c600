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


LESS_ROBUST = "IMT makes the model less robust"  # the verdict's words (`atld.evaluate.verdict`) for a negative finding


def verdict_messages(rows: list[dict]) -> list[tuple[str, str]]:
    """(level, text) per inference mode, the verdict's one line, coloured by outcome: "warning" when
    IMT makes the model less robust (listed first: it is the finding), when the number is only an
    upper bound, unverified or not attacked, or when IMT adds nothing measurable; else "info" (a
    measurement is never a green success box)."""
    def level(v) -> str:
        negative = LESS_ROBUST in v.text or "adds no measurable robustness" in v.text
        return "warning" if negative or v.kind is not VerdictKind.MEASURED else "info"

    out = [(level(v), v.text) for v in verdicts(rows)]
    return sorted(out, key=lambda m: LESS_ROBUST not in m[1])  # stable: otherwise atld-, atld, atld+


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


def curve_figure(curves: dict[str, list[dict]], dataset_epsilon: float, columns: int = 2):
    """Robust accuracy (%) vs ε, one panel per checkpoint (so four models stay legible), with 95 %
    interval bars and a dotted line at the dataset's ε. curves: (checkpoint, attack · mode) ->
    rows of `robust_accuracy_curve`; keys are "checkpoint · what" (`curve_key`). In every panel an
    attack keeps its colour and marker and an inference mode its line style, listed once in a
    legend right of the plots; the hover says "PGD-20 / atld at ε 0.2: 41.0 % (31.9-50.8 %, n 100)"."""
    import plotly.express as px
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    models = list(dict.fromkeys(key.split(CURVE_SEP, 1)[0] for key in curves))
    whats = list(dict.fromkeys(key.split(CURVE_SEP, 1)[-1] for key in curves))
    cols = max(1, min(columns, len(models)))
    rows_n = -(-len(models) // cols) if models else 1
    fig = make_subplots(rows=rows_n, cols=cols, subplot_titles=models or None, shared_yaxes=True,
                        horizontal_spacing=0.06, vertical_spacing=0.16 if rows_n > 1 else 0.1)
    palette = px.colors.qualitative.D3
    attacks = sorted({r["attack"] for rows in curves.values() for r in rows})
    shown: set[str] = set()
    for key, rows in curves.items():
        model, what = key.split(CURVE_SEP, 1) if CURVE_SEP in key else (key, key)
        i = models.index(model)
        rows = sorted(rows, key=lambda r: r["epsilon"])
        if not rows:
            continue
        acc = [100 * r["accuracy"] for r in rows]
        mode, attack_name = rows[0]["inference"], rows[0]["attack"]
        hover = [f"{what} at ε {r['epsilon']:.3g}: {a:.1f} % ({100 * r['ci_low']:.1f}-{100 * r['ci_high']:.1f} %, "
                 f"n {r['n']})" for r, a in zip(rows, acc)]
        fig.add_trace(go.Scatter(
            x=[r["epsilon"] for r in rows], y=acc, mode="lines+markers" if len(rows) > 1 else "markers", name=what,
            legendgroup=what, showlegend=what not in shown, hovertext=hover, hoverinfo="text",
            line=dict(color=palette[whats.index(what) % len(palette)], dash=_DASH.get(mode, "solid")),
            marker=dict(symbol=_SYMBOL[attacks.index(attack_name) % len(_SYMBOL)], size=8 if len(rows) > 1 else 12),
            error_y=dict(type="data", symmetric=False, array=[100 * r["ci_high"] - a for r, a in zip(rows, acc)],
                         arrayminus=[a - 100 * r["ci_low"] for r, a in zip(rows, acc)], thickness=1)),
            row=i // cols + 1, col=i % cols + 1)
        shown.add(what)
    for i in range(len(models)):
        fig.add_vline(x=dataset_epsilon, line_dash="dot", line_color="grey", row=i // cols + 1, col=i % cols + 1)
    fig.update_yaxes(range=[0, 100], ticksuffix=" %")
    fig.update_yaxes(title_text="robust accuracy", col=1)
    fig.update_xaxes(title_text="ε ([0, 1] pixels; dotted: the dataset's ε)", row=rows_n)
    fig.update_layout(height=300 * rows_n + 60, margin=dict(l=10, r=10, t=40, b=10),
                      legend=dict(orientation="v", x=1.02, xanchor="left", y=1, yanchor="top", font=dict(size=11)))
    return fig


CURVE_SEP = " · "  # between a curve's checkpoint and what it measures, in `curve_figure`'s keys


def curve_key(checkpoint: str, attack_name: str, mode: str) -> str:
    """"digits-atld (shipped) · PGD-20 / atld": the checkpoint (the panel), then the attack and mode."""
    from atld.evaluate import attack_label

    return f"{checkpoint}{CURVE_SEP}{attack_label(attack_name, mode)} / {mode}"


# The curve's default checkpoints: one per method in this order (PGD-AT, the baseline a reader
# compares ATLD with, is always among them), at most CURVE_DEFAULT_MODELS.
CURVE_METHOD_ORDER = ("atld", "pgd-at", "natural", "feature-scatter")
CURVE_DEFAULT_MODELS = 4


def default_curve_labels(entries) -> list[str]:
    """The labels of the curve's default checkpoints among `entries` (`RunEntry`s of one dataset):
    the first of each method of CURVE_METHOD_ORDER, shipped first, then the rest, at most
    CURVE_DEFAULT_MODELS."""
    ordered = sorted(entries, key=lambda e: e.source != "shipped")
    picked = [next(e for e in ordered if e.method == m) for m in CURVE_METHOD_ORDER
              if any(e.method == m for e in ordered)]
    picked += [e for e in ordered if e not in picked]
    return [e.label for e in picked[:CURVE_DEFAULT_MODELS]]


COMPARISON_COLUMNS = {"clean": "clean", "pgd20": "PGD-20 (upper bound)", "autoattack": "AutoAttack",
                      "adaptive_imt": "adaptive through IMT (atld)",
                      "adaptive_imt_plus": "adaptive through IMT (atld+)"}


def comparison_table(entries: list[tuple[str, dict]]) -> list[dict]:
    """Every checkpoint's stored numbers side by side (`atld.evaluate.compare`), most robust
    first: the number to trust (the highest measured verdict, with which inference) and the
    cells a reader compares, each "accuracy % (95 % interval, n)"; "–" where not stored."""
    from atld.evaluate.compare import cell_text, comparison_rows

    out = []
    for row in comparison_rows(entries):
        trusted = row["trusted"]
        out.append({"checkpoint": row["checkpoint"], "method": row["method"] or "–",
                    "ε": "–" if row["epsilon"] is None else f"{row['epsilon']:.4g}",
                    "trusted (measured)": "not measured" if trusted is None else
                    f"{cell_text(trusted)} · {trusted['inference']}",
                    **{title: cell_text(row[key]) for key, title in COMPARISON_COLUMNS.items()}})
    return out


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
    """D's check (`DiscriminatorCheck.to_dict()` or a card's stored check) as (level, text) lines:
    its own levels ("warning" where D or IMT does not do its job), else, for an older check, the
    three first lines levelled by `uniform_half_step` and `separates`."""
    if not check:
        return []
    sentences = check["sentences"]
    levels = check.get("levels") or ["info", "warning" if check.get("uniform_half_step") else "info",
                                     "info" if check.get("separates") else "warning"]
    return list(zip(levels, sentences))


def discriminator_auc_rows(check: dict | None) -> list[dict]:
    """D's AUC per batch and per image, one row per comparison (natural vs PGD-20, natural vs D's
    own training perturbation), from a live check (`sep_pgd`, `sep_own`) or a card's (`auc`);
    each cell as `auc_words` ("0.27 (inverted)"). [] when the check has no per-batch measurement."""
    from atld.evaluate.dwords import auc_words

    if not check:
        return []
    out = []
    for what, name in (("pgd", "natural vs PGD-20"), ("own", "natural vs D's own training perturbation")):
        if "auc" in check:
            auc = check["auc"] or {}
            sep = {k: auc.get(f"{what}_{k}") for k in ("per_batch", "per_image", "mixed")}
        else:
            sep = check.get(f"sep_{what}") or {}
        if sep.get("per_batch") is None or sep.get("per_image") is None:
            continue
        out.append({"D's AUC": name, "per batch (train mode, separate calls, as trained)": auc_words(sep["per_batch"]),
                    "per image (eval mode, as IMT uses it)": auc_words(sep["per_image"]),
                    "one mixed batch (train mode)": "–" if sep.get("mixed") is None else auc_words(sep["mixed"])})
    return out


# Forward-pass equivalents per image of each attack (an input-gradient step costs about one forward
# pass more: `atld.runs.importer.WORK_PASSES`); the strong attacks at AutoAttack's upper end.
_STEPS = {"natural": 0, "fgsm": 1, "pgd20": 20, "pgd100": 100, "cw20": 20, "cw100": 100}
HEAVY_SECONDS = 60.0  # above this estimate a page warns before it starts and defaults to few images


def estimate_eval_seconds(cost: dict, attacks, n_images: int) -> float:
    """About how long the quick evaluation of `attacks` on `n_images` takes on this CPU: `cost` is
    the `work_cost` view's {work: seconds per image}; every attack also pays a clean pass."""
    forward, strong = cost["forward"], cost["autoattack"]
    per_image = sum(strong if a not in _STEPS else forward * (1 + 2 * _STEPS[a]) for a in attacks)
    return (per_image + forward) * n_images


def small_image_count(cost: dict, attacks, n_test: int, usual: int = 100, floor: int = 10) -> int:
    """The quick evaluation's default image count: `usual`, or fewer (down to `floor`, in tens)
    when `usual` would take over HEAVY_SECONDS on this CPU (a large imported model)."""
    n = min(usual, n_test)
    while n > floor and estimate_eval_seconds(cost, attacks, n) > HEAVY_SECONDS:
        n = max(floor, n // 2 // 10 * 10)
    return max(min(floor, n_test), n)


def duration_words(seconds: float) -> str:
    """A time estimate in words: "under a second", else "about m:ss"."""
    from atld.evaluate.progress import clock

    return "under a second" if seconds < 1 else f"about {clock(seconds)}"
