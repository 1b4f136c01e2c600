"""Latent explorer: natural and perturbed latents in one 2-D map (PCA at once, UMAP on request),
coloured by class × natural/perturbed, by D score or by correctness; box/lasso selection shows the
selected images; gap numbers computed in latent space beside the plot; a second checkpoint side
by side on its own natural map; CSV export (the same file as `python -m atld embed`)."""

from __future__ import annotations

import numpy as np
import streamlit as st

from atld.attacks.registry import PERTURBATION_NAMES
from atld.config.vocab import ColorBy, FitMode, LatentSpace, PointSet, Projection
from atld.errors import ATLDError
from atld.latent.maps import map_csv, points_frame
from atld.ui import cached, state
from atld.ui.latent_view import COLOR_MODES, LATENT_DEFAULTS, gap_summary, selected_ids
from atld.ui.exports import export_name
from atld.ui.runs import comparison_run, discover_runs
from atld.ui.views import md, to_display

st.title("Latent explorer")
sel = state.selection()
run = state.require_run(sel)
spec = run.spec
names = spec.labels()
n_test = len(state.get_data(spec.name).y_test)

c1, c2, c3, c4 = st.columns(4)
D = LATENT_DEFAULTS
attack_name = c1.selectbox("Attack", PERTURBATION_NAMES[1:], index=PERTURBATION_NAMES[1:].index(D.attack),
                           key="lat_attack", help=f"at the dataset's ε = {spec.epsilon:.4g}, step ε/4")
n = c2.select_slider("Test images", sorted({100, 200, 300, min(450, n_test), min(1000, n_test), min(2000, n_test),
                                           n_test}), value=min(D.n, n_test), key="lat_n",
                     help="the first N test images (2N points)")
spaces, colors = tuple(s.value for s in LatentSpace), tuple(c.value for c in COLOR_MODES)
space = c3.radio("Latent", spaces, index=spaces.index(D.space), key="lat_space", horizontal=True,
                 help="logits: what ATLD's D sees; features: the penultimate layer")
color_by = c4.selectbox("Colour by", colors, index=colors.index(D.color_by), key="lat_color",
                        help="D score needs a checkpoint with a discriminator")
c5, c6 = st.columns(2)
fits, projections = (FitMode.JOINT.value, FitMode.NATURAL.value), (Projection.PCA.value, Projection.UMAP.value)
fit_on = c5.radio("Map", fits, index=fits.index(D.fit_on), key="lat_fit", horizontal=True,
                  format_func={FitMode.JOINT: "joint fit (both clouds)",
                               FitMode.NATURAL: "natural map (perturbed projected onto it)"}.get)
method = c6.radio("Projection", projections, index=projections.index(D.projection), key="lat_method", horizontal=True,
                  format_func={Projection.PCA: "PCA (instant)", Projection.UMAP: "UMAP (on request)"}.get)

umap_key = ("umap", str(run.path), n, attack_name, space, fit_on, sel.seed)
key = (str(run.path), run.model_hash, int(n), attack_name, float(spec.epsilon), sel.seed, space)
if method == Projection.UMAP and st.session_state.get("lat_umap_ok") != umap_key \
        and not cached.map_ready(*key, method, fit_on):
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


try:
    m = cached.latent_map(*key, method, fit_on, on_cancel=forget_umap)
    figure = cached.latent_plot(*key, method, fit_on, color_by)
except ATLDError as exc:
    st.error(md(exc))
    st.stop()

table = points_frame(m.coords, m.latents, names)
left, right = st.columns([3, 1])
with left:
    st.caption(md(f"{run.name}: accuracy {100 * m.latents.accuracy_nat:.1f} % natural, "
                  f"{100 * m.latents.accuracy_pert:.1f} % under {attack_name}.")
               + " Circles: natural; crosses: perturbed. Drag to box-select, or pick the lasso in the toolbar.")
    event = st.plotly_chart(figure, key="lat_plot", on_select="rerun",
                            selection_mode=("points", "box", "lasso"), width="stretch")
with right:
    st.markdown("**Gap, in latent space**")
    for name, value, meaning in gap_summary(m.gap):
        st.metric(name, value, help=meaning)
        st.caption(meaning)
state.show_discriminator_check(run, sel.seed)

ids = selected_ids(event.selection if event is not None else None)
st.subheader(f"Selection ({len(ids)} points)")
if not ids:
    st.caption("Select points on the map (box or lasso) to see their images here.")
else:
    rows = table.loc[ids]
    shown = rows.head(24)
    images_nat, images_pert = m.latents.images_nat.numpy(), m.latents.images_pert.numpy()
    perturbed = (shown["set"] == PointSet.PERTURBED).to_numpy()[:, None, None, None]
    pics = to_display(np.where(perturbed, images_pert[shown["index"].values], images_nat[shown["index"].values]))
    cols = st.columns(8)
    for j, (_, row) in enumerate(shown.iterrows()):
        d = "" if np.isnan(row["d_natural"]) else f" · D {row['d_natural']:.2f}"
        caption = f"{row['set'][:4]} #{row['index']}: {row['label_name']}→{row['pred_name']}{d}"
        cols[j % 8].image(pics[j], caption=caption)
    if len(rows) > len(shown):
        st.caption(f"showing the first {len(shown)} of {len(rows)} selected points")
    st.dataframe(rows.reset_index(names="id")[["id", "set", "index", "label_name", "pred_name", "correct",
                                               "d_natural"]], hide_index=True, width="stretch", height=200)

csv_meta = {"checkpoint": str(run.path), "model_sha256": run.model_hash, "method_trained": run.config.method,
            "dataset": spec.name, "split": "test"}
st.download_button("Embedding and scores (CSV)", lambda: map_csv(m, csv_meta, names).encode(), on_click="ignore",
                   file_name=export_name(f"{run.path.name}-{attack_name}-{space}-{method}", "csv"), mime="text/csv",
                   key="lat_csv")

st.divider()
st.subheader("Two checkpoints side by side, each on its own natural map")
others = [r for r in discover_runs() if r.dataset == spec.name and r.path != run.path]
if not others:
    st.caption("Train or add a second checkpoint of this dataset to compare.")
else:
    default = others.index(comparison_run(others + [sel.run], sel.run))
    other_label = st.selectbox("Compare with", [r.label for r in others], index=default, key="lat_other")
    other = others[[r.label for r in others].index(other_label)]
    cols = st.columns(2)
    for col, entry in zip(cols, (sel.run, other)):
        k = (str(entry.path), entry.model_hash, int(n), attack_name, float(spec.epsilon), sel.seed, space)
        mm = cached.latent_map(*k, Projection.PCA.value, FitMode.NATURAL.value)
        with col:
            st.plotly_chart(cached.latent_plot(*k, Projection.PCA.value, FitMode.NATURAL.value, ColorBy.CLASS,
                                               entry.label, LATENT_DEFAULTS.compare_height),
                            key=f"lat_cmp_{entry.label}", width="stretch")
            st.caption(" · ".join(f"{name} {value}" for name, value, _ in gap_summary(mm.gap)))
