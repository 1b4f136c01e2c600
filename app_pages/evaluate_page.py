"""Evaluate: the checkpoint's stored evaluation (the verdict first, coloured by outcome, then every
row with its protocol, then D's check: its AUC per batch and per image), every checkpoint of the
dataset side by side (the numbers to trust, from their cards), an on-demand run on a few test
images (with progress, D's check and, for a large model, the time it will take), robust accuracy
vs ε for several checkpoints (one panel each; drawn at once from a shared address when computed
before), and why PGD/CW numbers are an upper bound."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from atld.attacks.registry import ATTACK_NAMES, DEFAULT_EVAL_ATTACKS
from atld.config.eval import EvalConfig
from atld.data.registry import get_spec
from atld.errors import ATLDError
from atld.evaluate import masking_findings, store_evaluation
from atld.ui import compute, session
from atld.evaluate.progress import clock
from atld.ui.evaluate import (HEAVY_SECONDS, HONEST_ROBUSTNESS, comparison_table, curve_epsilons, curve_figure,
                              curve_key, default_curve_labels, describe_range, discriminator_auc_rows,
                              discriminator_messages, estimate_eval_seconds, evaluation_table, small_image_count,
                              verdict_messages)
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
card = card_of(run.path) or {}
if run.imported:
    st.info(md(f"Imported weights ({card.get('arch', '?')}, from {(card.get('source') or {}).get('file', '?')}): "
               "no discriminator, so IMT (atld / atld+) does not apply; the bare classifier (atld-) is evaluated."))


def show_discriminator(check: dict | None) -> None:
    """D's AUC per batch and per image (a table), then its check in plain words, each line levelled."""
    auc_rows = discriminator_auc_rows(check)
    if auc_rows:
        st.dataframe(pd.DataFrame(auc_rows), hide_index=True, width="stretch")
    for level, text in discriminator_messages(check):
        getattr(st, level)(md(text))


st.subheader("Stored evaluation")
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
    if card.get("discriminator_check"):
        stored_check = card["discriminator_check"]
        st.markdown(md(f"**D's check** (stored: {stored_check.get('n', '?')} test images, seed "
                       f"{stored_check.get('seed', '?')})"))
        show_discriminator(stored_check)
else:
    st.caption("This checkpoint carries no stored evaluation yet (`python -m atld eval --store` stores one).")
with st.expander("How to read these numbers: upper bounds, AutoAttack, the adaptive attack"):
    st.markdown(HONEST_ROBUSTNESS)

entries = [r for r in discover_runs() if r.dataset == spec.name]
st.subheader(f"Every checkpoint of {spec.name}, side by side")
comparison = comparison_table([(e.label, card_of(e.path) or {}) for e in entries])
if comparison:  # a static table: its cells wrap, so nine columns fit 1280 px without a scrolling grid
    st.table(pd.DataFrame(comparison).set_index("checkpoint"))
st.caption("From each checkpoint's stored evaluation, most robust first: trusted is the highest measured "
           "verdict (AutoAttack on the bare classifier, or the adaptive attack through IMT), never a PGD/CW "
           "upper bound or a non-adaptive IMT row; cells read accuracy (95 % Wilson interval, n test images); "
           "– : not stored (python -m atld eval --store stores it).")

st.subheader("Evaluate now (a quick look on a few test images)")
n_test = session.facts_or_stop(spec.name)["n_test"]
cost = None
if card.get("arch"):  # seconds per image on this CPU: a large (imported) model defaults to a few images
    try:
        cost = session.show(compute.work_cost, compute.CostRequest(card["arch"], spec.name),
                            slot=f"work_cost:{card['arch']}:{spec.name}")
    except ATLDError:
        cost = None
QUICK_DEFAULT_ATTACKS = [a for a in ("natural", "fgsm", "pgd20", "cw20") if a in DEFAULT_EVAL_ATTACKS]
default_limit = small_image_count(cost, QUICK_DEFAULT_ATTACKS, n_test) if cost else min(100, n_test)

with st.form("eval_form"):
    c1, c2 = st.columns([3, 1])
    session.url_setting("ev_attacks", QUICK_DEFAULT_ATTACKS, session.several(ATTACK_NAMES), param="attacks",
                        show=session.joined)
    attacks = c1.multiselect("Attacks", ATTACK_NAMES, key="ev_attacks",
                             help="autoattack and adaptive are much slower; keep the image count small")
    session.url_setting("ev_limit", default_limit, session.bounded(int, 10, n_test), param="limit")
    limit = c2.number_input("Test images", 10, n_test, step=10, key="ev_limit", help=f"default {default_limit}")
    go = st.form_submit_button("Evaluate", type="primary", key="ev_go")
if cost:
    estimate = estimate_eval_seconds(cost, attacks or ["natural"], int(limit))
    if estimate > HEAVY_SECONDS:
        st.warning(md(f"About {clock(estimate)} on this CPU for {', '.join(attacks) or 'natural'} on {int(limit)} "
                      f"images ({card['arch']}: a rough figure from the model's size). Fewer images or fewer "
                      "attacks take proportionally less."))
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
        show_discriminator(result[2])
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
labels = [r.label for r in entries]
CURVE_ATTACKS = tuple(a for a in ATTACK_NAMES if a != "natural")
MODES = tuple(m.value for m in InferenceMode)
with st.form("curve_form"):
    c1, c2 = st.columns([3, 1])
    session.url_setting("ev_curve_runs", default_curve_labels(entries), session.several(labels), param="curve_runs",
                        show=session.joined)
    chosen = c1.multiselect("Checkpoints", labels, key="ev_curve_runs", help="one panel per checkpoint")
    session.url_setting("ev_curve_limit", 100, session.bounded(int, 10, 1000), param="curve_limit")
    curve_limit = c2.number_input("Test images", 10, 1000, step=10, key="ev_curve_limit", help="default 100")
    c3, c4 = st.columns(2)
    session.url_setting("ev_curve_attacks", [a for a in ("pgd20", "autoattack") if a in CURVE_ATTACKS],
                        session.several(CURVE_ATTACKS), param="curve_attacks", show=session.joined)
    curve_attacks = c3.multiselect(
        "Attacks", CURVE_ATTACKS, key="ev_curve_attacks",
        help="default pgd20, autoattack. autoattack (drawn as points at the dataset's ε) and adaptive (through IMT) "
             "give numbers to trust; pgd/cw/fgsm only upper bounds. The strong attacks are much slower: keep the "
             "image count small")
    session.url_setting("ev_curve_modes", list(MODES), session.several(MODES), param="curve_modes", show=session.joined)
    modes = c4.multiselect("Inference", MODES, key="ev_curve_modes",
                           help="default all three. atld- = the bare classifier; atld / atld+ apply IMT (checkpoints "
                                "without a discriminator are drawn as atld- only)")
    draw = st.form_submit_button("Draw the curve", key="ev_curve_go")


def curves_request(chosen, curve_attacks, modes, limit: int):
    """The chart's keys (`curve_key`) and its view's request, for the checkpoints, attacks and modes chosen."""
    keys, parts = [], []
    for label in chosen:
        if label not in labels:
            continue
        entry = entries[labels.index(label)]
        usable = [m for m in modes if entry.has_discriminator or m == InferenceMode.BARE.value]
        if modes and not usable:
            usable = [InferenceMode.BARE.value]
        for attack_name in curve_attacks:
            for mode in usable:
                keys.append(curve_key(label, attack_name, mode))
                parts.append(compute.CurveRequest(session.ref_or_stop(entry), curve_epsilons(attack_name, spec.epsilon),
                                                  attack_name, InferenceMode(mode), limit, sel.seed))
    return keys, compute.CurvesRequest(tuple(parts))


keys, asked = curves_request(chosen, curve_attacks, modes, int(curve_limit))
if draw:
    st.session_state["ev_curve"] = asked
elif st.session_state.get("ev_curve") is None and asked.curves and session.ready(compute.accuracy_curves, asked):
    st.session_state["ev_curve"] = asked  # a shared address whose curves were computed before: draw them at once
request = st.session_state.get("ev_curve")
if request is not None and request != asked:
    st.caption("The settings above changed since this chart was drawn: press *Draw the curve* to update it.")
if request is not None and request.curves:
    shown_keys = keys if request == asked else None
    try:
        results = session.show(compute.accuracy_curves, request, slot="accuracy_curves", interrupt=True)
    except ATLDError as exc:
        st.error(md(exc))
        results = []
    if shown_keys is None:  # an older request: its keys from its own parts
        shown_keys = [curve_key(next((e.label for e in entries if str(e.path) == c.run.path), c.run.path),
                                c.attack, c.inference.value) for c in request.curves]
    curves = {key: rows for key, rows in zip(shown_keys, results) if rows}
    if curves:
        first = request.curves[0]
        st.plotly_chart(curve_figure(curves, spec.epsilon), key="ev_curve_plot", width="stretch")
        st.caption(md(f"{first.limit} test images, seed {first.seed}. Bars: 95 % Wilson intervals; line style: "
                      "atld- solid, atld dashed, atld+ dotted; AutoAttack is drawn as points at the dataset's ε. "
                      "pgd/cw/fgsm give upper bounds only; under atld / atld+ they and autoattack attack the bare "
                      "classifier (non-adaptive), while adaptive and square attack through IMT."))
elif request is not None or draw:
    st.info("Nothing to draw: choose at least one checkpoint, one attack and one inference mode, then "
            "press *Draw the curve*.")
