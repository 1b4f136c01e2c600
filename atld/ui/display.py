"""Tables and images the pages show, computed without Streamlit.

Image contract: tensors are float [B, C, H, W] in [0, 1]; `to_display` turns them into uint8
[B, H, W] (grey) or [B, H, W, 3] (colour) arrays, enlarged by nearest-neighbour so 8x8 digits
are visible."""

from __future__ import annotations

import re

import numpy as np

from atld.vocab import RunStatus
from atld.fileio import printable
from atld.latent.palette import CLASS_PALETTE, class_colour  # noqa: F401  (the pages' one class palette)

# Statuses that mean a run did not end as planned get a mark wherever a status is shown.
_STATUS_MARKS = {RunStatus.COLLAPSED: "⚠ ", RunStatus.DIVERGED: "⚠ ", RunStatus.FAILED: "✖ "}

_MARKDOWN = re.compile(r"([\\`*_\[\]<>|~$])")


def md(text: object) -> str:
    """`text` (from a card, a file name, an error message) safe inside Streamlit Markdown: the
    characters that make links, images, HTML, code, emphasis, tables and formulas are escaped, so
    none can come from it (an image link in a card would otherwise be fetched by every viewer's
    browser). Control characters are replaced and the text cut to one line."""
    return _MARKDOWN.sub(r"\\\1", printable(text, 2000))


def markdown_table(rows: list[dict]) -> str:
    """Rows (dicts with the same keys) as a Markdown table, every cell through `md`: a small table
    drawn as text, without the data grid's weight in the browser."""
    if not rows:
        return ""
    head = list(rows[0])
    lines = ["| " + " | ".join(md(h) for h in head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(md(r.get(h, "")) for h in head) + " |" for r in rows]
    return "\n".join(lines)


def status_badge(status: str) -> str:
    """A run status as shown in the app: "⚠ collapsed", "finished"."""
    return _STATUS_MARKS.get(status, "") + str(status)


def collapse_note(card: dict) -> str | None:
    """The one line a collapsed run's card gives (what happened, what to try), else None."""
    if card["status"] != RunStatus.COLLAPSED:
        return None
    return card.get("collapse") or "training collapsed (the card gives no details)"


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def card_summary(card: dict) -> dict[str, str]:
    """A few headline facts of a (schema-validated) run card, as display strings."""
    last = card["metrics"][-1] if card["metrics"] else {}
    out = {"method": card["method"], "dataset": card["dataset"], "arch": card["arch"],
           "epochs": f"{card['epochs_done']}/{card.get('epochs_planned', card['epochs_done'])}",
           "status": status_badge(card["status"])}
    eps = card["config"].get("epsilon")
    if _number(eps):
        out["ε (train)"] = f"{eps:.4g}"
    # the training-time PGD-20 is an upper bound, never the headline (that is the verdict)
    for key, name in (("test_clean_acc", "clean acc"), ("test_pgd20_acc", "PGD-20 (training, upper bound)")):
        if key in last:
            out[name] = f"{100 * last[key]:.1f} %"
    return {k: printable(v, 80) for k, v in out.items()}


def metric_columns(metrics: list[dict]) -> dict[str, list]:
    """Per-epoch metrics (a card's or a job's) as columns {name: [value per epoch]}, `epoch`
    first (1, 2, ... where the metrics carry none); anything that is not a number is dropped and
    an epoch without a metric holds None there. Plain lists: a page drawing curves needs no pandas,
    whose import is half a second of a fresh server's first page."""
    rows = [{k: v for k, v in m.items() if _number(v)} for m in metrics]
    names = list(dict.fromkeys(k for r in rows for k in r))
    if rows and "epoch" not in names:
        names.insert(0, "epoch")
        rows = [{"epoch": i, **r} for i, r in enumerate(rows, 1)]
    return {k: [r.get(k) for r in rows] for k in names}


def metrics_frame(metrics: list[dict]):
    """`metric_columns` as a DataFrame (a missing metric is NaN)."""
    import pandas as pd

    return pd.DataFrame(metric_columns(metrics))


PERCENT_COLUMNS = ("accuracy", "ci_low", "ci_high")


def evaluation_rows(evaluations: dict | None, columns: dict[str, str] | None = None) -> list[dict]:
    """The evaluation rows stored in a card (`{"rows": [...]}`), accuracy columns in % (one
    decimal). `columns` ({field: header}): only those fields, in that order, under those headers."""
    out = []
    for row in (evaluations or {}).get("rows", []):
        fields = columns if columns is not None else {k: k for k in row}
        out.append({header: round(100 * float(row[k]), 1) if k in PERCENT_COLUMNS and _number(row[k]) else row[k]
                    for k, header in fields.items() if k in row})
    return out


def evaluation_frame(evaluations: dict | None):
    """`evaluation_rows` as a DataFrame."""
    import pandas as pd

    return pd.DataFrame(evaluation_rows(evaluations))


def to_display(x, scale: int | None = None) -> np.ndarray:
    """[B, C, H, W] float in [0, 1] (tensor or array) -> uint8 images for st.image, each side
    enlarged by an integer `scale` (default: to about 96 pixels)."""
    arr = x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)
    arr = np.clip(arr, 0.0, 1.0)
    if scale is None:
        scale = max(1, 96 // arr.shape[-1])
    arr = arr.repeat(scale, axis=-2).repeat(scale, axis=-1)
    arr = (arr * 255).round().astype(np.uint8)
    return arr[:, 0] if arr.shape[1] == 1 else arr.transpose(0, 2, 3, 1)


def magnify(delta, epsilon: float):
    """A perturbation δ in [−ε, ε] mapped to [0, 1] for display (grey 0.5 = no change), so its
    pattern is visible however small ε is."""
    eps = max(float(epsilon), 1e-12)
    return (delta / (2 * eps) + 0.5).clamp(0.0, 1.0) if hasattr(delta, "clamp") else \
        np.clip(np.asarray(delta) / (2 * eps) + 0.5, 0.0, 1.0)


# Diverging colours for a perturbation: −ε blue, 0 a neutral light grey (so "no change" is visibly
# not the page background), +ε red (ColorBrewer RdBu end points).
_NEGATIVE, _ZERO, _POSITIVE = np.array([33, 102, 172]), np.array([224, 224, 224]), np.array([178, 24, 43])
_FRAME = np.array([90, 90, 90])


def perturbation_rgb(delta, epsilon: float, scale: int | None = None, frame: int = 2) -> np.ndarray:
    """δ [B, C, H, W] in [−ε, ε] -> uint8 RGB [B, H', W', 3]: channels averaged, blue (−ε) – grey
    (0) – red (+ε), enlarged by nearest-neighbour like `to_display`, inside a dark `frame`-pixel
    border so the image's extent is visible on any page background."""
    arr = delta.detach().cpu().numpy() if hasattr(delta, "detach") else np.asarray(delta, dtype=np.float64)
    t = np.clip(arr.mean(axis=1) / max(float(epsilon), 1e-12), -1.0, 1.0)[..., None]  # [B, H, W, 1]
    rgb = np.where(t < 0, _ZERO + (-t) * (_NEGATIVE - _ZERO), _ZERO + t * (_POSITIVE - _ZERO))
    if scale is None:
        scale = max(1, 96 // arr.shape[-1])
    rgb = rgb.repeat(scale, axis=1).repeat(scale, axis=2)
    if frame:
        rgb = np.pad(rgb, ((0, 0), (frame, frame), (frame, frame), (0, 0)), constant_values=0)
        rgb[:, :frame], rgb[:, -frame:], rgb[:, :, :frame], rgb[:, :, -frame:] = _FRAME, _FRAME, _FRAME, _FRAME
    return rgb.round().astype(np.uint8)


def faded(images: np.ndarray, amount: float = 0.65) -> np.ndarray:
    """uint8 images blended toward white by `amount`: results shown while newer ones compute."""
    return (images.astype(np.float32) * (1 - amount) + 255 * amount).round().astype(np.uint8)


def figure_from_json(text: str):
    """A plotly Figure from JSON that plotly itself wrote (the compute workers' figures), built
    without re-validating every property: 2 ms instead of 0.4 s for a 600-point map."""
    import json

    import plotly.graph_objects as go

    return go.Figure(json.loads(text), _validate=False)
