"""Attack: pick test images, attack the classifier (FGSM / PGD / CW, ε, steps) and compare the
natural image, the adversarial one, the perturbation (diverging colours) and the IMT-corrected
image: each prediction marked fooled / not fooled, top-3 probabilities, D's scores, and notes
computed from the model (label smoothing, D's separation, ε past the dataset's)."""

from __future__ import annotations

import streamlit as st

from atld.data.registry import get_spec
from atld.errors import ATLDError
from atld.ui import compute
from atld.ui import session
from atld.ui.attack import (confidence_note, discriminator_lines, epsilon_note, imt_note, outcome_mark,
                                 probability_bars, summary_rows)
from atld.ui.runs import card_of
from atld.ui.display import faded, md, perturbation_rgb, to_display
from atld.vocab import AttackKind, InferenceMode

st.title("Attack")
sel = session.selection()
run = session.require_entry(sel)  # the card's facts (torch-free); the workers load the checkpoint
ref = session.ref_or_stop(run)
trained = (card_of(run.path) or {}).get("config", {})
spec = get_spec(run.dataset)
n_test = session.facts_or_stop(spec.name)["n_test"]
names = spec.labels()

c1, c2, c3, c4 = st.columns([1, 1, 1.4, 1])
kinds = tuple(k.value for k in AttackKind)
session.url_setting("atk_kind", kinds[1], session.choice(kinds))
kind = c1.radio("Attack", kinds, key="atk_kind", horizontal=True,
                format_func=str.upper,
                help="FGSM: one step of size ε from a random start; PGD: k steps of ε/4 on cross-entropy; "
                     "CW: k steps of ε/4 on the Carlini-Wagner margin (κ = 50)")
session.url_setting("atk_steps", 20, session.bounded(int, 1, 100))
steps = c2.slider("Steps", 1, 100, key="atk_steps", disabled=kind == AttackKind.FGSM,
                  help="number of signed steps (FGSM always takes 1)")
eps_max = round(max(2 * spec.epsilon, spec.epsilon_or_default(trained.get("epsilon"))), 4)
session.url_setting("atk_eps", float(spec.epsilon), session.bounded(float, 0.0, eps_max), param="eps")
epsilon = c3.slider("ε ([0, 1] pixel units)", 0.0, eps_max, step=round(spec.epsilon / 20, 5),
                    format="%.4f", key="atk_eps",
                    help=f"ℓ∞ radius of the attack; the dataset's ε is {spec.epsilon:.4g} "
                         f"(= {spec.epsilon * 255:.1f}/255)")
imt_mode = c4.radio("IMT mode", (InferenceMode.IMT.value, InferenceMode.IMT_PLUS.value), key="atk_imt", horizontal=True,
                    disabled=not run.has_discriminator,
                    help="ATLD: one IMT step of the run's training ε; ATLD+: half a step where D is unsure"
                    if run.has_discriminator else
                    ("IMT needs a discriminator: this run has none"
                     + (" (imported weights: a classifier only)" if run.imported else "")))
c5, c6 = st.columns(2)
session.url_setting("atk_start", 0, session.bounded(int, 0, n_test - 1))
start = c5.number_input("First test image", 0, n_test - 1, key="atk_start",
                        help=f"index into the {n_test} test images")
session.url_setting("atk_count", 6, session.bounded(int, 1, 8))
count = c6.slider("Number of images", 1, 8, key="atk_count")
indices = tuple(int(i) % n_test for i in range(start, start + count))

request = compute.AttackRequest(ref, indices, AttackKind(kind), float(epsilon), int(steps), sel.seed,
                                InferenceMode(imt_mode))
note = epsilon_note(float(epsilon), spec.epsilon)
if note is not None:
    getattr(st, note[0])(md(note[1]))
IMAGE_SCALE = max(1, 192 // spec.input_shape[-1])  # nearest-neighbour: about 192 px a side
IMAGE_WIDTH = 176  # pixels on screen: large, and four still fit a 1280 px projector


def images(result, fade: bool = False) -> list:
    """Per column, the display images [N, ...]: natural, adversarial, perturbation, IMT (or None)."""
    out = [to_display(result.x, IMAGE_SCALE), to_display(result.x_adv, IMAGE_SCALE),
           perturbation_rgb(result.delta, max(result.epsilon, 1e-6), IMAGE_SCALE),
           to_display(result.x_imt, IMAGE_SCALE) if result.x_imt is not None else None]
    return [faded(a) if fade and a is not None else a for a in out]


def draw_stale(slot, result, shown_request) -> None:
    """Earlier results, faded, as one element (replaced whole when the new ones arrive)."""
    columns = [a for a in images(result, fade=True) if a is not None]
    pictures = [col[i] for i in range(len(result.labels)) for col in columns]
    what = f"updating… (shown: ε = {shown_request.epsilon:.4g}, {shown_request.kind.upper()})"
    slot.image(pictures, caption=[what] * len(pictures), width=IMAGE_WIDTH // 2)


def draw(result, shown_request) -> None:
    """The metrics and one row per image: natural, adversarial, perturbation and IMT-corrected,
    each with its caption and marks *under* the image (columns stack on a phone, so nothing
    relies on a column header)."""
    n = len(result.labels)
    fooled = int(((result.pred_adv != result.labels) & (result.pred_nat == result.labels)).sum())
    m1, m2, m3 = st.columns(3)
    m1.metric("correct before", f"{int((result.pred_nat == result.labels).sum())}/{n}")
    m2.metric("correct after attack", f"{int((result.pred_adv == result.labels).sum())}/{n}",
              delta=f"{fooled} fooled", delta_color="inverse" if fooled else "off")
    if result.pred_imt is not None:
        m3.metric(f"correct after {result.imt_mode.upper()} (IMT)",
                  f"{int((result.pred_imt == result.labels).sum())}/{n}")
        st.caption(md(imt_note(result)))
    else:
        m3.caption("This checkpoint has no discriminator, so there is no IMT correction (choose an ATLD run).")
    nat, adv, pert, imt = images(result)
    n_cols = 4 if imt is not None else 3
    for i in range(n):
        label = int(result.labels[i])
        with st.container(border=True):
            cols = st.columns(n_cols)
            cols[0].image(nat[i], caption=f"natural · test image #{shown_request.indices[i]} · label {names[label]}",
                          width=IMAGE_WIDTH)
            cols[0].markdown(outcome_mark(label, int(result.pred_nat[i]), names, attacked=False)
                             + d_text(result.d_nat, i))
            cols[1].image(adv[i], caption=f"adversarial ({shown_request.kind.upper()}, ε = {result.epsilon:.4g})",
                          width=IMAGE_WIDTH)
            cols[1].markdown(outcome_mark(label, int(result.pred_adv[i]), names) + d_text(result.d_adv, i))
            cols[2].image(pert[i], caption=f"perturbation δ = adversarial − natural: blue −ε, grey 0, red +ε; "
                          f"‖δ‖∞ = {result.linf[i]:.3f}", width=IMAGE_WIDTH)
            if imt is not None:
                cols[3].image(imt[i], caption=f"{result.imt_mode.upper()} (IMT) applied to the adversarial image",
                              width=IMAGE_WIDTH)
                cols[3].markdown(outcome_mark(label, int(result.pred_imt[i]), names) + d_text(result.d_imt, i))
            for col, probs in zip((cols[0], cols[1], cols[3] if imt is not None else None),
                                  (result.probs_nat, result.probs_adv, result.probs_imt)):
                if col is not None and probs is not None:
                    col.markdown(probability_bars(probs[i], label, names))


def d_text(d, i) -> str:
    return f"  \nD(natural) {d[i]:.2f}" if d is not None else ""


shown = st.session_state.get("atk_shown")  # (request, result) last drawn in this session
stale_slot = st.empty()
ready = session.ready(compute.attack, request)
if shown is not None and shown[0] != request and shown[0].run == request.run and not ready:
    draw_stale(stale_slot, shown[1], shown[0])
# One slot per session: a newer ε (another arrow-key press) supersedes this request in the compute
# service, which drops it if it has not started, so only the latest value is computed.
try:
    result = session.show(compute.attack, request)
except ATLDError as exc:
    stale_slot.empty()
    st.error(md(exc))
    st.stop()
stale_slot.empty()
st.session_state["atk_shown"] = (request, result)
draw(result, request)

st.caption(md(confidence_note(trained.get("label_smoothing"), len(names), run.method)))
with st.expander("All numbers as a table"):
    # a list of dicts, not a DataFrame: the page imports no pandas (a second of CPU on a first visit)
    st.dataframe(summary_rows(result, names), hide_index=True, width="stretch")
st.caption("The attack targets the bare classifier; IMT is applied afterwards (the official, non-adaptive "
           "protocol). The Evaluate page shows what an adaptive attack through IMT does.")
# D's check last: everything above (the images first) is drawn before the page asks for it, so a
# check still computing never holds the images back.
if run.has_discriminator:
    st.markdown("**What D's scores mean here**")
    d_check = session.show(compute.discriminator_check, compute.CheckRequest(ref, sel.seed),
                           slot=f"discriminator_check:{run.path}")
    for level, text in discriminator_lines(d_check):
        getattr(st, level)(md(text))
    with st.expander("D's whole check (ATLD+'s window, IMT's step against a reversed and a random one)"):
        session.show_discriminator_check(run, sel.seed)
