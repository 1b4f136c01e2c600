"""An evaluation's result: rows of accuracy with n and a Wilson 95 % interval, rendered as a text
table, CSV or JSON, and stored in the checkpoint card under "evaluations"."""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass, field

from atld.config.vocab import InferenceMode, Protocol, parse
from atld.errors import CheckpointError, check_int_at_least, require
from atld.fileio import printable
from atld.runs.card import EVAL_FORMAT, EVAL_VERSION, read_card
from atld.runs.rundir import RunWriter

Z95 = 1.959963984540054  # two-sided 95 % normal quantile
ROW_KEYS = ("attack", "inference", "protocol", "accuracy", "correct", "n", "ci_low", "ci_high", "epsilon",
            "seconds", "note")


def wilson_interval(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for k successes out of n (95 % by default), as fractions in [0, 1].
    Unlike the normal approximation it stays inside [0, 1] and is sensible at k = 0 or k = n."""
    check_int_at_least("n", n, 1)
    require(isinstance(k, int) and 0 <= k <= n, f"k must be an integer in [0, n={n}], got {k!r}")
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # at k = 0 (k = n) the bound is exactly 0 (1); say so instead of leaving a rounding error
    low = 0.0 if k == 0 else max(0.0, centre - half)
    high = 1.0 if k == n else min(1.0, centre + half)
    return low, high


def make_row(attack: str, inference: str, protocol: str, correct: int, n: int, epsilon: float,
             seconds: float, note: str = "") -> dict:
    """One evaluation row (the keys of ROW_KEYS; what a card's "evaluations" stores)."""
    low, high = wilson_interval(correct, n)
    inference, protocol = parse(InferenceMode, inference, "inference"), parse(Protocol, protocol, "protocol")
    return {"attack": attack, "inference": inference, "protocol": protocol, "accuracy": correct / n,
            "correct": correct, "n": n, "ci_low": low, "ci_high": high, "epsilon": epsilon,
            "seconds": round(seconds, 3), "note": note}


@dataclass
class EvalReport:
    """rows: one dict per (attack, inference) cell with the keys in `ROW_KEYS` (accuracy and the
    interval as fractions, ε in [0, 1] pixel units, seconds of wall time). meta: what was
    evaluated (checkpoint, model hash, dataset, n, seed, device, versions, date, config)."""
    rows: list[dict]
    meta: dict = field(default_factory=dict)

    def row(self, attack: str, inference: str) -> dict | None:
        return next((r for r in self.rows if r["attack"] == attack and r["inference"] == inference), None)

    def to_table(self) -> str:
        head = ("attack", "inference", "accuracy", "95% CI", "n", "eps", "seconds", "protocol")
        lines = [(r["attack"], r["inference"], f"{100 * r['accuracy']:.2f}%",
                  f"{100 * r['ci_low']:.1f}-{100 * r['ci_high']:.1f}", str(r["n"]), f"{r['epsilon']:.4g}",
                  f"{r['seconds']:.1f}", r["protocol"]) for r in self.rows]
        widths = [max(len(h), *(len(line[i]) for line in lines)) if lines else len(h) for i, h in enumerate(head)]
        fmt = "  ".join(f"{{:<{w}}}" for w in widths)
        out = [fmt.format(*head).rstrip(), fmt.format(*("-" * w for w in widths)).rstrip()]
        out += [fmt.format(*line).rstrip() for line in lines]
        title = printable(self.meta.get("checkpoint", ""), 200)  # a card's name: text from a stranger
        if title:
            out.insert(0, f"{title}: {self.meta.get('dataset', '')}, n = {self.meta.get('n', '?')}, "
                          f"seed {self.meta.get('seed', '?')}, {self.meta.get('device', '')}")
        notes = []
        for r in self.rows:
            if r.get("note"):
                note = r["note"] if r["attack"] not in ("adaptive", "square") else \
                    f"{r['attack']} / {r['inference']}: {r['note']}"
                notes += [note] if note not in notes else []
        out += [f"note: {n}" for n in notes]
        out.append("PGD/CW accuracy is an upper bound on robustness; trust the lowest number of each "
                   "inference row, and prefer the adaptive attack for IMT (atld, atld+).")
        return "\n".join(out).rstrip() + "\n"

    def to_csv(self) -> str:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(ROW_KEYS), extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        return buf.getvalue()

    def to_json(self) -> str:
        return json.dumps({"meta": self.meta, "rows": self.rows}, indent=1, allow_nan=False) + "\n"

    def to_card(self) -> dict:
        """What `store_evaluation` writes under card["evaluations"]: every row tagged with the
        seed, date and model hash it came from."""
        tag = {k: self.meta.get(k) for k in ("seed", "date", "model_hash")}
        return {"format": EVAL_FORMAT, "version": EVAL_VERSION, "updated": self.meta.get("date"),
                "rows": [{**r, **tag} for r in self.rows]}


def _cell_key(row: dict) -> tuple:
    return row["attack"], row["inference"], round(float(row["epsilon"]), 6)


def store_evaluation(run_dir: str | os.PathLike, report: EvalReport) -> dict:
    """Merge the report into the card's "evaluations" (atomically, under the run's writer lock): a
    new row replaces a stored one with the same attack, inference and ε; other rows stay. Refuses a
    report made on a different model (its hash differs from the card's). Returns the new card."""
    with RunWriter.claim(run_dir, new=False) as writer:
        card = read_card(run_dir)
        model_hash = report.meta.get("model_hash")
        card_hash = card.get("sha256", {}).get(card["files"]["model"])
        if model_hash and card_hash and model_hash != card_hash:
            raise CheckpointError("this evaluation was made on a different model than the one in "
                                  f"{str(run_dir)!r} (model hashes differ); not storing it")
        new = report.to_card()
        kept = (card.get("evaluations") or {}).get("rows", [])
        replaced = {_cell_key(r) for r in new["rows"]}
        rows = [r for r in kept if _cell_key(r) not in replaced] + new["rows"]
        return writer.update(evaluations={**new, "rows": rows})
