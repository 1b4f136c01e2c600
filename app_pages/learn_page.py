"""Learn: a guided walk through the manifold argument with the live models — the hypothesis →
natural clouds → a small perturbation that fools → the attack's path → robust models and their
gaps → ATLD's D and IMT → what D really learned → the adaptive attack → what the numbers showed.
Every sentence about a model is computed (`atld.ui.learn`); this page only draws."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from atld.data.registry import get_spec
from atld.errors import ATLDError
from atld.ui import compute, session
from atld.evaluate.compare import comparison_row
from atld.ui import learn as L
from atld.ui.hover import hover_thumbnails
from atld.ui.learn import (STEPS, adaptive_statement, cast, clouds_statement, comparison_rows, d_histogram,
                           discriminator_statement, fooled_statement, path_statement, pick_fooled,
                           robust_statements, step_from_query)
from atld.ui.runs import card_of, discover_runs
from atld.latent.path_figure import path_figure
from atld.ui.display import class_colour, figure_from_json, magnify, md, perturbation_rgb, to_display
from atld.vocab import AttackKind, FitMode, InferenceMode, LatentSpace, Projection

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
st.markdown(STEPS[i][1])  # the lesson's own text (no model numbers)


def map_of(entry):
    return session.show(compute.latent_map, compute.MapRequest(session.ref_or_stop(entry), NATURAL_MAP),
                        slot=f"learn_map:{entry.path}")


def attacked(entry, count: int):
    """PGD-20 at the dataset's ε on the first `count` test images, then IMT (an `AttackResult`)."""
    request = compute.AttackRequest(session.ref_or_stop(entry), tuple(range(count)), AttackKind.PGD, EPS, 20,
                                    sel.seed, InferenceMode.IMT)
    return session.show(compute.attack, request, slot=f"learn_attack:{entry.path}")


def learned_of(entry):
    """"What D really learned" on the lesson's N images (steps 6, 7 and 9 share it)."""
    return session.show(compute.what_d_learned, compute.LearnedRequest(session.ref_or_stop(entry), N, sel.seed),
                        slot=f"learn_d:{entry.path}")


def gap_entries() -> dict:
    return ({"natural": lesson.natural} if lesson.natural else {}) | lesson.robust


def side_by_side(entries: dict) -> dict:
    request = compute.SideBySideRequest(tuple(session.ref_or_stop(e) for e in entries.values()),
                                        tuple(L.method_name(m) for m in entries),
                                        NATURAL_MAP)
    return session.show(compute.side_by_side_plots, request, slot="learn_side_by_side")


def say(text: str, good: bool | None) -> None:
    """A computed sentence coloured by its outcome: green only for a positive finding, amber for a
    negative one, blue for a neutral one."""
    (st.info if good is None else st.success if good else st.warning)(md(text))


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
        for line in L.hypothesis_lines():
            st.markdown("- " + md(line))
        cast_line = "; ".join(f"{L.method_name(m)}: {e.label}" for m, e in gap_entries().items())
        st.markdown(md(f"The models of this lesson ({spec.name}): {cast_line or 'none'}"
                       + (f"; D and IMT: {lesson.with_d.label}" if lesson.with_d else "") + "."))
        st.caption(md(f"Every number on the following steps is computed live on the first {N} test images of "
                      f"{spec.name} (fewer where a step says so), under PGD-20 at ε = {EPS:.3g}; every sentence "
                      "is computed from those numbers, so it says what they show, also when they refute the "
                      "hypothesis."))
    elif i == 1:
        model_line(natural, "Model")
        m = map_of(natural)
        plot = compute.PlotRequest(compute.MapRequest(session.ref_or_stop(natural), NATURAL_MAP), height=380)
        fig = figure_from_json(session.show(compute.latent_plot, plot, slot="learn_plot"))
        fig.update_xaxes(showticklabels=True)  # a projector's map: tick numbers, one unit as long on both axes
        fig.update_yaxes(showticklabels=True, scaleanchor="x", scaleratio=1, constrain="domain")
        fig.update_layout(margin=dict(l=70, b=60))  # room for the tick numbers beside the axis titles
        st.plotly_chart(fig, key="learn_nat", width="stretch")
        hover_thumbnails()
        st.caption(md(f"PCA of the logits of {N} natural test images (circles) and of the same images under "
                      f"PGD-20 at ε = {EPS:.3g} (crosses), projected onto the natural map. Hover a point to see "
                      "its image."))
        say(clouds_statement(m.gap, m.latents.accuracy_nat, m.latents.accuracy_pert, N), L.clouds_apart(m.gap))
    elif i == 2:
        model_line(natural, "Model")
        result = attacked(natural, SEARCH)
        fooled = len(pick_fooled(result.labels, result.pred_nat, result.pred_adv, SEARCH))
        say(fooled_statement(result.labels, result.pred_nat, result.pred_adv, EPS, 16 if spec.name == "digits"
                             else 256), None if fooled else False)
        chosen = pick_fooled(result.labels, result.pred_nat, result.pred_adv, SHOWN)
        if len(chosen):
            image_rows(("natural", "perturbation (grey 0, white +ε, black −ε)", "adversarial"), [
                ((large(result.x[[j]])[0], large(magnify(result.delta[[j]], EPS))[0], large(result.x_adv[[j]])[0]),
                 (f"test #{j}: true **{md(names[result.labels[j]])}**, "
                  f"predicted {verdict(result.labels[j], result.pred_nat[j])}",
                  f"‖δ‖∞ = {result.linf[j]:.3f}",
                  f"predicted {verdict(result.labels[j], result.pred_adv[j])}"))
                for j in chosen])
    elif i == 3:
        options = {e.label: e for e in filter(None, (natural, lesson.with_d))}
        session.url_setting("learn_path_model", next(iter(options)), session.choice(list(options)),
                            param="path_model")
        label = st.radio("Model", list(options), key="learn_path_model", horizontal=True,
                         help="a model with a discriminator also shows IMT's step back (the last frame)")
        entry = options[label]
        indices = tuple(range(PATH_IMAGES))
        pm = session.show(compute.attack_path, compute.PathRequest(session.ref_or_stop(entry), indices, ATTACK, EPS,
                                                                   sel.seed), slot=f"learn_path:{entry.path}")
        frames = pm.path.steps + 1 + (pm.imt_coords is not None)
        k = min(max(int(st.session_state.get("learn_path_k", 0)), 0), frames - 1)
        left, right = st.columns([5, 2])
        with right:
            b1, b2 = st.columns(2)
            if b1.button("‹", key="learn_path_prev", help="one step back", disabled=k == 0, width="stretch"):
                k -= 1
            if b2.button("›", key="learn_path_next", help="one step on", disabled=k >= frames - 1, width="stretch"):
                k += 1
            st.session_state["learn_path_k"] = k
            speed = st.select_slider("Speed of ▶ Play", list(L.PLAYER_SPEEDS), value="normal", key="learn_path_speed")
            imgs = session.show(compute.path_images, compute.PathImagesRequest(session.ref_or_stop(entry), indices,
                                                                               ATTACK, EPS, sel.seed),
                                slot=f"learn_path_images:{entry.path}")
            labels, preds = pm.path.labels.numpy(), pm.path.preds.numpy()
            flipped = [j for j in range(len(labels)) if preds[-1][j] != labels[j] and preds[0][j] == labels[j]]
            who = st.selectbox("Image", list(range(len(labels))), index=flipped[0] if flipped else 0,
                               format_func=lambda j: f"test #{pm.indices[j]} ({names[labels[j]]})",
                               key=f"learn_path_image:{entry.path}")
            step_k = min(k, pm.path.steps)
            x_k = imgs[step_k, who][None]
            scale = max(1, 96 // x_k.shape[-1])
            c1, c2 = st.columns(2)
            c1.image(to_display(x_k, scale=scale)[0], caption=f"step {step_k}")
            c2.image(perturbation_rgb(x_k - imgs[0, who][None], EPS, scale=scale)[0],
                     caption="δ (blue −ε, red +ε)")
            st.markdown(f"step {step_k}: predicted {verdict(labels[who], preds[step_k][who])}"
                        + (" · the IMT frame shows where one IMT step takes the last iterate"
                           if k > pm.path.steps else ""))
        with left:
            fig = path_figure(pm.path, pm.coords, pm.imt_coords, pm.background, pm.background_labels, names,
                              indices=pm.indices)
            st.plotly_chart(L.player_at(fig, k, L.PLAYER_SPEEDS[speed]), key="learn_path", width="stretch")
        st.caption(md(f"The first {PATH_IMAGES} test images under PGD-20 (ε = {EPS:.3g}, step ε/4) against "
                      f"{entry.label}, on a PCA map of {len(pm.background)} natural test images. ‹ / › step through "
                      "the frames; ▶ Play runs them. Red-edged crosses: misclassified at that step."))
        say(path_statement(pm.path.accuracy(), pm.path.imt_accuracy), None)
    elif i == 4:
        entries = gap_entries()
        if not lesson.robust or len(entries) < 2:
            st.warning("This step compares a natural and an adversarially trained checkpoint of the same dataset; "
                       + md("; ".join(lesson.missing()) or "only one checkpoint is available") + ".")
        else:
            sbs = side_by_side(entries)
            cols = st.columns(len(entries))
            for col, fig_json, k in zip(cols, sbs["figures"], range(len(entries))):
                col.plotly_chart(figure_from_json(fig_json), key=f"learn_sbs_{k}", width="stretch")
            hover_thumbnails()
            st.html(L.class_legend(names, class_colour))
            for w, method in zip(sbs["warnings"], entries):
                if w:
                    st.warning(md(f"{L.method_name(method)}: {w}"))
            gaps = dict(zip(entries, sbs["gaps"]))
            ranks = L.gap_rank_statements({m: (g["two_sample_accuracy"], acc[1]) for (m, g), acc
                                           in zip(gaps.items(), sbs["accuracy"])}, sbs["n"])
            for line in ranks:
                say(line, False if "does not rank" in line else None)
            with st.expander("The gap numbers", expanded=False):
                maps = {method: map_of(e) for method, e in entries.items()}
                st.dataframe(pd.DataFrame(comparison_rows(entries, maps)), hide_index=True, width="stretch")
                for line in robust_statements(gaps):
                    st.markdown("- " + md(line))
            st.caption(md(f"{', '.join(e.label for e in entries.values())}: {sbs['n']} test images, PGD-20 at "
                          f"ε = {EPS:.3g}. Each model its own PCA of its logits "
                          "(without the offset the softmax ignores), in units of its natural cloud's spread, turned "
                          "onto the first map (Procrustes). " + L.LOGIT_REGIONS))
    elif i == 5:
        entry = lesson.with_d
        if entry is None:
            st.warning(md(discriminator_statement(None, sel.run.label if sel.run else "This checkpoint")
                          + " No checkpoint with a discriminator exists for this dataset; train an ATLD one."))
        else:
            model_line(entry, "Model")
            learned = learned_of(entry)
            say(discriminator_statement(learned, entry.label), L.d_separates(learned))
            sc = learned["scores"]
            st.plotly_chart(d_histogram(sc["eval_natural"], sc["eval_perturbed"]), key="learn_hist", width="stretch")
            st.caption(md(f"D's P(natural) in eval mode on {learned['n']} natural test images and their PGD-20 "
                          "copies. Overlapping histograms: D cannot tell them apart one image at a time."))
            steps = learned["steps_pgd"]
            say(L.imt_counts_statement(steps), steps["correct"]["imt"] > steps["correct"]["none"])
    elif i == 6:
        entry = lesson.with_d
        if entry is None:
            st.warning("This step needs a checkpoint with a discriminator (ATLD) for this dataset.")
        else:
            model_line(entry, "Model")
            learned = learned_of(entry)
            sep = learned["separation"]
            say(L.batch_context_statement(learned), sep["kind"] == "images")
            curve = learned["share_curve"]
            left, right = st.columns([3, 2])
            with right:
                share = st.slider("Adversarial images in the batch (%)", 0, 100, 50, 10, key="learn_share")
                now, whole = L.share_statement(curve, share / 100, learned["batch_size"])
                point = L.share_point(curve, share / 100)
                st.metric("D's mean P(natural) of the batch", f"{point['mean']:.3f}")
                st.markdown(md(now))
            with left:
                import plotly.graph_objects as go

                fig = go.Figure()
                xs = [100 * c["share"] for c in curve]
                for key, name, colour in (("mean", "whole batch", "#444"), ("mean_natural", "its natural images",
                                                                           "#1f77b4"),
                                          ("mean_perturbed", "its adversarial images", "#d62728")):
                    fig.add_trace(go.Scatter(x=xs, y=[c[key] for c in curve], name=name, mode="lines+markers",
                                             line=dict(color=colour)))
                fig.add_vline(x=100 * point["share"], line_dash="dot")
                fig.update_layout(height=260, margin=dict(l=10, r=10, t=10, b=10), yaxis_title="D: P(natural)",
                                  xaxis_title="adversarial images in the batch (%)",
                                  legend=dict(orientation="h", y=1.12))
                st.plotly_chart(fig, key="learn_share_curve", width="stretch")
            say(whole, not L.follows_batch(curve))
            for key in ("steps_pgd", "steps_clean"):
                say(learned[key]["sentence"], bool(learned[key]["informative"]))
            st.caption(md(f"{learned['n']} test images and their PGD-20 copies; batches of {learned['batch_size']} "
                          "(D's training batch size), train mode on a copy of D. " + learned["sentence"]))
    elif i == 7:
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
            say(adaptive_statement(n, clean, non, ada, a.mode), False if ada < non else None)
            shown = [j for j in range(n) if a.pred_clean[j] == a.labels[j]][:SHOWN]
            image_rows(("clean", "non-adaptive (PGD-20 on the bare classifier)", "adaptive (through IMT)"), [
                ((large(a.x[[j]])[0], large(a.x_non_adaptive[[j]])[0], large(a.x_adaptive[[j]])[0]),
                 (f"test #{j}: true **{md(names[a.labels[j]])}**, after IMT {verdict(a.labels[j], a.pred_clean[j])}",
                  f"after IMT {verdict(a.labels[j], a.pred_non_adaptive[j])}",
                  f"after IMT {verdict(a.labels[j], a.pred_adaptive[j])}"))
                for j in shown])
            st.caption(md(f"{n} test images, ε = {a.epsilon:.3g}. Both numbers are upper bounds on robust accuracy; "
                          "the Evaluate page runs the full protocol with intervals."))
    else:
        entries = gap_entries()
        if lesson.with_d is not None and lesson.with_d not in entries.values():
            entries[lesson.with_d.method] = lesson.with_d
        gaps = dict(zip(entries, side_by_side(entries)["gaps"])) if len(entries) >= 2 and lesson.robust else {}
        models = []
        for method, e in entries.items():
            card = card_of(e.path)
            learned = learned_of(e) if e.has_discriminator else None
            models.append(L.ModelNumbers(e.label, method, gaps.get(method),
                                         learned["separation"] if learned else None,
                                         learned["steps_pgd"] if learned else None,
                                         comparison_row(e.label, card) if card else None))
        for m in models:
            st.markdown("- " + md(L.model_line(m, N)))
        for outcome, line in L.verdict_lines(models):
            say(line, {"holds": True, "fails": False}.get(outcome))
        st.caption(md(f"Gaps and D's numbers: this lesson's {N} test images under PGD-20 at ε = {EPS:.3g}. Trusted "
                      "accuracy: the stored evaluation on the card (interval and n as stored there); PGD-20 is "
                      "only an upper bound."))
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
