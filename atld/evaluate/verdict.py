"""The verdict: per inference mode, the one robust accuracy to trust, in one line of plain words.

`verdicts(rows)` is the single place that reads an evaluation's rows this way; the CLI table, the
JSON output, the app and the docs all show what it returns (docs/evaluation.md, "The verdict").

For each inference mode, at the evaluation's ε:
- the rows that count are the attacks that target exactly what is evaluated: every attack on
  `atld-` (the bare classifier), and for `atld` / `atld+` only the adaptive ones (through IMT).
  A non-adaptive row (attack the bare classifier, then IMT) never counts: its attacker does not
  know IMT exists.
- the number to trust is the lowest accuracy among them;
- the foil beside it is the number a reader is tempted to quote (`tempting`: AutoAttack, else
  PGD-20), never FGSM's when a stronger one ran;
- an IMT verdict measured by a strong attack says whether IMT adds robustness over the bare
  classifier's measured number, adds none (inside its 95 % interval) or makes it less robust;
- `VerdictKind.MEASURED` when a strong attack (AutoAttack, APGD; `Strength.STRONG`) is among
  them, `UPPER_BOUND` when only fixed-step (PGD, CW, FGSM) or black-box attacks are, `UNVERIFIED`
  for IMT without an adaptive attack, `NOT_ATTACKED` when no attack ran.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from atld.attacks.registry import ATTACKS, Strength
from atld.vocab import InferenceMode, Protocol, VerdictKind

INFERENCE_TITLES = {
    InferenceMode.BARE: "the bare classifier",
    InferenceMode.IMT: "one IMT step",
    InferenceMode.IMT_PLUS: "IMT, half a step where D is unsure",
}
PROTOCOL_TITLES = {
    Protocol.DIRECT: "direct",
    Protocol.NON_ADAPTIVE: "non-adaptive (attacks the bare classifier)",
    Protocol.ADAPTIVE: "adaptive through IMT",
}
ORDER = tuple(InferenceMode)


def attack_label(attack: str, inference: str) -> str:
    """How a table names the attack of an (attack, inference) cell: e.g. "adaptive" on the bare
    classifier is "APGD-CE + APGD-T (bare classifier)", since there is no IMT to adapt to."""
    named = ATTACKS.get(attack)
    return named.label(inference == InferenceMode.BARE) if named else str(attack)


def strength(row: dict) -> Strength:
    named = ATTACKS.get(row["attack"])
    return named.strength if named else Strength.WEAK


def is_upper_bound_only(row: dict) -> bool:
    """PGD, CW, FGSM: fixed-step attacks whose failure proves little."""
    return strength(row) is Strength.WEAK


def _named(label: str) -> str:
    """A label inside a sentence: "the adaptive attack …", but "AutoAttack", "PGD-20"."""
    return f"the {label}" if label[:1].islower() else label


def percent(x: float) -> str:
    return f"{100 * x:.1f} %"


def verdict_epsilon(rows: list[dict]) -> float | None:
    """The ε most attack rows share (ties: the larger), None when no attack ran."""
    counts = Counter(round(float(r["epsilon"]), 6) for r in rows if r["attack"] != "natural")
    return max(counts, key=lambda e: (counts[e], e)) if counts else None


@dataclass(frozen=True)
class Verdict:
    """inference: the mode; kind: see the module docstring; row: the row that gives the number
    (None when there is none); text: the one line to show first."""
    inference: InferenceMode
    kind: VerdictKind
    row: dict | None
    epsilon: float | None
    text: str

    @property
    def accuracy(self) -> float | None:
        return None if self.row is None or self.kind is VerdictKind.UNVERIFIED else self.row["accuracy"]

    def to_dict(self) -> dict:
        row = self.row or {}
        return {"inference": self.inference.value, "kind": self.kind.value, "accuracy": self.accuracy,
                "ci_low": row.get("ci_low") if self.accuracy is not None else None,
                "ci_high": row.get("ci_high") if self.accuracy is not None else None,
                "n": row.get("n"), "attack": row.get("attack"),
                "label": attack_label(row["attack"], self.inference) if row else None,
                "epsilon": self.epsilon, "text": self.text}


def _interval(row: dict) -> str:
    return f"95 % CI {100 * row['ci_low']:.1f}-{100 * row['ci_high']:.1f} %, n = {row['n']}"


def _lowest(rows: list[dict]) -> dict:
    """The lowest accuracy; among equals the strongest attack (it is the better evidence)."""
    rank = {Strength.STRONG: 0, Strength.BLACK_BOX: 1, Strength.WEAK: 2, Strength.NONE: 3}
    return min(rows, key=lambda r: (r["accuracy"], rank[strength(r)]))


def _verdict(mode: InferenceMode, rows: list[dict], eps: float | None, bare: Verdict | None = None) -> Verdict:
    head = f"{mode} ({INFERENCE_TITLES[mode]})"
    at_eps = f" at ε = {eps:.4g}" if eps is not None else ""
    attacked = [r for r in rows if r["attack"] != "natural" and eps is not None
                and round(float(r["epsilon"]), 6) == eps]
    counted = [r for r in attacked if r["protocol"] != Protocol.NON_ADAPTIVE]
    ignored = [r for r in attacked if r["protocol"] == Protocol.NON_ADAPTIVE]
    strong = [r for r in counted if strength(r) is Strength.STRONG]
    if mode is not InferenceMode.BARE and not strong:
        text = f"{head}: robustness unverified{at_eps}: no adaptive attack through IMT was run"
        if counted:
            low = _lowest(counted)
            text += f"; {attack_label(low['attack'], mode)} leaves {percent(low['accuracy'])}, only an upper bound"
        if ignored:
            low = _lowest(ignored)
            text += (f"; the non-adaptive attacks (on the bare classifier, then IMT) only show it is at most "
                     f"{percent(low['accuracy'])} ({attack_label(low['attack'], mode)}), and they never see IMT")
        return Verdict(mode, VerdictKind.UNVERIFIED, _lowest(counted) if counted else None, eps,
                       text + ". Add the adaptive attack.")
    if not counted:
        natural = next((r for r in rows if r["attack"] == "natural"), None)
        clean = f"natural accuracy {percent(natural['accuracy'])} (n = {natural['n']}); " if natural else ""
        return Verdict(mode, VerdictKind.NOT_ATTACKED, None, eps, f"{head}: not attacked: {clean}robustness unknown.")
    low = _lowest(strong or counted)  # a weak attack's number is never "the number to trust"
    label = attack_label(low["attack"], mode)
    if strong:
        text = (f"{head}: {percent(low['accuracy'])} robust accuracy{at_eps} ({_interval(low)}) against "
                f"{_named(label)}: the number to trust.")
        kind = VerdictKind.MEASURED
        below = [r for r in counted if strength(r) is not Strength.STRONG and r["accuracy"] < low["accuracy"]]
        if below:  # e.g. PGD-20 on more images than AutoAttack: the lower upper bound is said, not hidden
            w = _lowest(below)
            why = (f"on other images (n = {w['n']} against {low['n']})" if w["n"] != low["n"] else
                   "on the same images: the strong attack missed points the weaker one found")
            text += (f" {attack_label(w['attack'], mode)} leaves less, {percent(w['accuracy'])}, {why}; robustness is "
                     "at most the lower of the two.")
    else:
        text = (f"{head}: at most {percent(low['accuracy'])} robust{at_eps} ({_interval(low)}) against "
                f"{_named(label)}, an upper bound only: run autoattack for a number to trust.")
        kind = VerdictKind.UPPER_BOUND
    higher = [r for r in ignored if r["accuracy"] > low["accuracy"]]
    if higher:
        top = tempting(higher)
        text += (f" The non-adaptive {percent(top['accuracy'])} ({attack_label(top['attack'], mode)} on the bare "
                 "classifier, then IMT) does not count: that attacker never sees IMT.")
    elif kind is VerdictKind.MEASURED:
        weak = [r for r in counted if is_upper_bound_only(r) and r["accuracy"] > low["accuracy"] + 0.005]
        if weak:
            top = tempting(weak)
            text += f" {attack_label(top['attack'], mode)}'s {percent(top['accuracy'])} is only an upper bound."
    if bare is not None and mode is not InferenceMode.BARE and kind is VerdictKind.MEASURED:
        text += _against_bare(low, bare)
    return Verdict(mode, kind, low, eps, text)


TEMPTING = ("autoattack", "pgd20", "cw20", "pgd100", "cw100")  # the numbers a reader quotes, most quoted first


def tempting(rows: list[dict]) -> dict:
    """The row a reader is tempted to quote (the verdict's foil): AutoAttack, else PGD-20, else
    CW-20, …; FGSM only when nothing else ran."""
    for name in TEMPTING:
        hit = next((r for r in rows if r["attack"] == name), None)
        if hit is not None:
            return hit
    return max(rows, key=lambda r: r["accuracy"])


def _against_bare(imt: dict, bare: Verdict) -> str:
    """IMT's number to trust against the bare classifier's, when both were measured."""
    if bare.kind is not VerdictKind.MEASURED or bare.row is None:
        return ""
    both = (f"{percent(imt['accuracy'])} with IMT against {percent(bare.row['accuracy'])} for the bare classifier "
            f"({attack_label(bare.row['attack'], 'atld-')})")
    if imt["accuracy"] < bare.row["ci_low"]:
        return f" IMT makes the model less robust: {both}."
    if imt["accuracy"] <= bare.row["ci_high"]:
        return f" IMT adds no measurable robustness: {both}."
    return f" IMT adds robustness: {both}."


def verdicts(rows: list[dict], epsilon: float | None = None) -> list[Verdict]:
    """One `Verdict` per inference mode present in `rows` (evaluation rows as `EvalReport.rows`
    or a card's stored rows), in the order atld-, atld, atld+; at `epsilon` (default: the ε most
    attack rows share). An IMT verdict measured by a strong attack is compared with the bare
    classifier's: below its 95 % interval, IMT makes the model less robust."""
    eps = verdict_epsilon(rows) if epsilon is None else round(float(epsilon), 6)
    modes = [m for m in ORDER if any(r["inference"] == m for r in rows)]
    out, bare = [], None
    for m in modes:
        v = _verdict(m, [r for r in rows if r["inference"] == m], eps, bare)
        bare = v if m is InferenceMode.BARE else bare
        out.append(v)
    return out
