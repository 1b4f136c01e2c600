"""Train: configure a run from TrainConfig's fields, launch it off the script thread, watch live
curves, stop it. The finished run lands in the runs directory and appears in the picker."""

from __future__ import annotations

import time

import streamlit as st

from atld.errors import ATLDError
from atld.ui import state
from atld.ui.forms import config_from_values, default_run_name, field_widgets
from atld.ui.runs import runs_dir
from atld.ui.views import metrics_frame

st.title("Train")
sel = state.selection()
manager = state.current_job_manager()
owner = state.owner_id()


def draw_widget(w, container):
    key = f"train_{w.name}"
    if w.kind == "select":
        return container.selectbox(w.label, w.options, index=w.options.index(w.default), key=key)
    if w.kind == "bool":
        return container.checkbox(w.label, value=w.default, key=key)
    if w.kind == "int":
        return container.number_input(w.label, value=w.default, step=1, key=key)
    if w.kind == "float":
        return container.number_input(w.label, value=w.default, format="%.6g", key=key)
    return container.text_input(w.label, value=w.default, key=key)


def live_panel(job) -> None:
    """Progress, curves and Stop for `job`; reruns itself every second while the job runs."""
    running = job.running
    st.markdown(f"**Run `{job.run_dir.name}`** — {job.status}"
                + (f" · epoch {min(job.epochs_done + 1, job.config.epochs)}/{job.config.epochs}" if running else ""))
    if running:
        frac = (job.epochs_done + (job.step / job.steps if job.steps else 0)) / job.config.epochs
        st.progress(min(frac, 1.0), text=f"{job.epochs_done} of {job.config.epochs} epochs done, "
                                         f"step {job.step}/{job.steps or '?'}")
        if st.button("Stop", key="train_stop", type="primary",
                     help="stops after the current step; the last finished epoch stays saved"):
            job.stop()
            st.toast("Stopping after the current step…")
    if job.error:
        st.error(job.error)
    frame = metrics_frame(job.metrics)
    if frame.empty:
        st.caption("Curves appear after the first epoch.")
    else:
        groups = {"losses": [c for c in frame if c.startswith("loss") or c.endswith("_loss") or c.startswith("l_")],
                  "accuracy": [c for c in ("test_clean_acc", "test_pgd20_acc", "train_clean_acc",
                                            "train_perturbed_acc") if c in frame],
                  "discriminator": [c for c in ("d_acc", "d_auc") if c in frame]}
        cols = st.columns(3)
        for col, (title, names) in zip(cols, groups.items()):
            col.markdown(f"**{title}**")
            if names:
                col.line_chart(frame, x="epoch", y=names, height=220)
            else:
                col.caption("not recorded by this method")
    if not running and st.session_state.get("train_seen_done") != job.id:
        # The run just ended: rerun the whole app once so the picker lists it (and selects it).
        st.session_state["train_seen_done"] = job.id
        if job.epochs_done > 0:
            st.session_state["atld_pending_run"] = (job.config.dataset, f"{job.run_dir.name} (runs)")
        st.rerun(scope="app")


job = manager.job_of(owner)
if job is not None:
    st.subheader("Your run")
    st.fragment(live_panel, run_every=1.0 if job.running else None)(job)
    if not job.running:
        if job.status in ("finished", "stopped") and job.epochs_done:
            st.success(f"Run `{job.run_dir.name}` {job.status} after {job.epochs_done} epoch(s); "
                       "it is selected in the sidebar picker.")

if job is None or not job.running:
    st.subheader("New run")
    widgets = field_widgets({"dataset": sel.dataset, "seed": sel.seed})
    with st.form("train_form"):
        values = {}
        main_cols = st.columns(2)
        mains = [w for w in widgets if w.main]
        for i, w in enumerate(mains):
            values[w.name] = draw_widget(w, main_cols[i % 2])
        with st.expander("Advanced settings (every TrainConfig field)"):
            for w in widgets:
                if not w.main:
                    values[w.name] = draw_widget(w, st)
        run_name = st.text_input("Run name (letters, digits, '.', '_', '-'; empty: automatic)", key="train_name")
        submitted = st.form_submit_button("Start training", type="primary", key="train_start")
    st.caption(f"Runs are saved under `{runs_dir()}`. One run per browser session; the server runs at most "
               f"{manager.max_jobs} at a time.")
    if submitted:
        try:
            config = config_from_values(values)
            name = run_name.strip() or default_run_name(config, time.strftime("%Y%m%d-%H%M%S"))
            data = state.get_data(config.dataset)
            manager.start(owner, config, name, data=data)
        except ATLDError as exc:
            st.error(str(exc))
        else:
            st.rerun()
