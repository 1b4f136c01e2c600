"""Learn: a guided walk through the manifold argument with the live models — natural clouds → a
small perturbation that fools → the attack's path → a robust model → ATLD's D and IMT → the
adaptive attack. Every sentence about a model is computed (`atld.ui.learn`); this page only draws."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from atld.data.registry import get_spec
from atld.errors import ATLDError
from atld.latent.maps import points_frame
from atld.ui import compute, session
from atld.ui.latent import latent_figure
from atld.ui.learn import (STEPS, adaptive_statement, cast, clouds_statement, comparison_rows, d_histogram,
                           discriminator_statement, fooled_statement, imt_statement, path_statement, pick_fooled,
                           robust_statements, step_from_query)
from atld.ui.runs import discover_runs
from atld.latent.path_figure import path_figure
from atld.ui.display import magnify, md, to_display
from atld.vocab import AttackKind, ColorBy, FitMode, InferenceMode, LatentSpace, Projection

st.title("Learn the manifold argument")
sel = session.selection()
run = session.require_entry(sel)  # the card's facts (torch-free); the workers load the checkpoints
spec = get_spec(run.dataset)
names = spec.labels()
EPS = float(spec.epsilon)
N = min(300, session.facts_or_stop(spec.name)["n_test"])
ATTACK = "pgd20"
SEARCH = min(64, N)  # test images searched for fooled examples
SHOWN = 4  # fooled examples shown
PATH_IMAGES = min(12, N)
ADAPTIVE_IMAGES = min(16, N)
PIXELS = 192  # side of an enlarged image
NATURAL_MAP = compute.page_latent(N, ATTACK, EPS, sel.seed, LatentSpace.LOGITS, Projection.PCA, FitMode.NATURAL)

lesson = cast(discover_runs(), spec.name, sel.run)
natural = lesson.natural or sel.run

# ---------------------------------------------------------------- the step, kept in the address
titles = [t for t, _ in STEPS]
if "learn_step" not in st.session_state:
    asked = st.query_params.get("step")
    k = step_from_query(asked) if asked is not None else st.session_state.get("learn_step_saved", 0)
    st.session_state["learn_step"] = titles[k]
step = st.radio("Step", titles, key="learn_step", horizontal=True, label_visibility="collapsed")
i = titles.index(step)
st.session_state["learn_step_saved"] = i
st.query_params["step"] = str(i + 1)
st.subheader(step)
st.info(STEPS[i][1])


def map_of(entry):
    return session.show(compute.latent_map, compute.MapRequest(session.ref_or_stop(entry), NATURAL_MAP),
                        slot=f"learn_map:{entry.path}")


def attacked(entry, count: int):
    """PGD-20 at the dataset's ε on the first `count` test images, then IMT (an `AttackResult`)."""
    request = compute.AttackRequest(session.ref_or_stop(entry), tuple(range(count)), AttackKind.PGD, EPS, 20,
                                    sel.seed, InferenceMode.IMT)
    return session.show(compute.attack, request, slot=f"learn_attack:{entry.path}")


def large(images):
    return list(to_display(images, scale=max(1, PIXELS // images.shape[-1])))


def verdict(true: int, pred: int) -> str:
    colour = "green" if pred == true else "red"
    mark = "kept" if pred == true else "flipped"
    return f":{colour}[**{md(names[pred])}** ({mark})]"


def image_rows(columns: tuple[str, ...], rows) -> None:
    """rows: (images per column, caption per column) for each example, drawn large."""
    cols = st.columns(len(columns))
    for col, title in zip(cols, columns):
        col.markdown(f"**{title}**")
    for images, captions in rows:
        cols = st.columns(len(columns))
        for col, image, caption in zip(cols, images, captions):
            col.image(image, width=PIXELS)
            col.markdown(caption)


def model_line(entry, part: str) -> None:
    st.caption(md(f"{part}: {entry.label} ({entry.method})."))


try:
    if i == 0:
        model_line(natural, "Model")
        m = map_of(natural)
        st.plotly_chart(latent_figure(points_frame(m.coords, m.latents, names), ColorBy.CLASS), key="learn_nat",
                        width="stretch")
        st.caption(md(f"PCA of the logits of {N} natural test images (circles) and of the same images under "
                      f"PGD-20 at ε = {EPS:.3g} (crosses), projected onto the natural map."))
        st.success(md(clouds_statement(m.gap, m.latents.accuracy_nat, m.latents.accuracy_pert, N)))
    elif i == 1:
        model_line(natural, "Model")
        result = attacked(natural, SEARCH)
        st.success(md(fooled_statement(result.labels, result.pred_nat, result.pred_adv, EPS, 16 if spec.name == "digits"
                                       else 256)))
        chosen = pick_fooled(result.labels, result.pred_nat, result.pred_adv, SHOWN)
        if len(chosen):
            image_rows(("natural", "perturbation (grey 0, white +ε, black −ε)", "adversarial"), [
                ((large(result.x[[j]])[0], large(magnify(result.delta[[j]], EPS))[0], large(result.x_adv[[j]])[0]),
                 (f"test #{j}: true **{md(names[result.labels[j]])}**, "
                  f"predicted {verdict(result.labels[j], result.pred_nat[j])}",
                  f"‖δ‖∞ = {result.linf[j]:.3f}",
                  f"predicted {verdict(result.labels[j], result.pred_adv[j])}"))
                for j in chosen])
    elif i == 2:
        options = {e.label: e for e in filter(None, (natural, lesson.with_d))}
        label = st.radio("Model", list(options), key="learn_path_model", horizontal=True,
                         help="a model with a discriminator also shows IMT's step back (the last frame)")
        entry = options[label]
        pm = session.show(compute.attack_path, compute.PathRequest(session.ref_or_stop(entry),
                                                                   tuple(range(PATH_IMAGES)), ATTACK, EPS, sel.seed),
                          slot=f"learn_path:{entry.path}")
        st.plotly_chart(path_figure(pm.path, pm.coords, pm.imt_coords, pm.background, pm.background_labels, names,
                                    indices=pm.indices), key="learn_path", width="stretch")
        st.caption(md(f"The first {PATH_IMAGES} test images under PGD-20 (ε = {EPS:.3g}, step ε/4) against "
                      f"{entry.label}, on a PCA map of {len(pm.background)} natural test images. Press ▶ Play "
                      "or drag the slider. Red-edged crosses: misclassified at that step."))
        st.success(md(path_statement(pm.path.accuracy(), pm.path.imt_accuracy)))
    elif i == 3:
        entries = ({"natural": lesson.natural} if lesson.natural else {}) | lesson.robust
        if not lesson.robust or len(entries) < 2:
            st.warning("This step compares a natural and an adversarially trained checkpoint of the same dataset; "
                       + md("; ".join(lesson.missing()) or "only one checkpoint is available") + ".")
        else:
            maps = {method: map_of(entry) for method, entry in entries.items()}
            st.dataframe(pd.DataFrame(comparison_rows(entries, maps)), hide_index=True, width="stretch")
            for line in robust_statements({method: m.gap for method, m in maps.items()}):
                st.markdown("- " + md(line))
            st.caption(md(f"Gap numbers in each model's own logit space, {N} test images, PGD-20 at ε = {EPS:.3g}. "
                          "See the maps side by side on the Latent explorer page."))
    elif i == 4:
        entry = lesson.with_d
        if entry is None:
            st.warning(md(discriminator_statement(None, sel.run.label if sel.run else "This checkpoint")
                          + " No checkpoint with a discriminator exists for this dataset; train an ATLD one."))
        else:
            model_line(entry, "Model")
            check = session.show(compute.discriminator_check, compute.CheckRequest(session.ref_or_stop(entry),
                                                                                   sel.seed),
                                 slot=f"discriminator_check:{entry.path}")
            st.success(md(discriminator_statement(check, entry.label)))
            m = map_of(entry)
            st.plotly_chart(d_histogram(m.latents.d_nat.numpy(), m.latents.d_pert.numpy()), key="learn_hist",
                            width="stretch")
            st.caption(md(f"D's P(natural) on {N} natural test images and their PGD-20 copies. Overlapping "
                          "histograms: D cannot tell them apart."))
            result = attacked(entry, ADAPTIVE_IMAGES)
            st.markdown(md(imt_statement(result.labels, result.pred_adv, result.pred_imt)))
    else:
        entry = lesson.with_d
        if entry is None:
            st.warning("The adaptive-attack lesson needs a checkpoint with a discriminator (ATLD) for this dataset.")
        else:
            model_line(entry, "Model")
            a = session.show(compute.adaptive_lesson, compute.LessonRequest(session.ref_or_stop(entry),
                                                                            tuple(range(ADAPTIVE_IMAGES)), EPS,
                                                                            sel.seed),
                             slot=f"adaptive_lesson:{entry.path}")
            n, clean, non, ada = a.counts()
            c1, c2, c3 = st.columns(3)
            c1.metric("clean, after IMT", f"{clean}/{n}")
            c2.metric("non-adaptive attack, then IMT", f"{non}/{n}", help="PGD-20 on the bare classifier")
            c3.metric("adaptive attack through IMT", f"{ada}/{n}",
                      help=f"APGD-CE + APGD-T, {a.apgd_steps} steps each, straight-through gradient of IMT")
            st.success(md(adaptive_statement(n, clean, non, ada, a.mode)))
            shown = [j for j in range(n) if a.pred_clean[j] == a.labels[j]][:SHOWN]
            image_rows(("clean", "non-adaptive (PGD-20 on the bare classifier)", "adaptive (through IMT)"), [
                ((large(a.x[[j]])[0], large(a.x_non_adaptive[[j]])[0], large(a.x_adaptive[[j]])[0]),
                 (f"test #{j}: true **{md(names[a.labels[j]])}**, after IMT {verdict(a.labels[j], a.pred_clean[j])}",
                  f"after IMT {verdict(a.labels[j], a.pred_non_adaptive[j])}",
                  f"after IMT {verdict(a.labels[j], a.pred_adaptive[j])}"))
                for j in shown])
            st.caption(md(f"{n} test images, ε = {a.epsilon:.3g}. Both numbers are upper bounds on robust accuracy; "
                          "the Evaluate page runs the full protocol with intervals."))
except ATLDError as exc:
    st.error(md(exc))

for line in lesson.missing():
    st.caption(md(f"Note: {line}."))


def go_to(target: str) -> None:
    st.session_state["learn_step"] = target  # a callback runs before the radio is drawn


c1, c2 = st.columns(2)
if i > 0:
    c1.button("← Back", key="learn_back", on_click=go_to, args=(titles[i - 1],), shortcut="Left",
              help="keyboard: ←")
if i < len(titles) - 1:
    c2.button("Next →", key="learn_next", on_click=go_to, args=(titles[i + 1],), shortcut="Right",
              help="keyboard: →")
