"""Attack: pick test images, attack the classifier (FGSM / PGD / CW, ε, steps) and compare the
natural image, the adversarial one, the magnified perturbation and the IMT-corrected image, with
predictions and discriminator scores before and after."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from atld.config.vocab import AttackKind, InferenceMode
from atld.errors import ATLDError
from atld.ui import cached, state
from atld.ui.attack_view import summary_rows
from atld.ui.views import magnify, md, to_display

st.title("Attack")
sel = state.selection()
run = state.require_run(sel)
spec = run.spec
data = state.data_or_stop(spec.name)
n_test = len(data.y_test)
names = spec.labels()

c1, c2, c3, c4 = st.columns([1, 1, 1.4, 1])
kinds = tuple(k.value for k in AttackKind)
state.url_setting("atk_kind", kinds[1], state.choice(kinds))
kind = c1.radio("Attack", kinds, key="atk_kind", horizontal=True,
                format_func=str.upper,
                help="FGSM: one step of size ε from a random start; PGD: k steps of ε/4 on cross-entropy; "
                     "CW: k steps of ε/4 on the Carlini-Wagner margin (κ = 50)")
state.url_setting("atk_steps", 20, state.bounded(int, 1, 100))
steps = c2.slider("Steps", 1, 100, key="atk_steps", disabled=kind == AttackKind.FGSM,
                  help="number of signed steps (FGSM always takes 1)")
eps_max = round(max(2 * spec.epsilon, run.config.resolved_epsilon), 4)
state.url_setting("atk_eps", float(spec.epsilon), state.bounded(float, 0.0, eps_max), param="eps")
epsilon = c3.slider("ε ([0, 1] pixel units)", 0.0, eps_max, step=round(spec.epsilon / 20, 5),
                    format="%.4f", key="atk_eps",
                    help=f"ℓ∞ radius of the attack; the dataset's ε is {spec.epsilon:.4g} "
                         f"(= {spec.epsilon * 255:.1f}/255)")
imt_mode = c4.radio("IMT mode", (InferenceMode.IMT.value, InferenceMode.IMT_PLUS.value), key="atk_imt", horizontal=True,
                    disabled=run.discriminator is None,
                    help="ATLD: one IMT step of the run's training ε; ATLD+: half a step where D is unsure")
c5, c6 = st.columns(2)
state.url_setting("atk_start", 0, state.bounded(int, 0, n_test - 1))
start = c5.number_input("First test image", 0, n_test - 1, key="atk_start",
                        help=f"index into the {n_test} test images")
state.url_setting("atk_count", 6, state.bounded(int, 1, 8))
count = c6.slider("Number of images", 1, 8, key="atk_count")
indices = tuple(int(i) % n_test for i in range(start, start + count))

try:
    view = cached.attack(str(run.path), run.model_hash, indices, kind, float(epsilon), int(steps), sel.seed, imt_mode)
except ATLDError as exc:
    st.error(md(exc))
    st.stop()

flipped = int((view.pred_adv != view.labels).sum())
m1, m2, m3 = st.columns(3)
m1.metric("correct before", f"{int((view.pred_nat == view.labels).sum())}/{len(indices)}")
m2.metric("correct after attack", f"{int((view.pred_adv == view.labels).sum())}/{len(indices)}", delta=-flipped)
if view.pred_imt is not None:
    m3.metric(f"correct after {view.imt_mode.upper()} (IMT)",
              f"{int((view.pred_imt == view.labels).sum())}/{len(indices)}")
else:
    m3.caption("This checkpoint has no discriminator, so there is no IMT correction (choose an ATLD run).")

nat, adv, pert = to_display(view.x), to_display(view.x_adv), to_display(magnify(view.delta, max(epsilon, 1e-6)))
imt = to_display(view.x_imt) if view.x_imt is not None else None
IMAGE_WIDTH = 120  # pixels; 8x8 digits are enlarged without smoothing by to_display
headers = ["natural", "adversarial", "perturbation (magnified: grey 0, white +ε, black −ε)"]
headers += ["IMT-corrected"] if imt is not None else []
cols = st.columns(len(headers))
for col, h in zip(cols, headers):
    col.markdown(f"**{h}**")


def d_text(d, i):
    return f" · D {d[i]:.2f}" if d is not None else ""


for i in range(len(indices)):
    cols = st.columns(len(headers))
    cols[0].image(nat[i], caption=f"#{indices[i]} label {names[view.labels[i]]} → {names[view.pred_nat[i]]} "
                  f"({view.conf_nat[i]:.2f}){d_text(view.d_nat, i)}", width=IMAGE_WIDTH)
    cols[1].image(adv[i], caption=f"→ {names[view.pred_adv[i]]} ({view.conf_adv[i]:.2f}){d_text(view.d_adv, i)}",
                  width=IMAGE_WIDTH)
    cols[2].image(pert[i], caption=f"‖δ‖∞ = {view.linf[i]:.3f}", width=IMAGE_WIDTH)
    if imt is not None:
        cols[3].image(imt[i], caption=f"→ {names[view.pred_imt[i]]} ({view.conf_imt[i]:.2f}){d_text(view.d_imt, i)}",
                      width=IMAGE_WIDTH)

st.markdown("**Summary** (D = the discriminator's probability that the latent is natural)")
st.dataframe(pd.DataFrame(summary_rows(view, names)), hide_index=True, width="stretch")
st.caption("The attack targets the bare classifier; IMT is applied afterwards (the official, non-adaptive "
           "protocol). The Evaluate page shows what an adaptive attack through IMT does.")
state.show_discriminator_check(run, sel.seed)
