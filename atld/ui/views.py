"""Tables and images the pages show, computed without Streamlit.

Image contract: tensors are float [B, C, H, W] in [0, 1]; `to_display` turns them into uint8
[B, H, W] (grey) or [B, H, W, 3] (colour) arrays, enlarged by nearest-neighbour so 8x8 digits
are visible."""

from __future__ import annotations

import numpy as np


def card_summary(card: dict) -> dict[str, str]:
    """A few headline facts of a run card, as display strings."""
    last = card["metrics"][-1] if card.get("metrics") else {}
    out = {"method": card["method"], "dataset": card["dataset"], "arch": card["arch"],
           "epochs": f"{card['epochs_done']}/{card.get('epochs_planned', card['epochs_done'])}",
           "status": card["status"]}
    eps = card.get("config", {}).get("epsilon")
    if eps is not None:
        out["ε (train)"] = f"{eps:.4g}"
    for key, name in (("test_clean_acc", "clean acc"), ("test_pgd20_acc", "PGD-20 acc")):
        if key in last:
            out[name] = f"{100 * last[key]:.1f} %"
    return out


def metrics_frame(metrics: list[dict]):
    """Per-epoch metrics (card["metrics"] or a job's) as a DataFrame with an `epoch` column;
    non-numeric entries are dropped."""
    import pandas as pd

    rows = [{k: v for k, v in m.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
            for m in metrics]
    frame = pd.DataFrame(rows)
    if not frame.empty and "epoch" not in frame:
        frame.insert(0, "epoch", range(1, len(frame) + 1))
    return frame


def _rows_in(value) -> list[dict] | None:
    if isinstance(value, list) and value and all(isinstance(r, dict) for r in value):
        return value
    if isinstance(value, dict) and isinstance(value.get("rows"), list):
        return value["rows"]
    return None


def evaluation_frame(evaluations: dict):
    """Every evaluation row stored in a card as one DataFrame (accuracy columns in %).

    Accepts the card's `evaluations` object whether it holds the rows directly (`{"rows": [...]}`)
    or one entry per named evaluation (`{"name": {"rows": [...], ...}, ...}`); the name becomes
    the `set` column."""
    import pandas as pd

    rows: list[dict] = []
    direct = _rows_in(evaluations)
    if direct is not None:
        rows = [dict(r) for r in direct]
    else:
        for name, value in (evaluations or {}).items():
            found = _rows_in(value)
            if found:
                rows += [{"set": name, **r} for r in found]
    frame = pd.DataFrame(rows)
    for col in ("accuracy", "ci_low", "ci_high"):
        if col in frame:
            frame[col] = (100 * frame[col].astype(float)).round(1)
    return frame


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
