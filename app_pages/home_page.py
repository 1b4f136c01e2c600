"""Home: what ATLD is, what each page is for, the datasets, "Bring your own model" (a weights file
imported as a lab run, in a compute worker), and the current checkpoint: its verdict first (the
robust accuracy to trust, from the evaluation stored in its card), then its card."""

from __future__ import annotations

import hashlib
import os
import uuid

import streamlit as st

from atld.errors import ATLDError
from atld.runs.importer import NORMALIZATION_CHOICES, SAMPLE_CHECK_IMAGES, SUGGESTED_ARCHITECTURES, default_import_name
from atld.ui import compute, server, session
from atld.ui.datasets import availability_rows
from atld.ui.evaluate import NO_VERDICT, duration_words, headline, verdict_messages
from atld.ui.exports import checkpoint_zip, config_json, export_name
from atld.ui.runs import card_of
from atld.ui.train import curves_figure
from atld.ui.display import card_summary, collapse_note, evaluation_rows, markdown_table, md, metric_columns
from atld.evaluate.dwords import d_score_caption

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

IMPORT_NOTE = "home_import_note"  # session state: (level, text) of the last import, shown after the app's rerun
CUSTOM_NORMALIZATION = NORMALIZATION_CHOICES[-1]  # "MEAN,../STD,..": typed in the text field beside it


def import_panel() -> None:
    """An uploaded weights file, its architecture, dataset and input normalisation; the import runs in
    a compute worker (`compute.import_model`, with progress and Cancel); a refusal is one line; the
    imported run is then selected in the sidebar (marked "imported")."""
    note = st.session_state.pop(IMPORT_NOTE, None)
    if note is not None:
        getattr(st, note[0])(md(note[1]))
    limit_mb = session.checked_settings().upload_mb
    upload = st.file_uploader(f"Weights file (.safetensors, .pt, .pth, .bin; at most {limit_mb} MB)",
                              type=["safetensors", "pt", "pth", "bin"], key="home_upload", max_upload_size=limit_mb,
                              help="a state dict saved with torch.save or safetensors; read without unpickling any "
                                   "code (docs/import.md). The size limit is ATLD_UPLOAD_MB.")
    usable = [name for name, avail in server.dataset_availability().items() if avail.usable]
    c1, c2, c3 = st.columns(3)
    arch = c1.selectbox("Architecture", SUGGESTED_ARCHITECTURES, key="home_import_arch",
                        help="its parameter names and shapes must match the file's (RobustBench's rb-*/dm-* layouts "
                             "or the lab's own)")
    dataset = c2.selectbox("Dataset", usable, key="home_import_dataset", help="what the model classifies")
    norm = c3.selectbox("Input normalisation", NORMALIZATION_CHOICES, key="home_import_norm",
                        help="auto: none for rb-*, the dataset's mean/std otherwise (a file that keeps its own wins); "
                             "the model keeps it inside, so attacks stay in [0, 1] pixels")
    if norm == CUSTOM_NORMALIZATION:
        norm = st.text_input("Mean / std per channel", key="home_import_custom",
                             placeholder="0.4914,0.4822,0.4465/0.2471,0.2435,0.2616")
    if upload is not None and dataset:
        try:
            cost = session.show(compute.work_cost, compute.CostRequest(arch, dataset), slot="home_import_cost")
        except ATLDError as exc:
            st.error(md(exc))
            return
        st.caption(md(f"The import checks the model on up to {SAMPLE_CHECK_IMAGES} sample images: "
                      f"{duration_words(cost['forward'] * SAMPLE_CHECK_IMAGES)} on this CPU; a PGD-20 latent map of "
                      f"100 images {duration_words(cost['latent-map-pgd20'] * 100)} (rough figures from {arch}'s "
                      "size)."))
    if not st.button("Import", key="home_import_go", type="primary", disabled=upload is None or not dataset,
                     help="choose a file first" if upload is None else None):
        return
    if upload.size > limit_mb * 2**20:
        st.error(md(f"Not imported: {upload.name} is {upload.size / 2**20:.0f} MB, over the limit of {limit_mb} MB "
                    "(ATLD_UPLOAD_MB)."))
        return
    data = upload.getvalue()
    folder = session.checked_settings().cache_dir / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{uuid.uuid4().hex}.upload"  # never the uploader's name: it is data, not a path
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as f:
        f.write(data)
    request = compute.ImportRequest(str(path), hashlib.sha256(data).hexdigest(), upload.name, arch, dataset,
                                    str(norm), default_import_name(dataset, upload.name),
                                    str(session.checked_settings().runs_dir))
    del data
    try:
        result = session.show(compute.import_model, request, slot="import_model")
    except ATLDError as exc:
        st.error(md(f"Not imported: {exc}"))
        return
    finally:
        path.unlink(missing_ok=True)
    accuracy = "" if result["accuracy"] is None else \
        f" Clean accuracy on {result['sample']}: {100 * result['accuracy']:.1f} %."
    st.session_state[IMPORT_NOTE] = ("warning" if result["warning"] else "success",
                                     f"Imported {upload.name} as {result['name']} ({arch}, {result['normalization']})."
                                     f"{accuracy} {result['warning'] or 'It is selected in the sidebar.'}")
    st.session_state["atld_pending_run"] = (dataset, f"{result['name']} (imported)")
    st.rerun(scope="app")


with st.expander("Bring your own model: import a weights file", expanded=IMPORT_NOTE in st.session_state):
    import_panel()

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

d_caption = d_score_caption(card.get("discriminator_check"))  # D's stored check: does it judge single images?
if d_caption:
    st.warning(md(d_caption))

summary = card_summary(card)
# Words as one line, numbers as metrics four to a row: eight metrics in one row were cut ("98.…") at 1280 px.
WORD_FACTS = ("method", "dataset", "arch", "status")
st.markdown(" · ".join(f"**{name}** {md(summary[name])}" for name in WORD_FACTS if name in summary)
            + (" · **imported** from " + md((card.get("source") or {}).get("file", "?")) if "source" in card else ""))
numbers = [(name, value) for name, value in summary.items() if name not in WORD_FACTS]
for start in range(0, len(numbers), 4):
    for col, (name, value) in zip(st.columns(4), numbers[start:start + 4]):
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
