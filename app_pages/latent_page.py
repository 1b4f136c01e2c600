"""Latent explorer: natural and perturbed latents in one 2-D map (PCA at once, UMAP on request;
logits without their softmax-invariant offset; equal-aspect axes with tick numbers), coloured by
true or predicted class × natural/perturbed, by D score (with D's AUC per batch and per image
under it) or by correctness; a hovered point shows its image and a hovered listed image rings its
point; box/lasso selection lists the selected images, misclassified perturbed points first, page
by page, each with its natural → perturbed segment; one clicked or found point lists its nearest
neighbours in the full latent space; a point opens in the Attack page; gap numbers beside the
plot; a second checkpoint side by side (each model's own PCA, aligned by a rotation), with a table
of both models' gap numbers; the attack's path step by step (‹ / ›, a speed, the image at the
step); CSV export (as `python -m atld embed`).
Every setting lives in the page's address (`session.url_setting`).

The page imports no torch: what it draws comes from the compute service as plain data (the map
as a `MapPoints`, the figure as plotly JSON), so its first visit on a fresh server never waits for
torch to load in the server."""

from __future__ import annotations

import numpy as np
import streamlit as st

from atld.attacks.registry import PERTURBATION_NAMES
from atld.data.registry import get_spec
from atld.errors import ATLDError
from atld.ui import compute, server, session
from atld.ui.hover import hover_thumbnails
from atld.ui.latent import (COLOR_MODES, LATENT_DEFAULTS, PLAYER_SPEEDS, color_note, d_colour_lines, gap_summary,
                             gap_table, map_notes, page_of, path_frame, player_step, segments, selected_ids,
                             selection_order, side_by_side_caption, step_names)
from atld.ui.exports import export_name
from atld.ui.runs import comparison_run, discover_runs
from atld.ui.display import figure_from_json, md, perturbation_rgb, to_display
from atld.vocab import ColorBy, FitMode, LatentSpace, PointSet, Projection

st.title("Latent explorer")
sel = session.selection()
run = session.require_entry(sel)  # the card's facts (torch-free); the workers load the checkpoint
ref = session.ref_or_stop(run)
spec = get_spec(run.dataset)
names = spec.labels()
facts = session.facts_or_stop(spec.name)
n_test = facts["n_test"]
hover_thumbnails()

D = LATENT_DEFAULTS
attacks = PERTURBATION_NAMES[1:]
sizes = sorted({100, 200, 300, min(450, n_test), min(1000, n_test), min(2000, n_test), n_test})
spaces, colors = tuple(s.value for s in LatentSpace), tuple(c.value for c in COLOR_MODES)
fits, projections = (FitMode.JOINT.value, FitMode.NATURAL.value), (Projection.PCA.value, Projection.UMAP.value)

c1, c2, c3, c4 = st.columns(4)
session.url_setting("lat_attack", D.attack, session.choice(attacks))
attack_name = c1.selectbox("Attack", attacks, key="lat_attack",
                           help=f"at the dataset's ε = {spec.epsilon:.4g}, step ε/4")
session.url_setting("lat_n", min(D.n, n_test), session.choice(sizes))
n = c2.select_slider("Test images", sizes, key="lat_n", help="the first N test images (2N points)")
session.url_setting("lat_space", str(D.space), session.choice(spaces))
space = c3.radio("Latent", spaces, key="lat_space", horizontal=True,
                 help="logits: what ATLD's D sees; features: the penultimate layer")
session.url_setting("lat_color", str(D.color_by), session.choice(colors))
color_by = c4.selectbox("Colour by", colors, key="lat_color",
                        help="class: the true class; predicted class: what the model says; D score needs a "
                             "checkpoint with a discriminator")
c5, c6, c7 = st.columns([2, 2, 1])
session.url_setting("lat_fit", str(D.fit_on), session.choice(fits))
fit_on = c5.radio("Map", fits, key="lat_fit", horizontal=True,
                  format_func={FitMode.JOINT: "joint fit (both clouds)",
                               FitMode.NATURAL: "natural map (perturbed projected onto it)"}.get)
session.url_setting("lat_method", str(D.projection), session.choice(projections))
method = c6.radio("Projection", projections, key="lat_method", horizontal=True,
                  format_func={Projection.PCA: "PCA (instant)", Projection.UMAP: "UMAP (on request)"}.get)
session.url_setting("lat_find", -1, session.bounded(int, -1, n - 1))
find = c7.number_input("Find test image #", -1, n - 1, key="lat_find",
                       help=f"a test index below {n} (−1: none); its natural and perturbed points are ringed")

note = color_note(color_by, run.has_discriminator)
if note:
    st.warning(note)
    color_by = ColorBy.CLASS.value

SEGMENTS = 200  # most natural → perturbed lines drawn for a selection (a bigger one lists its images only)
umap_key = ("umap", str(run.path), n, attack_name, space, fit_on, sel.seed)


def map_request(projection: str) -> compute.MapRequest:
    return compute.MapRequest(ref, compute.page_latent(n, attack_name, spec.epsilon, sel.seed, space, projection,
                                                       fit_on))


if method == Projection.UMAP and st.session_state.get("lat_umap_ok") != umap_key \
        and not session.ready(compute.map_points, map_request(method)):
    st.info("UMAP takes a few seconds (its compiled code is loaded when the server starts; a map that "
            "places points onto a fitted map compiles more the first time). It runs on PCA-reduced latents, "
            "fitted on at most 5,000 points, shows its progress and can be cancelled.")
    if st.button("Compute UMAP", key="lat_umap_go", type="primary"):
        st.session_state["lat_umap_ok"] = umap_key
        st.rerun()
    method = Projection.PCA.value
    st.caption("Showing PCA until then.")


def forget_umap() -> None:
    st.session_state.pop("lat_umap_ok", None)


# The selection is the page's own: drawing the selected images' segments changes the figure, and a
# changed figure is a new chart with an empty selection. A new selection replaces it; Clear empties it.
chart_state = st.session_state.get("lat_plot")
new_pick = selected_ids(chart_state.get("selection") if isinstance(chart_state, dict) else
                        getattr(chart_state, "selection", None))
pick_key = (str(run.path), n, attack_name, space, method, fit_on, sel.seed)
if st.session_state.get("lat_pick_key") != pick_key:  # another map: its point ids mean other images
    st.session_state["lat_pick_key"], st.session_state["lat_picked"] = pick_key, []
if new_pick:
    st.session_state["lat_picked"] = new_pick
saved_pick = list(st.session_state.get("lat_picked", []))

try:
    request = map_request(method)
    m = session.show(compute.map_points, request, slot="latent_map", interrupt=method != Projection.PCA,
                     on_cancel=forget_umap)
    figure = figure_from_json(session.show(compute.latent_plot, compute.PlotRequest(request, color_by),
                                           slot="latent_plot"))
except ATLDError as exc:  # e.g. the worker could not load the checkpoint: one line
    st.error(md(exc))
    st.stop()

table = m.table
picked = ([find, len(m) + find] if find >= 0 else []) + saved_pick
# Nearest neighbours of one clicked (or found) point, in the full latent space, not on the map.
focus = saved_pick[0] if len(saved_pick) == 1 else find if find >= 0 and not saved_pick else None
near = []
if focus is not None:
    try:
        near = session.show(compute.neighbours, compute.NeighbourRequest(request, int(focus)), slot="lat_near")
    except ATLDError as exc:
        st.caption(md(exc))
image_ids = [int(table.iloc[i]["index"]) for i in picked if 0 <= i < len(table)][:SEGMENTS]
if image_ids:  # each found or selected image: a line from its natural point to its perturbed one
    xs, ys = segments(table, image_ids)
    figure.add_scatter(x=xs, y=ys, mode="lines", name="natural → perturbed", hoverinfo="skip", showlegend=False,
                       line=dict(color="rgba(20,20,20,0.7)", width=1.5))
if near:
    ring = table.iloc[[i for i, _ in near]]
    figure.add_scatter(x=ring["x"], y=ring["y"], mode="markers", name="nearest", hoverinfo="skip", showlegend=False,
                       marker=dict(size=14, color="rgba(0,0,0,0)", line=dict(width=1.5, color="#555")))
if find >= 0:  # ring the looked-up image's two points
    ring = table.iloc[[find, len(m) + find]]
    figure.add_scatter(x=ring["x"], y=ring["y"], mode="markers", name=f"#{find}", hoverinfo="skip",
                       marker=dict(size=18, color="rgba(0,0,0,0)", line=dict(width=2.5, color="black")))
settings_text = (f"{attack_name} at ε = {spec.epsilon:.4g} · first {n} test images · {space} · "
                 f"{method.upper()} ({fit_on} fit) · seed {sel.seed}")
left, right = st.columns([3, 1])
with left:
    st.caption(md(f"{run.path.name}: accuracy {100 * m.accuracy_nat:.1f} % natural, "
                  f"{100 * m.accuracy_pert:.1f} % under {attack_name}.")
               + " Circles: natural; crosses: perturbed. Hover a point to see its image; click one, or drag a "
                 "box (lasso in the toolbar), to list images below.")
    st.plotly_chart(figure, key="lat_plot", on_select="rerun", selection_mode=("points", "box", "lasso"),
                    width="stretch")
    if color_by == ColorBy.D_SCORE:  # what D's colours mean here, from D's measured check, under its colour bar
        check = session.show(compute.discriminator_check, compute.CheckRequest(ref, sel.seed),
                             slot=f"discriminator_check:{run.path}")
        for level, text in d_colour_lines(check):
            getattr(st, level)(md(text))
    for level, text in map_notes(method, space, m.explained, m.offset_share):
        getattr(st, level)(md(text))
    st.caption(md(f"Map of: {settings_text}."))
with right:
    st.markdown("**Gap, in latent space**")
    for name, value, meaning in gap_summary(m.gap):
        st.metric(name, value, help=meaning)
        st.caption(meaning)
session.show_discriminator_check(run, sel.seed)

ATTACK_PAGE = "app_pages/attack_page.py"


def open_in_attack(index: int) -> None:
    """The Attack page on this test image, with this page's attack where the Attack page has it."""
    st.switch_page(ATTACK_PAGE, query_params={"start": str(int(index)), "count": "1"})


ids = selection_order(table, picked)
head, clear = st.columns([5, 1])
head.subheader(f"Selection ({len(ids)} points)")
if saved_pick and clear.button("Clear selection", key="lat_clear"):
    st.session_state["lat_picked"] = []
    st.rerun()
if not ids:
    st.caption("Select points on the map (click, box or lasso) or find a test image to see the images here.")
else:
    n_wrong_pert = int(((table.loc[ids, "set"] == PointSet.PERTURBED) & ~table.loc[ids, "correct"]).sum())
    st.caption(f"{n_wrong_pert} of them are perturbed and misclassified: these come first, then misclassified "
               "natural points, then the rest.")
    pages = -(-len(ids) // 24)
    number = 1
    if pages > 1:
        session.url_setting("lat_page", 1, session.bounded(int, 1, pages))
        number = st.number_input(f"Page (of {pages})", 1, pages, key="lat_page")
    shown_ids, number, pages = page_of(ids, number)
    shown = table.loc[shown_ids]
    images_nat, images_pert = m.images_nat, m.images_pert
    perturbed = (shown["set"] == PointSet.PERTURBED).to_numpy()[:, None, None, None]
    pics = to_display(np.where(perturbed, images_pert[shown["index"].values], images_nat[shown["index"].values]))
    cols = st.columns(8)
    for j, (pid, row) in enumerate(shown.iterrows()):
        d = "" if np.isnan(row["d_natural"]) else f" · D {row['d_natural']:.2f}"
        mark = "✗" if not row["correct"] else "✓"
        caption = f"{mark} {row['set'][:4]} #{row['index']}: {row['label_name']}→{row['pred_name']}{d}"
        with cols[j % 8]:
            st.image(pics[j], caption=caption)
            if st.button("Attack it", key=f"lat_open_{pid}",
                         help=f"open test image #{row['index']} in the Attack page"):
                open_in_attack(row["index"])
    st.caption(f"page {number} of {pages} · {len(ids)} selected points")
    if len(set(table.loc[ids, "index"])) == 1:
        index = int(table.loc[ids[0], "index"])
        if st.button(f"Open test image #{index} in the Attack page", key="lat_open_one", type="primary"):
            open_in_attack(index)
    st.dataframe(table.loc[ids].reset_index(names="id")[["id", "set", "index", "label_name", "pred_name", "correct",
                                                         "d_natural"]], hide_index=True, width="stretch", height=200)
if near:
    row = table.loc[focus]
    st.markdown(f"**Nearest neighbours of {row['set']} #{row['index']}** in the full latent space "
                f"({'all logits, offset removed as on the map' if space == 'logits' else 'all features'}), "
                "not on the 2-D map; ringed in grey on the map")
    near_rows = table.loc[[i for i, _ in near]]
    is_pert = (near_rows["set"] == PointSet.PERTURBED).to_numpy()[:, None, None, None]
    near_pics = to_display(np.where(is_pert, m.images_pert[near_rows["index"].values],
                                    m.images_nat[near_rows["index"].values]))
    ncols = st.columns(len(near))
    for j, ((_, r), (_, dist)) in enumerate(zip(near_rows.iterrows(), near)):
        ncols[j].image(near_pics[j], caption=f"{'✓' if r['correct'] else '✗'} {r['set'][:4]} #{r['index']}: "
                                             f"{r['label_name']}→{r['pred_name']} · distance {dist:.3g}")

csv_meta = {"checkpoint": str(run.path), "model_sha256": run.model_hash, "method_trained": run.method,
            "dataset": spec.name, "split": "test"}
csv_request = compute.CsvRequest(map_request(method), tuple((k, str(v)) for k, v in csv_meta.items()))
st.download_button("Embedding and scores (CSV)", lambda: server.wait_for(compute.map_csv, csv_request).encode(),
                   on_click="ignore",
                   file_name=export_name(f"{run.path.name}-{attack_name}-{space}-{method}", "csv"), mime="text/csv",
                   key="lat_csv")


def show_attack_path() -> None:
    """The attack's path, step by step (inside its expander): the map at step k with ‹ / › to step
    and ▶ Play to animate at the chosen speed; beside it, one followed image at step k and its
    perturbation so far."""
    from atld.latent.path_figure import path_figure

    path_n = st.slider("Images to follow", 2, min(40, n_test), min(D.path_images, n_test), key="lat_path_n",
                       help="the first test images; each PGD step is one frame, then IMT's step back (with D)")
    try:
        pm = session.show(compute.attack_path, compute.PathRequest(ref, tuple(range(path_n)), attack_name,
                                                                   float(spec.epsilon), sel.seed))
    except ATLDError as exc:
        st.error(md(exc))
        return
    p = pm.path
    frames = step_names(p.steps, p.imt_logits is not None)
    k = player_step(st.session_state.get("lat_path_k", 0), 0, len(frames))
    b1, b2, b3, b4, b5 = st.columns([1, 1, 3, 2, 3])
    if b1.button("‹", key="lat_path_back", help="one step back", disabled=k == 0):
        k = player_step(k, -1, len(frames))
    if b2.button("›", key="lat_path_next", help="one step on", disabled=k == len(frames) - 1):
        k = player_step(k, +1, len(frames))
    st.session_state["lat_path_k"] = k
    b3.markdown(f"**{frames[k]}** ({k} of {len(frames) - 1})")
    speed = b4.select_slider("Play speed", tuple(PLAYER_SPEEDS), value="normal", key="lat_path_speed",
                             help="time per step when ▶ Play runs the animation in the map")
    shown = [int(i) for i in pm.indices]
    follow = b5.selectbox("Image beside the map", shown, key="lat_path_follow", format_func=lambda i: f"#{i}")
    j = shown.index(follow)
    left, right = st.columns([3, 1])
    left.plotly_chart(path_figure(p, pm.coords, pm.imt_coords, pm.background, pm.background_labels, names,
                                  indices=pm.indices, frame_ms=PLAYER_SPEEDS[speed], start=k, focus=j),
                      key="lat_path", width="stretch")
    frame = path_frame(p, k, j)
    if frame is not None:
        with right:
            mark = "✓" if frame.pred == frame.label else "✗"
            st.image(to_display(frame.image)[0], width=160,
                     caption=md(f"#{follow} at {frames[k]}: {mark} {names[frame.label]}→{names[frame.pred]}"
                                + ("" if frame.d is None else f" · D {frame.d:.2f}")))
            st.image(perturbation_rgb(frame.delta, max(float(spec.epsilon), 1e-6))[0], width=160,
                     caption=md("perturbation so far: blue −ε, grey 0, red +ε; "
                                f"‖δ‖∞ = {np.abs(frame.delta).max():.3f}"))
    st.caption(md(f"{p.attack.label} at ε = {spec.epsilon:.3g} on a PCA map of natural logits (offset removed). "
                  "‹ / › step through it; ▶ Play in the map animates from the step shown. Red-edged crosses: "
                  "misclassified at that step; the black ring: the image beside the map. "
                  "Also: python -m atld embed --trajectories."))


st.divider()
# Drawn only while open: an animation nobody opened would cost every first visit its drawing.
path_box = st.expander("The attack's path, step by step (animation)", key="lat_path_open", on_change="rerun")
with path_box:
    if path_box.open:
        show_attack_path()
    else:
        st.caption("Opening this draws the animation.")

st.divider()
st.subheader("Two checkpoints side by side")
others = [r for r in discover_runs() if r.dataset == spec.name and r.path != run.path]
if not others:
    st.caption("Train or add a second checkpoint of this dataset to compare.")
else:
    labels = [r.label for r in others]
    session.url_setting("lat_other", comparison_run(others + [sel.run], sel.run).label, session.choice(labels))
    other_label = st.selectbox("Compare with", labels, key="lat_other")
    other = others[labels.index(other_label)]
    try:
        pair = session.show(compute.compare_plots, compute.CompareRequest(
            (ref, session.ref_or_stop(other)), (sel.run.label, other.label), map_request(Projection.PCA).latent))
    except ATLDError as exc:
        st.error(md(exc))
        st.stop()
    st.caption(md(side_by_side_caption(pair["explained"], pair["rotated"], space)))
    for col, text, label in zip(st.columns(2), pair["figures"], (sel.run.label, other.label)):
        col.plotly_chart(figure_from_json(text), key=f"lat_cmp_{label}", width="stretch")
    st.markdown("**Gap numbers, side by side**")
    st.table(gap_table({sel.run.label: pair["gaps"][0], other.label: pair["gaps"][1]}).set_index("measure"))
    st.caption(md(f"Both: {settings_text.replace(f'{method.upper()} ({fit_on} fit)', 'PCA')}."))
