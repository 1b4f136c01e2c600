"""Learn: a guided walk through the manifold argument with the live models — natural clouds →
perturbation → D sees the gap → ATLD closes it → what honest evaluation says."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from atld.config.vocab import AttackKind, ColorBy, FitMode, InferenceMode, LatentSpace, PointSet, Projection
from atld.latent.maps import points_frame
from atld.ui import cached, state
from atld.ui.latent_view import latent_figure
from atld.ui.evaluate_view import evaluation_table, verdict_messages
from atld.ui.learn import STEPS, comparison_rows, d_histogram, pick_by_method
from atld.ui.runs import card_of, discover_runs
from atld.ui.views import evaluation_frame, magnify, md, to_display

st.title("Learn the manifold argument")
sel = state.selection()
run = state.require_run(sel)
spec = run.spec
names = spec.labels()
N = min(300, len(state.data_or_stop(spec.name).y_test))
ATTACK = "pgd20"

titles = [t for t, _ in STEPS]
step = st.radio("Step", titles, key="learn_step", horizontal=True, label_visibility="collapsed")
i = titles.index(step)
st.subheader(step)
st.info(STEPS[i][1])
key = (str(run.path), run.model_hash, N, ATTACK, float(spec.epsilon), sel.seed, LatentSpace.LOGITS.value)
NATURAL_MAP = (Projection.PCA.value, FitMode.NATURAL.value)

if i == 0:
    m = cached.latent_map(*key, *NATURAL_MAP)
    t = points_frame(m.coords, m.latents, names)
    st.plotly_chart(latent_figure(t[t["set"] == PointSet.NATURAL], ColorBy.CLASS), key="learn_nat", width="stretch")
    st.caption(md(f"PCA of the logits of {N} natural test images under {run.name}."))
elif i == 1:
    view = cached.attack(str(run.path), run.model_hash, (0, 1, 2, 3), AttackKind.PGD.value, float(spec.epsilon), 20,
                         sel.seed, InferenceMode.IMT.value)
    cols = st.columns(3)
    for col, title, imgs in zip(cols, ("natural", "perturbation (magnified)", "adversarial"),
                                (view.x, magnify(view.delta, spec.epsilon), view.x_adv)):
        col.markdown(f"**{title}**")
        col.image(list(to_display(imgs)), width=80)
    st.caption("Predictions: " + ", ".join(f"{names[t]}→{names[p]}" for t, p in zip(view.labels, view.pred_adv)))
    m = cached.latent_map(*key, *NATURAL_MAP)
    st.plotly_chart(latent_figure(points_frame(m.coords, m.latents, names), ColorBy.CLASS), key="learn_pert",
                    width="stretch")
    st.caption("Crosses: the same images after PGD-20, projected onto the natural map.")
elif i == 2:
    m = cached.latent_map(*key, *NATURAL_MAP)
    g = m.gap
    if m.latents.d_nat is None:
        st.warning(md(f"{run.name} has no discriminator; choose an ATLD checkpoint in the sidebar to see D's view. "
                      "A fresh classifier (two-sample test) still measures the gap:"))
    else:
        st.plotly_chart(d_histogram(m.latents.d_nat.numpy(), m.latents.d_pert.numpy()), key="learn_hist",
                        width="stretch")
        st.metric("D's AUC (natural vs perturbed)", f"{g['discriminator_auc']:.3f}",
                  help="0.5: D cannot tell them apart; 1: perfectly")
        state.show_discriminator_check(run, sel.seed)
    st.metric("two-sample test accuracy", f"{100 * g['two_sample_accuracy']:.1f} %",
              help="a fresh logistic regression separating natural from perturbed latents; 50 % = no gap")
elif i == 3:
    entries = pick_by_method(discover_runs(), spec.name)
    if len(entries) < 2:
        st.warning("Needs checkpoints of at least two methods for this dataset (e.g. the shipped digits ones).")
    else:
        maps = {method: cached.latent_map(str(entry.path), entry.model_hash, *key[2:], *NATURAL_MAP)
                for method, entry in entries.items()}
        st.dataframe(pd.DataFrame(comparison_rows(entries, maps)), hide_index=True, width="stretch")
        st.caption("Lower two-sample accuracy and MMD², higher kNN mixing: the perturbed latents stay on the "
                   "natural clouds. See them side by side on the Latent explorer page.")
else:
    card = card_of(run.path) or run.card
    frame = evaluation_frame(card.get("evaluations"))
    if frame.empty:
        st.warning(md(f"{run.name} carries no stored evaluation; run one on the Evaluate page."))
    else:
        for level, text in verdict_messages(card["evaluations"]["rows"]):
            getattr(st, level)(md(text))
        st.dataframe(evaluation_table(card["evaluations"]["rows"]), hide_index=True, width="stretch")
    st.markdown(
        "- **PGD / CW** accuracy is an *upper bound*: it only says that this attack failed.\n"
        "- **AutoAttack** (an ensemble of stronger, parameter-free attacks) usually finds more adversarial "
        "examples; a large drop from PGD to AutoAttack is the signature of *gradient masking*.\n"
        "- **Adaptive** attacks differentiate through IMT itself; the official numbers attack the bare "
        "classifier and apply IMT afterwards, which overstates the defense (Croce et al., ICML 2022).")

def go_to(target: str) -> None:
    st.session_state["learn_step"] = target  # a callback runs before the radio is drawn


c1, c2 = st.columns(2)
if i > 0:
    c1.button("← Back", key="learn_back", on_click=go_to, args=(titles[i - 1],))
if i < len(titles) - 1:
    c2.button("Next →", key="learn_next", on_click=go_to, args=(titles[i + 1],))
