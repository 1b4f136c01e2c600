"""Evaluate: the checkpoint's stored evaluation (the verdict first, then every row with its protocol),
an on-demand run on a few test images (with progress and D's check), robust accuracy vs ε for
several checkpoints in one chart (any attack, AutoAttack and the adaptive attack included), and why
PGD/CW numbers are an upper bound."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from atld.attacks.registry import ATTACK_NAMES, DEFAULT_EVAL_ATTACKS
from atld.config.eval import EvalConfig
from atld.data.registry import get_spec
from atld.errors import ATLDError
from atld.evaluate import attack_label, masking_findings, store_evaluation
from atld.ui import compute, session
from atld.ui.evaluate import (HONEST_ROBUSTNESS, curve_epsilons, curve_figure, describe_range,
                                   discriminator_messages, evaluation_table, verdict_messages)
from atld.ui.exports import export_name
from atld.ui.runs import card_of, discover_runs, is_own_run
from atld.ui.display import evaluation_frame, md
from atld.vocab import InferenceMode

st.title("Evaluate")
sel = session.selection()
run = session.require_entry(sel)  # the card's facts (torch-free); the workers load the checkpoint
spec = get_spec(run.dataset)
try:  # the stored evaluation below comes from the card: first make sure the checkpoint itself loads
    session.show(compute.prepare, session.ref_or_stop(run), slot="prepare")
except ATLDError as exc:
    st.error(md(exc))
    st.stop()

st.subheader("Stored evaluation")
card = card_of(run.path) or {}
stored = (card.get("evaluations") or {}).get("rows") or []
if stored:
    st.caption("accuracy % (95 % Wilson interval); ATLD- is the bare classifier, ATLD / ATLD+ add IMT. "
               f"n = {describe_range(r['n'] for r in stored)} test images per row; attack ε = "
               f"{describe_range(r['epsilon'] for r in stored if r['attack'] != 'natural')}.")
    for level, text in verdict_messages(stored):
        getattr(st, level)(md(text))
    st.dataframe(evaluation_table(stored), hide_index=True, width="stretch")
    for finding in masking_findings(stored):
        (st.warning if finding["flagged"] else st.success)(md(finding["message"]))
    with st.expander("All stored rows (every ε, seconds, notes)"):
        st.dataframe(evaluation_frame(card["evaluations"]), hide_index=True, width="stretch")
else:
    st.caption("This checkpoint carries no stored evaluation yet (`python -m atld eval --store` stores one).")
with st.expander("How to read these numbers: upper bounds, AutoAttack, the adaptive attack"):
    st.markdown(HONEST_ROBUSTNESS)

st.subheader("Evaluate now (a quick look on a few test images)")
n_test = session.facts_or_stop(spec.name)["n_test"]

with st.form("eval_form"):
    c1, c2 = st.columns([3, 1])
    session.url_setting("ev_attacks", [a for a in ("natural", "fgsm", "pgd20", "cw20") if a in DEFAULT_EVAL_ATTACKS],
                      session.several(ATTACK_NAMES), param="attacks", show=session.joined)
    attacks = c1.multiselect("Attacks", ATTACK_NAMES, key="ev_attacks",
                             help="autoattack and adaptive are much slower; keep the image count small")
    session.url_setting("ev_limit", min(100, n_test), session.bounded(int, 10, n_test), param="limit")
    limit = c2.number_input("Test images", 10, n_test, step=10, key="ev_limit")
    go = st.form_submit_button("Evaluate", type="primary", key="ev_go")
quick_settings = f"{', '.join(attacks) or 'natural'} on {int(limit)} test images, seed {sel.seed}"
if go:
    try:  # in a compute worker, with its progress and a Cancel button (the same events as the CLI's bar)
        config = EvalConfig(attacks=tuple(attacks) or ("natural",), limit=int(limit), seed=sel.seed, device="cpu")
        report = session.show(compute.evaluation, compute.EvalRequest(session.ref_or_stop(run), config),
                              slot=f"evaluation:{run.path}")
    except ATLDError as exc:
        st.error(md(exc))
    else:
        st.session_state["ev_report"] = (str(run.path), report.rows, report.meta.get("discriminator"), quick_settings,
                                         report)


def store_quick(report) -> None:
    """Merge the quick evaluation into the run's card (what `python -m atld eval --store` does)."""
    try:
        store_evaluation(sel.run.path, report)
    except ATLDError as exc:
        st.session_state["ev_store_note"] = ("error", f"Not stored: {exc}")
    else:
        st.session_state["ev_store_note"] = ("success", f"Stored {len(report.rows)} row(s) in the card of "
                                             f"{sel.run.label}: the stored evaluation above now includes them.")


result = st.session_state.get("ev_report")
note = st.session_state.pop("ev_store_note", None)
if note is not None:
    getattr(st, note[0])(md(note[1]))
if result is not None and result[0] == str(run.path):
    rows = result[1]
    with session.result_box("ev_quick_result", result[3], quick_settings):
        for level, text in verdict_messages(rows):
            getattr(st, level)(md(text))
        st.dataframe(evaluation_table(rows), hide_index=True, width="stretch")
        for level, text in discriminator_messages(result[2]):
            getattr(st, level)(md(text))
        st.download_button("These rows (CSV)", pd.DataFrame(rows).to_csv(index=False),
                           file_name=export_name(f"{run.path.name}-eval", "csv"),
                           mime="text/csv", key="ev_csv")
        if is_own_run(sel.run) and session.owns_run(sel.run.path):
            st.button("Store in the run's card", key="ev_store", on_click=store_quick, args=(result[4],),
                      help="merges these rows into the card's stored evaluation (a row with the same attack, "
                           "inference and ε is replaced), like `python -m atld eval --store`")
        else:
            st.caption("Shipped checkpoints are read-only, and so are runs this browser session did not start: a "
                       "quick evaluation is stored only in the cards of the runs you trained here (runs directory).")

st.subheader("Robust accuracy vs ε")
entries = [r for r in discover_runs() if r.dataset == spec.name]
labels = [r.label for r in entries]
CURVE_ATTACKS = tuple(a for a in ATTACK_NAMES if a != "natural")
MODES = tuple(m.value for m in InferenceMode)
with st.form("curve_form"):
    c1, c2 = st.columns([3, 1])
    session.url_setting("ev_curve_runs", labels[:3], session.several(labels), param="curve_runs", show=session.joined)
    chosen = c1.multiselect("Checkpoints", labels, key="ev_curve_runs")
    session.url_setting("ev_curve_limit", 100, session.bounded(int, 10, 1000), param="curve_limit")
    curve_limit = c2.number_input("Test images", 10, 1000, step=10, key="ev_curve_limit")
    c3, c4 = st.columns(2)
    session.url_setting("ev_curve_attacks", [a for a in ("pgd20", "autoattack") if a in CURVE_ATTACKS],
                      session.several(CURVE_ATTACKS), param="curve_attacks", show=session.joined)
    curve_attacks = c3.multiselect(
        "Attacks", CURVE_ATTACKS, key="ev_curve_attacks",
        help="autoattack (drawn as points at the dataset's ε) and adaptive (through IMT) give numbers to trust; "
             "pgd/cw/fgsm only upper bounds. The strong attacks are much slower: keep the image count small")
    session.url_setting("ev_curve_modes", list(MODES), session.several(MODES), param="curve_modes", show=session.joined)
    modes = c4.multiselect("Inference", MODES, key="ev_curve_modes",
                           help="atld- = the bare classifier; atld / atld+ apply IMT (checkpoints without a "
                                "discriminator are drawn as atld- only)")
    draw = st.form_submit_button("Draw the curve", key="ev_curve_go")
if draw:
    st.session_state["ev_curve"] = (tuple(chosen), tuple(curve_attacks), tuple(modes), int(curve_limit))
request = st.session_state.get("ev_curve")
if request is not None:
    curves = {}
    for label in request[0]:
        if label not in labels:
            continue
        entry = entries[labels.index(label)]
        usable = [m for m in request[2] if entry.has_discriminator or m == InferenceMode.BARE.value]
        if request[2] and not usable:
            usable = [InferenceMode.BARE.value]
        for attack_name in request[1]:
            for mode in usable:
                name = f"{label} · {attack_label(attack_name, mode)} / {mode}"
                grid = curve_epsilons(attack_name, spec.epsilon)
                curve = compute.CurveRequest(session.ref_or_stop(entry), grid, attack_name, InferenceMode(mode),
                                             request[3], sel.seed)
                rows = session.show(compute.accuracy_curve, curve, slot=f"curve:{name}")
                if rows:
                    curves[name] = rows
    if curves:
        st.plotly_chart(curve_figure(curves, spec.epsilon), key="ev_curve_plot", width="stretch")
        st.caption(md(f"{request[3]} test images, seed {sel.seed}. Bars: 95 % Wilson intervals; line style: "
                      "atld- solid, atld dashed, atld+ dotted; AutoAttack is drawn as points at the dataset's ε. "
                      "pgd/cw/fgsm give upper bounds only; under atld / atld+ they and autoattack attack the bare "
                      "classifier (non-adaptive), while adaptive and square attack through IMT."))
    else:
        st.info("Nothing to draw: choose at least one checkpoint, one attack and one inference mode, then "
                "press *Draw the curve*.")
