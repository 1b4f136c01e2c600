"""Train: configure a run from TrainConfig's fields, launch it off the script thread, watch live
curves, stop it; resume or delete the app's own runs (never a shipped checkpoint, never a run
being trained). The job belongs to the run: the page's address carries the run and its key, so
a reload (or the same address in another tab) finds it again with its curves and its Stop. The
finished run lands in the runs directory and appears in the picker."""

from __future__ import annotations

import time

import streamlit as st

from atld.config.fields import from_widget_values, widgets
from atld.config.train import MAX_EPOCHS, TrainConfig
from atld.errors import ATLDError, DataError
from atld.vocab import METHOD_NAMES
from atld.runs.card import default_run_name
from atld.ui import server, session
from atld.ui.datasets import full_data_needed
from atld.ui.evaluate import D_TRAINING_METRIC
from atld.ui.runs import discover_runs, own_runs
from atld.ui.train import (PRESET_NOTES, PRESETS, curves_figure, method_line, method_title, own_run_label,
                           preset_values, progress_line, resolved_defaults)
from atld.ui.display import md, metrics_frame, status_badge

st.title("Train")
sel = session.selection()
manager = server.current_job_manager()
owner = session.owner_id()


SAVED_KEY = "train_saved"  # the form's last submitted values: the form keeps them after a run


def draw_widget(w, container, defaults: dict[str, str]):
    # The value lives in the session state (set once here, by a preset or by the user), so the
    # form keeps it across runs and presets can change it without Streamlit's double-default warning.
    # A field left empty shows what it becomes (`defaults`: the recipe of the form's dataset and method).
    key = f"train_{w.name}"
    if key not in st.session_state:
        st.session_state[key] = w.initial
    default = defaults.get(w.name)
    if w.kind == "select":
        fmt = method_title if w.name == "method" else (lambda v: v or (f"(default: {default})" if default
                                                                       else "(default)"))
        return container.selectbox(w.label, w.spec.options, key=key, help=w.help, format_func=fmt)
    if w.kind == "bool":
        return container.checkbox(w.label, key=key, help=w.help)
    shown_help = f"{w.help} (default: {w.initial})" if w.kind in ("int", "float") else w.help
    if w.kind == "int":
        return container.number_input(w.label, step=1, key=key, help=shown_help)
    if w.kind == "float":
        return container.number_input(w.label, format="%.6g", key=key, help=shown_help)
    return container.text_input(w.label, key=key, help=w.help,
                                placeholder=f"default: {default}" if default else "empty: the default")


def apply_preset(name: str) -> None:
    for field, value in preset_values(name, TrainConfig).items():
        st.session_state[f"train_{field}"] = value
    if name in PRESET_NOTES:
        st.session_state["train_preset_note"] = PRESET_NOTES[name]


def training_data(dataset: str):
    """The dataset's full data for training (the shipped sample is only for attacks and maps)."""
    data = server.training_data(dataset)
    if data.sample:
        raise DataError(full_data_needed(dataset, len(data.y_test)))
    return data


def delete_run(name: str) -> None:
    try:
        manager.delete(name, key=session.owner_key(name))
    except ATLDError as exc:
        st.session_state["train_notice"] = ("error", f"not deleted: {exc}")
    else:
        st.session_state["train_notice"] = ("success", f"Deleted run `{name}` and its files.")
        remembered = st.session_state.get(session.JOB_KEY)
        if remembered and remembered[0] == name:  # the panel of a deleted run's job goes too
            st.session_state.pop(session.JOB_KEY)
            for param in ("run", "key"):
                st.query_params.pop(param, None)
    st.session_state.pop("train_confirm_delete", None)


def live_panel(job) -> None:
    """Progress, curves and Stop for `job`; reruns itself every second while the job runs."""
    job.seen()  # someone is watching: the unwatched-job time limit starts again
    running = job.running
    st.markdown(f"**Run `{job.name}`** — {status_badge(job.status)}"
                + (f" · epoch {min(job.epochs_done + 1, job.config.epochs)}/{job.config.epochs}" if running else ""))
    if running:
        frac = (job.epochs_done + (job.step / job.steps if job.steps else 0)) / job.config.epochs
        n_train = None if job.steps else len(server.training_data(job.config.dataset).y_train)
        st.progress(min(frac, 1.0), text=progress_line(job.epochs_done, job.config.epochs, job.step, job.steps,
                                                       n_train, job.config.resolved_batch_size))
        if st.button("Stop", key="train_stop", type="primary",
                     help="stops after the current step; the last finished epoch stays saved"):
            job.stop()
            st.toast("Stopping after the current step…")
    if job.error:
        st.error(md(job.error))
    if job.note:
        st.info(md(job.note))
    frame = metrics_frame(job.metrics)
    if frame.empty:
        st.caption("Curves appear after the first epoch.")
    else:
        groups = {"losses": [c for c in frame if c.startswith("loss")],
                  "accuracy": [c for c in ("test_clean_acc", "test_pgd20_acc", "train_clean_acc",
                                            "train_perturbed_acc") if c in frame],
                  "discriminator": [c for c in ("d_acc", "d_auc") if c in frame]}
        cols = st.columns(3)
        for col, (title, names) in zip(cols, groups.items()):
            if names:
                col.plotly_chart(curves_figure(frame, names, title), key=f"train_curve_{title}", width="stretch")
            else:
                col.markdown(f"**{title}**")
                col.caption("not recorded by this method")
        if groups["discriminator"]:
            cols[2].caption(D_TRAINING_METRIC)
    if not running and st.session_state.get("train_seen_done") != job.id:
        # The run just ended: rerun the whole app once so the picker lists it (and selects it).
        st.session_state["train_seen_done"] = job.id
        if job.epochs_done > 0:
            st.session_state["atld_pending_run"] = (job.config.dataset, f"{job.name} (runs)")
        st.rerun(scope="app")


job = session.attached_job(manager)
if job is not None:
    st.subheader("Your run")
    st.fragment(live_panel, run_every=1.0 if job.running else None)(job)
    if not job.running and job.status in ("finished", "stopped") and job.epochs_done:
        st.success(f"Run `{job.name}` {job.status} after {job.epochs_done} epoch(s); "
                   "it is selected in the sidebar picker.")
others = [j for j in manager.running() if job is None or j.id != job.id]
if others:
    st.caption("Also training on this server: " + ", ".join(
        md(f"{j.name} (epoch {j.epochs_done + 1}/{j.config.epochs})") for j in others))

if job is None or not job.running:
    st.subheader("New run")
    saved = st.session_state.get(SAVED_KEY) or {}
    form_widgets = widgets(TrainConfig, {"dataset": sel.dataset, "seed": sel.seed})
    for w in form_widgets:  # after a run the form was not drawn: bring back what was submitted
        if w.name in saved and f"train_{w.name}" not in st.session_state:
            st.session_state[f"train_{w.name}"] = saved[w.name]
    p1, p2 = st.columns(2)
    for col, name in zip((p1, p2), PRESETS):
        col.button(f"Preset: {name.lower()}", key=f"train_preset_{name}", on_click=apply_preset, args=(name,),
                   help="fills the form; change anything before starting")
    if (note := st.session_state.pop("train_preset_note", None)) is not None:
        st.info(md(note))
    # the dataset the form holds (a preset may have changed it), not only the sidebar's: said before Start
    form_dataset = st.session_state.get("train_dataset") or sel.dataset
    avail = server.dataset_availability().get(form_dataset)
    if avail is not None and not avail.full_data:
        st.warning(md(f"{full_data_needed(form_dataset)} Start would fail: choose digits (it ships with the app) "
                      "or press *Preset: quick demo*."))
    with st.expander("Which method? (one line each)"):
        st.markdown("\n".join(f"- {method_line(name)}" for name in METHOD_NAMES))  # the methods table's own text
    defaults = resolved_defaults(TrainConfig, {"dataset": form_dataset, "method": st.session_state.get("train_method")})
    with st.form("train_form"):
        values = {}
        main_cols = st.columns(2)
        mains = [w for w in form_widgets if w.spec.main]
        for i, w in enumerate(mains):
            values[w.name] = draw_widget(w, main_cols[i % 2], defaults)
        with st.expander("Advanced settings (optimiser, discriminator, evaluation, hardware)"):
            for w in form_widgets:
                if not w.spec.main:
                    values[w.name] = draw_widget(w, st, defaults)
        run_name = st.text_input("Run name (letters, digits, '.', '_', '-'; empty: automatic)", key="train_name")
        submitted = st.form_submit_button("Start training", type="primary", key="train_start")
    limit = manager.unwatched_seconds / 60
    st.caption(md(f"Runs are saved under {manager.runs_dir}. One run per browser session; the server runs at most "
                  f"{manager.max_jobs} at a time; a run nobody watches for {limit:.3g} min stops (its last epoch "
                  "stays saved). Reloading this page keeps your run."))
    if submitted:
        st.session_state[SAVED_KEY] = dict(values)
        try:
            config = from_widget_values(TrainConfig, values)
            name = run_name.strip() or default_run_name(config.dataset, config.method, time.strftime("%Y%m%d-%H%M%S"))
            session.remember_job(manager.start(owner, config, name, data=training_data(config.dataset)))
        except ATLDError as exc:
            st.error(md(exc))
        else:
            st.rerun()


notice = st.session_state.pop("train_notice", None)
# only the runs this session holds a key for (cheap with thousands of runs), checked against their owner file
held = [r for r in discover_runs() if session.owner_key(r.path.name)]
mine = [r for r in own_runs(held, manager.runs_dir) if session.owns_run(r.path)]  # the others are read-only here
if mine or notice:
    st.subheader("Your runs")
if notice:
    getattr(st, notice[0])(md(notice[1]))
if mine:
    st.caption(md(f"Runs in {manager.runs_dir} that this browser session started (or whose page address with its "
                  "key you opened). Runs of other sessions, runs trained with `python -m atld train` and shipped "
                  "checkpoints are read-only here; a run being trained can be neither resumed nor deleted."))
    names = [r.path.name for r in mine]
    by_name = {r.path.name: r for r in mine}
    # plain names as options: a label that changes (epochs, status) would make a new widget
    picked = st.selectbox("Run", names, key="train_own_run")
    entry = by_name[picked]
    busy = manager.is_training(picked)
    st.caption(md(own_run_label(entry, busy)))
    c1, c2, c3 = st.columns([2, 1, 1], vertical_alignment="bottom")
    more = c1.number_input("Resume to epochs (in all)", min_value=min(entry.epochs_done + 1, MAX_EPOCHS),
                           max_value=MAX_EPOCHS, value=min(entry.epochs_done + 1, MAX_EPOCHS), step=1,
                           key=f"train_resume_epochs_{picked}",
                           help="continues the run with its own settings from its last finished epoch")
    if c2.button("Resume", key="train_resume", disabled=busy or (job is not None and job.running),
                 help="one run per browser session at a time"):
        try:
            session.remember_job(manager.resume(owner, picked, int(more), data=training_data(entry.dataset),
                                                key=session.owner_key(picked)))
        except ATLDError as exc:
            st.error(md(f"not resumed: {exc}"))
        else:
            st.session_state.pop("train_seen_done", None)
            st.rerun()
    if c3.button("Delete…", key="train_delete", disabled=busy, help="asks for confirmation first"):
        st.session_state["train_confirm_delete"] = picked
    if st.session_state.get("train_confirm_delete") == picked:
        st.warning(md(f"Delete run `{picked}` ({entry.epochs_done} epoch(s)) and all its files? "
                      "This cannot be undone."))
        y, n, _ = st.columns([1, 1, 4])
        if y.button("Yes, delete", key="train_delete_yes", type="primary"):
            delete_run(picked)
            st.rerun(scope="app")  # the sidebar's picker drops it too
        if n.button("Cancel", key="train_delete_no"):
            st.session_state.pop("train_confirm_delete", None)
            st.rerun()
