"""An evaluation's result: rows of accuracy with n and a Wilson 95 % interval, rendered as a text
table, CSV or JSON, and stored in the checkpoint card under "evaluations"."""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass, field

from atld.vocab import InferenceMode, Protocol, parse
from atld.errors import CheckpointError
from atld.evaluate.findings import masking_findings
from atld.evaluate.stats import wilson_interval
from atld.evaluate.verdict import ORDER, PROTOCOL_TITLES, attack_label, is_upper_bound_only, verdict_epsilon, verdicts
from atld.fileio import printable
from atld.runs.card import D_CHECK_FORMAT, D_CHECK_VERSION, EVAL_FORMAT, EVAL_VERSION, read_card
from atld.runs.rundir import RunWriter

ROW_KEYS = ("attack", "inference", "protocol", "accuracy", "correct", "n", "ci_low", "ci_high", "epsilon",
            "seconds", "note")


def make_row(attack: str, inference: str, protocol: str, correct: int, n: int, epsilon: float,
             seconds: float, note: str = "") -> dict:
    """One evaluation row (the keys of ROW_KEYS; what a card's "evaluations" stores)."""
    low, high = wilson_interval(correct, n)
    inference, protocol = parse(InferenceMode, inference, "inference"), parse(Protocol, protocol, "protocol")
    return {"attack": attack, "inference": inference, "protocol": protocol, "accuracy": correct / n,
            "correct": correct, "n": n, "ci_low": low, "ci_high": high, "epsilon": epsilon,
            "seconds": round(seconds, 3), "note": note}


VERDICT_TITLE = "Verdict: robust accuracy, the lowest over the attacks that target exactly what is evaluated"
UPPER_BOUND_LINE = ("Every attack's accuracy is an upper bound on robustness; PGD, CW and FGSM are weak ones. "
                    "A non-adaptive row attacks the bare classifier and never sees IMT.")
NOTED_ATTACKS = ("adaptive", "square")  # their notes say how each image's worst case was taken
CSV_KEYS = (*ROW_KEYS, "label")


def labelled(rows: list[dict]) -> list[dict]:
    """Rows with their table label (`attack_label`) added, for the CSV and JSON outputs."""
    return [{**r, "label": attack_label(r["attack"], r["inference"])} for r in rows]


def _spread(values) -> str:
    values = sorted(set(values))
    return "?" if not values else str(values[0]) if len(values) == 1 else f"{values[0]}-{values[-1]}"


def header_line(meta: dict, rows: list[dict]) -> str:
    """What was evaluated, on which images, where. Text from a card is printed safely."""
    ns = {r["n"] for r in rows}
    top = max(ns) if ns else meta.get("n", "?")
    fewer = sorted({r["attack"] for r in rows if r["n"] != top})
    n = f"n = {top} test images" + (f" ({_spread(r['n'] for r in rows if r['n'] != top)} for "
                                     f"{', '.join(fewer)})" if fewer else "")
    what = ", ".join(str(meta[k]) for k in ("method", "arch") if meta.get(k))
    eps = verdict_epsilon(rows)
    threads = meta.get("threads")
    threads = f", {threads} thread{'s' if threads != 1 else ''}" if threads else ""
    return (f"{printable(meta.get('checkpoint', ''), 200)}" + (f" ({what} on {meta.get('dataset', '?')})" if what
                                                               else f" ({meta.get('dataset', '?')})")
            + f": {n}" + (f", ε = {eps:.4g}" if eps is not None else "")
            + f", seed {meta.get('seed', '?')}, device {meta.get('device', '?')}{threads}")


def display_rows(rows: list[dict]) -> list[dict]:
    """Rows grouped by inference mode (atld-, atld, atld+), each IMT group closed by its adaptive
    row, or by a placeholder saying it was not run: a non-adaptive row never stands alone."""
    out = []
    for mode in ORDER:
        group = [r for r in rows if r["inference"] == mode]
        if not group:
            continue
        out += group
        non_adaptive = any(r["protocol"] == Protocol.NON_ADAPTIVE and r["attack"] != "natural" for r in group)
        if mode != InferenceMode.BARE and non_adaptive and not any(r["attack"] == "adaptive" for r in group):
            out.append({"attack": "adaptive", "inference": mode, "protocol": Protocol.ADAPTIVE, "missing": True})
    return out


TABLE_COLUMNS = ("inference", "attack", "accuracy", "95% CI", "n", "eps", "seconds", "protocol")


def table_cells(rows: list[dict]) -> list[dict]:
    """The rows as display strings keyed by TABLE_COLUMNS, in `display_rows` order: weak attacks
    labelled as upper bounds, protocols in words, a missing adaptive row as "not run". The CLI
    table and the app's tables both show these."""
    out = []
    for r in display_rows(rows):
        label = attack_label(r["attack"], r["inference"])
        protocol = PROTOCOL_TITLES.get(r["protocol"], str(r["protocol"]))
        if r.get("missing"):
            cells = (r["inference"], label, "not run", "", "", "", "", protocol + ": robustness unverified")
        else:
            cells = (r["inference"], label + (" (upper bound)" if is_upper_bound_only(r) else ""),
                     f"{100 * r['accuracy']:.2f}%", f"{100 * r['ci_low']:.1f}-{100 * r['ci_high']:.1f}", str(r["n"]),
                     f"{r['epsilon']:.4g}", f"{r.get('seconds', 0.0):.1f}", protocol)
        out.append(dict(zip(TABLE_COLUMNS, cells)))
    return out


def detail_table(rows: list[dict]) -> list[str]:
    """`table_cells` as aligned text lines under a header."""
    lines = [tuple(c.values()) for c in table_cells(rows)]
    widths = [max(len(h), *(len(line[i]) for line in lines)) if lines else len(h) for i, h in enumerate(TABLE_COLUMNS)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return [fmt.format(*line).rstrip() for line in (TABLE_COLUMNS, tuple("-" * w for w in widths), *lines)]


def timing_lines(timings: list[dict]) -> list[str]:
    """One line per attack run: its seconds, then its parts' ("APGD-T 20.1 s")."""
    runs: dict[str, list[dict]] = {}
    for t in timings:
        runs.setdefault(t["task"], []).append(t)
    out = []
    for task, parts in runs.items():
        total = sum(p["seconds"] for p in parts)
        detail = ", ".join(f"{p['part']} {p['seconds']:.1f} s on {p['images']}" for p in parts)
        out.append(f"{task}: {total:.1f} s" + (f" ({detail})" if len(parts) > 1 else ""))
    return out


@dataclass
class EvalReport:
    """rows: one dict per (attack, inference) cell with the keys in `ROW_KEYS` (accuracy and the
    interval as fractions, ε in [0, 1] pixel units, seconds of wall time). meta: what was
    evaluated (checkpoint, model hash, dataset, n, seed, device, versions, date, config)."""
    rows: list[dict]
    meta: dict = field(default_factory=dict)

    def row(self, attack: str, inference: str) -> dict | None:
        return next((r for r in self.rows if r["attack"] == attack and r["inference"] == inference), None)

    def verdicts(self) -> list:
        """One `atld.evaluate.verdict.Verdict` per inference mode: the numbers to trust first."""
        return verdicts(self.rows)

    def to_table(self) -> str:
        """The verdict first, then every row grouped by inference mode, the masking findings read
        from the rows, D's check and where the time went (each attack run once)."""
        out = [header_line(self.meta, self.rows)] if self.meta.get("checkpoint") else []
        if self.rows:  # a report of D's check alone has none
            out += ["", VERDICT_TITLE] + [f"  {v.text}" for v in self.verdicts()] + [""]
            out += detail_table(self.rows)
        findings = masking_findings(self.rows)
        if findings:
            out += ["", "Masking findings:"] + [("[!] " if f["flagged"] else "[ok] ") + f["message"] for f in findings]
        d_check = self.meta.get("discriminator")
        if d_check:
            out += ["", "Discriminator (D) and IMT's step:"] + discriminator_lines(d_check)
        time_lines = timing_lines(self.meta.get("timings") or [])
        if time_lines:
            out += ["", "Time (each attack run once):"] + [f"  {line}" for line in time_lines]
        notes = list(dict.fromkeys(f"{attack_label(r['attack'], r['inference'])} / {r['inference']}: {r['note']}"
                                   for r in self.rows if r.get("note") and r["attack"] in NOTED_ATTACKS))
        out += [f"note: {n}" for n in notes]
        if self.rows:
            out.append(UPPER_BOUND_LINE)
        return "\n".join(printable(line, 2000) for line in out).rstrip() + "\n"

    def to_csv(self) -> str:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(CSV_KEYS), extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(labelled(self.rows))
        return buf.getvalue()

    def to_json(self) -> str:
        return json.dumps({"verdicts": [v.to_dict() for v in self.verdicts()], "meta": self.meta,
                           "rows": labelled(self.rows)}, indent=1, allow_nan=False) + "\n"

    def to_card(self) -> dict:
        """What `store_evaluation` writes under card["evaluations"]: every row tagged with the
        seed, date and model hash it came from."""
        tag = {k: self.meta.get(k) for k in ("seed", "date", "model_hash")}
        return {"format": EVAL_FORMAT, "version": EVAL_VERSION, "updated": self.meta.get("date"),
                "rows": [{**r, **tag} for r in self.rows]}


def discriminator_lines(check: dict) -> list[str]:
    """D's check (`DiscriminatorCheck.to_dict()` or a card's `discriminator_card`) as text lines,
    "[!]" before the lines that say D or IMT does not do its job (no "[ok]": a measurement is
    not an approval)."""
    levels = check.get("levels") or ["info"] * len(check["sentences"])
    return [("[!] " if level == "warning" else "    ") + text for level, text in zip(levels, check["sentences"])]


def discriminator_card(check: dict, meta: dict) -> dict:
    """What a card stores of D's check (`DiscriminatorCheck.to_dict()`; schema
    `atld.runs.card.D_CHECK_SCHEMA`): the AUCs, IMT's step comparisons, the training-perturbation
    diagnostic and the sentences, tagged with the seed, date and model hash."""
    def pick(d: dict | None, keys) -> dict:
        return {k: d[k] for k in keys if d and k in d}

    auc = {"train": check.get("train_auc")}
    for what in ("pgd", "own"):
        sep = check.get(f"sep_{what}")
        if sep:
            auc.update({f"{what}_per_batch": sep["per_batch"], f"{what}_per_image": sep["per_image"],
                        f"{what}_mixed": sep["mixed"]})
        else:
            auc[f"{what}_per_image"] = check[f"auc_{what}"]
    steps = {}
    for key, name in (("steps_clean", "clean"), ("steps_pgd", "pgd20")):
        st = check.get(key)
        if st:
            steps[name] = {"n": st["n"], **{k: st["correct"][k] for k in ("none", "imt", "reversed", "random")},
                           "p_reversed": st["p_reversed"], "p_random": st["p_random"], "p_none": st.get("p_none")}
    perturbation = pick(check.get("perturbation"), ("clean", "perturbed", "random", "fgsm", "sign_agreement",
                                                    "adversarial_share"))
    return {"format": D_CHECK_FORMAT, "version": D_CHECK_VERSION, "updated": meta.get("date"),
            "seed": meta.get("seed"), "model_hash": meta.get("model_hash"), "n": check["n"],
            "epsilon": check["epsilon"], "kind": check.get("kind"), "auc": auc, "steps": steps,
            "perturbation": perturbation, "sentences": list(check["sentences"]),
            "levels": list(check.get("levels") or ["info"] * len(check["sentences"]))}


def _cell_key(row: dict) -> tuple:
    return row["attack"], row["inference"], round(float(row["epsilon"]), 6)


def store_evaluation(run_dir: str | os.PathLike, report: EvalReport) -> dict:
    """Merge the report into the card's "evaluations" (atomically, under the run's writer lock): a
    new row replaces a stored one with the same attack, inference and ε; other rows stay. D's
    check, when the report has one, replaces the card's "discriminator_check". Refuses a
    report made on a different model (its hash differs from the card's). Returns the new card."""
    with RunWriter.claim(run_dir, new=False) as writer:
        card = read_card(run_dir)
        model_hash = report.meta.get("model_hash")
        card_hash = card.get("sha256", {}).get(card["files"]["model"])
        if model_hash and card_hash and model_hash != card_hash:
            raise CheckpointError("this evaluation was made on a different model than the one in "
                                  f"{str(run_dir)!r} (model hashes differ); not storing it")
        extra = ({"discriminator_check": discriminator_card(report.meta["discriminator"], report.meta)}
                 if report.meta.get("discriminator") else {})
        if not report.rows:  # D's check alone (`python -m atld eval --discriminator-only --store`)
            return writer.update(**extra) if extra else card
        new = report.to_card()
        kept = (card.get("evaluations") or {}).get("rows", [])
        replaced = {_cell_key(r) for r in new["rows"]}
        rows = [r for r in kept if _cell_key(r) not in replaced] + new["rows"]
        return writer.update(evaluations={**new, "rows": rows}, **extra)
