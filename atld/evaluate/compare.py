"""Several checkpoints' stored evaluations side by side: per checkpoint, the numbers a reader may
quote and the one to trust, each with its interval and n (torch-free).

The rows come from the cards (`evaluations` → `rows`, as `store_evaluation` writes them) and are
read the way `verdicts` reads one evaluation: the trusted number of a checkpoint is the highest
*measured* verdict over its inference modes (AutoAttack for the bare classifier, the adaptive
attack through IMT), never a PGD/CW upper bound and never a non-adaptive IMT row.
"""

from __future__ import annotations

from collections.abc import Iterable

from atld.vocab import InferenceMode, Protocol, VerdictKind
from atld.evaluate.verdict import verdict_epsilon, verdicts

# The cells of a comparison row: (key, attack, inference, protocol) of the stored row each reads.
CELLS = (
    ("clean", "natural", InferenceMode.BARE, None),
    ("pgd20", "pgd20", InferenceMode.BARE, None),
    ("autoattack", "autoattack", InferenceMode.BARE, None),
    ("adaptive_imt", "adaptive", InferenceMode.IMT, Protocol.ADAPTIVE),
    ("adaptive_imt_plus", "adaptive", InferenceMode.IMT_PLUS, Protocol.ADAPTIVE),
)


def stored_rows(card: dict) -> list[dict]:
    """The evaluation rows a card stores ([] when it stores none or they are not a list of rows)."""
    evaluations = card.get("evaluations") if isinstance(card, dict) else None
    rows = evaluations.get("rows") if isinstance(evaluations, dict) else None
    if not isinstance(rows, list):
        return []
    keys = ("attack", "inference", "protocol", "accuracy", "n", "epsilon")
    return [r for r in rows if isinstance(r, dict) and all(k in r for k in keys)]


def _cell(rows: list[dict], attack: str, inference: str, protocol: str | None, eps: float | None) -> dict | None:
    """The stored row of that cell at the evaluation's ε (natural: ε 0), or None."""
    for r in rows:
        if r["attack"] != attack or r["inference"] != inference:
            continue
        if protocol is not None and r["protocol"] != protocol:
            continue
        if attack != "natural" and (eps is None or round(float(r["epsilon"]), 6) != eps):
            continue
        return {"accuracy": float(r["accuracy"]), "ci_low": r.get("ci_low"), "ci_high": r.get("ci_high"),
                "n": int(r["n"])}
    return None


def comparison_row(name: str, card: dict) -> dict:
    """One checkpoint's row: name, method, ε, the cells of `CELLS` (each {accuracy, ci_low,
    ci_high, n} or None when not stored) and `trusted` ({accuracy, ci_low, ci_high, n, inference,
    attack} of the highest measured verdict, or None when no strong attack was stored)."""
    rows = stored_rows(card)
    eps = verdict_epsilon(rows)
    row = {"checkpoint": name, "method": card.get("method"), "epsilon": eps,
           **{key: _cell(rows, attack, mode, protocol, eps) for key, attack, mode, protocol in CELLS}}
    measured = [v for v in verdicts(rows) if v.kind is VerdictKind.MEASURED and v.accuracy is not None]
    best = max(measured, key=lambda v: v.accuracy, default=None)
    row["trusted"] = None if best is None else {
        "accuracy": best.accuracy, "ci_low": best.row.get("ci_low"), "ci_high": best.row.get("ci_high"),
        "n": best.row.get("n"), "inference": str(best.inference), "attack": best.row.get("attack")}
    return row


def comparison_rows(entries: Iterable[tuple[str, dict]]) -> list[dict]:
    """`comparison_row` of every (name, card), most robust first (by the trusted number; those
    without one last, by name)."""
    rows = [comparison_row(name, card) for name, card in entries]
    return sorted(rows, key=lambda r: (r["trusted"] is None, -(r["trusted"] or {}).get("accuracy", 0.0),
                                       r["checkpoint"]))


def cell_text(cell: dict | None) -> str:
    """"89.9 % (87.9-91.6, n 1,000)", or "–" when not stored."""
    if cell is None:
        return "–"
    ci = (f"{100 * cell['ci_low']:.1f}-{100 * cell['ci_high']:.1f}, "
          if cell.get("ci_low") is not None and cell.get("ci_high") is not None else "")
    return f"{100 * cell['accuracy']:.1f} % ({ci}n {cell['n']:,})"
