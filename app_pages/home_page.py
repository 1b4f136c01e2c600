"""Home: what ATLD is, what each page is for, and the current checkpoint: its verdict first (the
robust accuracy to trust, from the evaluation stored in its card), then its card."""

from __future__ import annotations

import streamlit as st

from atld.ui import server, session
from atld.ui.datasets import availability_rows
from atld.ui.evaluate import NO_VERDICT, headline, verdict_messages
from atld.ui.exports import checkpoint_zip, config_json, export_name
from atld.ui.runs import card_of
from atld.ui.train import curves_figure
from atld.ui.display import card_summary, collapse_note, evaluation_rows, markdown_table, md, metric_columns

# What Home shows of each stored evaluation: enough to read it; the Evaluate page has every field.
HOME_EVALUATION_COLUMNS = {"inference": "inference", "attack": "attack", "protocol": "protocol", "epsilon": "ε",
                           "accuracy": "accuracy %", "ci_low": "95 % CI from", "ci_high": "to", "n": "images"}

st.title("ATLD lab")
st.markdown(
    """
**ATLD** (Adversarial Training with Latent Distribution, Qian et al.) looks at a classifier's
*logits* as a latent space. Natural images form clouds there; adversarial perturbations push their
latents off those clouds. ATLD trains a **discriminator D** to tell natural latents from perturbed
ones, builds its training perturbations to fool D's view the most, and trains the classifier to pull
perturbed latents back onto the natural clouds. At test time, **IMT** (inference with manifold
transformation) nudges an input one step towards "looks natural to D" before classifying it.
"""
)
st.markdown(
    """
| page | what it is for |
|---|---|
| **Train** | configure and launch a run (natural, PGD-AT, ATLD…), watch live curves, stop it |
| **Attack** | attack a few images (FGSM / PGD / CW): perturbation, predictions, D scores, IMT-corrected image |
| **Latent explorer** | natural and perturbed latents in one 2-D map, gap numbers, selections, two checkpoints |
| **Evaluate** | accuracy tables (ATLD-, ATLD, ATLD+ × attacks), accuracy vs ε, why PGD is an upper bound |
| **Learn** | a guided walk through the manifold argument with the live model |
"""
)



def datasets_panel(polling: bool) -> None:
    """What this server has of each dataset; a download button where the lab can fetch the full data.
    Redrawn every second while a download runs (`polling`; the download itself runs in a server
    thread, so nothing here waits for it); a start or an end reruns the whole page (the picker then
    shows the new data)."""
    table = server.dataset_availability()
    st.markdown(markdown_table(availability_rows(table)))
    running = False
    for name, avail in table.items():
        job = server.current_download(name)
        if avail.downloadable and (not avail.full_data or job is not None):
            if job is not None and job.running:
                running = True
                st.progress(job.fraction(), text=md(f"Downloading {name}: {job.text()}"))
                st.button("Cancel", key=f"dl_cancel_{name}", on_click=server.cancel_download, args=(name,))
            elif job is not None and job.error:
                st.error(md(job.text()))
            elif job is not None and job.finished:
                st.success(md(job.text()))
            if not avail.full_data and (job is None or not job.running):
                st.button(f"Download {name}", key=f"dl_data_{name}", on_click=server.start_download, args=(name,),
                          help=md(f"into {session.checked_settings().app_data_root} (ATLD_DATA_ROOT, else the cache)"))
    st.caption("Without the full data the app uses the shipped sample of real test images; training needs the "
               "full data. cifar10-exact cannot be downloaded: start the app with ATLD_DATA_ROOT pointing at it.")
    if running != polling:
        st.rerun()


downloading = server.any_download_running()
with st.expander("Datasets: what this server has, and downloads", expanded=downloading):
    st.fragment(datasets_panel, run_every=1.0 if downloading else None)(downloading)

sel = session.selection()
st.subheader("Current checkpoint")
if sel.run is None:
    st.info("No checkpoint for this dataset yet: train one on the Train page.")
    st.stop()

card = card_of(sel.run.path)  # validated and torch-free: this page must draw fast on a fresh server
if card is None:
    st.error(md(f"{sel.run.path} no longer holds a valid run card."))
    st.stop()
stored = (card.get("evaluations") or {}).get("rows") or []
st.markdown("**Robustness** (the verdict: the lowest accuracy over the attacks that target exactly what is "
            "evaluated; see Evaluate)")
if stored:
    verdict = headline(stored)
    for col, (mode, (value, text)) in zip(st.columns(len(verdict)), verdict.items()):
        col.metric(f"{mode}: robust accuracy", value, help=md(text))
    for level, text in verdict_messages(stored):
        getattr(st, level)(md(text))
else:
    st.warning(md(NO_VERDICT))

summary = card_summary(card)
cols = st.columns(len(summary))
for col, (name, value) in zip(cols, summary.items()):
    col.metric(name, value)
if (note := collapse_note(card)) is not None:
    st.error(md(f"Collapsed run: {note}"))  # the last good epoch's checkpoint is what loads
if card.get("message"):
    st.text(card["message"])  # text from the card: shown as it is, never as Markdown or HTML

metrics = metric_columns(card["metrics"])
shown = [c for c in ("test_clean_acc", "test_pgd20_acc", "train_clean_acc", "train_perturbed_acc", "d_auc")
         if c in metrics]
if shown:
    st.markdown("**Training curves** (per epoch)")
    st.plotly_chart(curves_figure(metrics, shown, height=220), key="home_curves", width="stretch")
evals = evaluation_rows(card.get("evaluations"), HOME_EVALUATION_COLUMNS)
if evals:
    st.markdown("**Evaluations stored in the card** (every field, notes included, on the Evaluate page)")
    st.markdown(markdown_table(evals))

# drawn only when asked for: a card's JSON viewer is a heavy element for every new tab
if st.toggle("Show the full card (card.json)", key="home_full_card"):
    st.json(card, expanded=False)

c1, c2 = st.columns(2)
c1.download_button("Run config (JSON)", config_json(card), file_name=export_name(f"{sel.run.path.name}-config", "json"),
                   mime="application/json", key="dl_config")
c2.download_button("Checkpoint (zip)", lambda: checkpoint_zip(sel.run.path),
                   file_name=export_name(sel.run.path.name, "zip"),
                   mime="application/zip", key="dl_zip", on_click="ignore")
