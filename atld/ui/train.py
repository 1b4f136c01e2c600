"""What the Train page offers besides the generated form, Streamlit-free: presets (field values
for the form), the method's plain description, the live curves' figures and the progress line."""

from __future__ import annotations

from atld.config.fields import field_specs
from atld.vocab import METHOD_NAMES, Method

# Presets: field -> value, applied over the form (fields not named keep what the form holds).
# "Quick demo": an ATLD model in about a minute on a laptop CPU (digits), enough to see D and IMT.
# "Paper settings": the official ATLD recipe (docs/method.md): SGD, batch 50, lr 0.1 with ×0.1 steps,
# momentum 0.9, weight decay 2e-4, label smoothing 0.5, D's lr 1e-3 and 2 updates per batch. The
# paper trains 400 epochs; the preset asks for 30, since this app trains on the CPU (raise it).
# The quick demo trains on digits: it ships with the app (scikit-learn), so it trains on any machine,
# where MNIST and the others need their full data first.
PRESETS: dict[str, dict] = {
    "Quick demo": {"dataset": "digits", "method": "atld", "epochs": 2, "eval_limit": 100, "device": "cpu"},
    "Paper settings": {"method": "atld", "epochs": 30, "batch_size": 50, "optimizer": "sgd", "lr": 0.1,
                       "lr_schedule": "step", "lr_milestones": (0.15, 0.225), "lr_gamma": 0.1, "momentum": 0.9,
                       "weight_decay": 2e-4, "label_smoothing": 0.5, "d_lr": 1e-3, "d_updates": 2, "variant": "code",
                       "eval_limit": 450},
}


def preset_values(name: str, cls) -> dict:
    """The field values preset `name` sets, as the form's widgets hold them (text for text fields)."""
    specs = {s.name: s for s in field_specs(cls)}
    out = {}
    for field, value in PRESETS[name].items():
        spec = specs[field]
        out[field] = spec.as_text(value) if spec.kind in ("text", "select") else value
    return out


PRESET_NOTES = {"Quick demo": "Quick demo: digits (it ships with the app, so it trains here: about a minute on a "
                               "laptop CPU), ATLD for 2 epochs. Change anything before starting."}


def resolved_defaults(cls, values: dict) -> dict[str, str]:
    """What each field left empty ("" = the default) becomes for the form's dataset and method,
    as text (e.g. {"batch_size": "50", "optimizer": "sgd"}); {} when those do not make a config."""
    from atld.errors import ATLDError

    specs = field_specs(cls)
    try:
        config = cls(**{k: v for k, v in values.items() if k in ("dataset", "method") and v}).resolved()
    except (ATLDError, TypeError, ValueError):
        return {}
    return {s.name: s.as_text(getattr(config, s.name)) for s in specs}


def method_line(name: str) -> str:
    """'**ATLD (latent discriminator)**: what it is, when to pick it' for the form's caption."""
    m = _method(name)
    return "" if m is None else f"**{m.title}**: {m.traits.pick_when}"


def method_title(name: str) -> str:
    m = _method(name)
    return name if m is None else f"{m.title} ({m.value})"


def _method(name: str) -> Method | None:
    return Method(name) if name in METHOD_NAMES else None


def progress_line(epochs_done: int, epochs: int, step: int, steps: int, n_train: int | None,
                  batch_size: int | None) -> str:
    """"1 of 5 epochs done · step 12/29" — before the first step reports, the step count is
    estimated from the training-set size (≈), never "?"."""
    total = f"{steps}" if steps else (f"≈{-(-n_train // batch_size)}" if n_train and batch_size else "…")
    return f"{epochs_done} of {epochs} epochs done · step {step}/{total} of epoch {min(epochs_done + 1, epochs)}"


def curves_figure(frame, columns: list[str], title: str = "", height: int = 240):
    """Training curves (the Train page's live ones, Home's of a card): one line with markers per
    column against integer epochs, so one epoch is already a visible point; the legend below the
    plot, where nothing covers it. `frame`: `atld.ui.display.metric_columns` (plain lists: Home
    draws without pandas) or a DataFrame of the same columns."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for col in columns:
        fig.add_trace(go.Scatter(x=frame["epoch"], y=frame[col], mode="lines+markers", name=col.replace("_", " ")))
    epochs = list(frame["epoch"])
    last = int(max(epochs)) if epochs else 1
    fig.update_layout(title=dict(text=title, font=dict(size=14)), height=height, margin=dict(l=10, r=10, t=30, b=10),
                      legend=dict(orientation="h", yanchor="top", y=-0.25, font=dict(size=10)),
                      xaxis=dict(title="epoch", tickmode="linear", tick0=1, dtick=max(1, last // 10),
                                 range=[0.5, last + 0.5]))
    return fig


def own_run_label(entry, training: bool) -> str:
    """'digits-natural-x · natural · 3 epochs · finished' for the run picker of the Train page."""
    return f"{entry.path.name} · {entry.method} · {entry.epochs_done} epoch(s) · " + \
        ("being trained now" if training else entry.status)
