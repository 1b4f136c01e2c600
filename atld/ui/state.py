"""The Streamlit-bound part of the app: the settings check, cached loaders, the sidebar selection
kept across pages, the process-wide job manager and the UMAP warm-up thread.

Caching: models are `st.cache_resource` (one copy per process, keyed by path + model hash so a
retrained run is never served stale); arrays are `st.cache_data` in the pages' compute helpers."""

from __future__ import annotations

import os
import threading
import uuid
from dataclasses import dataclass

import streamlit as st

from atld.config.settings import Settings, settings
from atld.errors import SEED_LIMIT, ATLDError
from atld.ui.runs import RunEntry, discover_runs
from atld.ui.views import md, status_badge

SELECTION_KEY = "atld_selection"


@dataclass(frozen=True)
class Selection:
    """What the sidebar chose; every page reads it."""
    run: RunEntry | None  # None when no checkpoint exists for the dataset
    dataset: str
    seed: int  # seeds attacks' random starts and subsampling on every page


def checked_settings() -> Settings:
    """The validated environment; a bad ATLD_* variable stops the page with one line."""
    try:
        return settings()
    except ATLDError as exc:
        st.error(md(exc))
        st.stop()


def configure_torch() -> None:
    """One intra-op thread per computation by default: the server shares its cores between
    browser sessions and training threads, and on a busy 2-core machine two spinning threads per
    op made a PGD-20 call 7x slower than one. ATLD_TORCH_THREADS overrides it."""
    import torch

    threads = settings().torch_threads
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


@st.cache_resource(show_spinner="Loading the checkpoint…", max_entries=8)
def get_run(path: str, model_hash: str):
    """The checkpoint at `path` (models on the CPU, eval mode); `model_hash` keys the cache."""
    from atld.runs.store import load_checkpoint

    configure_torch()
    return load_checkpoint(path, device="cpu")


@st.cache_resource(show_spinner="Loading the dataset…", max_entries=4)
def get_data(dataset: str):
    """The dataset's tensors (digits ship with scikit-learn; others need ATLD_DATA_ROOT)."""
    from atld.data.loaders import load_dataset

    configure_torch()
    return load_dataset(dataset, settings().data_root)


@st.cache_resource
def job_manager(directory: str):
    """One JobManager per process and runs directory: the server-wide cap (ATLD_MAX_JOBS,
    default 1) and the unwatched-job time limit hold across all browser sessions."""
    from atld.jobs import JobManager

    return JobManager(directory)


def current_job_manager():
    return job_manager(str(settings().runs_dir))


JOB_KEY = "atld_job"  # session state: (run name, key) of the job this session watches


def remember_job(job) -> None:
    """Keep the job's run and key in the session and in the page's address: a reload, or the same
    address in another tab, finds the job again (`attached_job`)."""
    st.session_state[JOB_KEY] = (job.name, job.key)
    st.query_params.update(run=job.name, key=job.key)


def attached_job(manager):
    """The job this session started or whose run and key the address carries, or None."""
    name, key = st.session_state.get(JOB_KEY) or (st.query_params.get("run"), st.query_params.get("key"))
    job = manager.attach(name, key) if name and key else None
    if job is not None:
        remember_job(job)
    return job


def owner_id() -> str:
    """A stable id for this browser session (one training job per owner)."""
    if "atld_owner" not in st.session_state:
        st.session_state["atld_owner"] = uuid.uuid4().hex
    return st.session_state["atld_owner"]


def _lower_this_threads_priority() -> None:
    """Give the calling thread the lowest CPU priority (Linux nice values are per thread), so
    background work yields the cores to the pages' computations. Best effort elsewhere."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    except (AttributeError, OSError):
        pass


# Imported in the background after the first page is drawn, so the next page finds them loaded.
PRELOAD = ("torch", "atld.runs.store", "atld.attacks", "atld.inference", "atld.latent", "atld.evaluate",
           "atld.jobs", "plotly.graph_objects", "pandas")


@st.cache_resource
def background_start() -> dict:
    """Once per process, in a daemon thread: import the heavy modules (PRELOAD), then start
    UMAP's one-time JIT compilation (about 40 s on 2 cores) so that the first real UMAP on the
    Latent page does not pay for it. ATLD_UMAP_WARMUP=0 skips the warm-up (tests).
    Returns {"preloaded": Event, "umap": Event, "error": str | None}."""
    import importlib

    status = {"preloaded": threading.Event(), "umap": threading.Event(), "error": None}
    current = settings()
    warm = current.umap_warmup
    if not current.preload:  # benchmarks: measure without the background work
        status["preloaded"].set()
        status["umap"].set()
        return status

    def work():
        try:
            for name in PRELOAD:
                importlib.import_module(name)
            configure_torch()
            status["preloaded"].set()
            if warm:
                from atld.latent import warm_up_umap

                _lower_this_threads_priority()  # the compile must not slow what the user waits for
                warm_up_umap()
        except Exception as exc:  # noqa: BLE001 - a failed warm-up only costs time later
            status["error"] = f"{type(exc).__name__}: {exc}"
        finally:
            status["preloaded"].set()
            status["umap"].set()

    threading.Thread(target=work, name="atld-preload", daemon=True).start()
    return status


def sidebar() -> Selection:
    """Draw the dataset / checkpoint / seed pickers (the app's entry script calls this on every
    rerun, so the widgets and their values persist across pages) and store the selection."""
    checked_settings()
    runs = discover_runs()
    pending = st.session_state.pop("atld_pending_run", None)
    if pending is not None and any(r.label == pending[1] for r in runs):
        # A run just finished on the Train page: select it (before the widgets are drawn).
        st.session_state["atld_dataset"], st.session_state["atld_run"] = pending
    with st.sidebar:
        st.markdown("### Checkpoint")
        datasets = list(dict.fromkeys(["digits", *(r.dataset for r in runs)]))  # shipped digits first
        dataset = st.selectbox("Dataset", datasets, key="atld_dataset",
                               help="datasets with at least one checkpoint (digits ships with the app)")
        mine = [r for r in runs if r.dataset == dataset]
        labels = [r.label for r in mine]
        if labels:
            preferred = next((r.label for r in mine if r.method == "atld"), labels[0])
            if st.session_state.get("atld_run") not in labels:
                st.session_state["atld_run"] = preferred
            label = st.selectbox("Checkpoint", labels, key="atld_run",
                                 help="shipped checkpoints and the runs you trained (runs directory)")
            run = mine[labels.index(label)]
            st.caption(md(f"{run.method} · {run.epochs_done} epochs · {status_badge(run.status)}"
                          + (" · has D" if run.has_discriminator else " · no discriminator")))
        else:
            run = None
            st.info("No checkpoint for this dataset yet: train one on the Train page.")
        seed = st.number_input("Seed", min_value=0, max_value=SEED_LIMIT - 1, value=0, step=1, key="atld_seed",
                               help="seeds random starts of attacks and subsampling on every page")
    selection = Selection(run, dataset, int(seed))
    st.session_state[SELECTION_KEY] = selection
    return selection


def selection() -> Selection:
    """The sidebar's current choice (pages call this)."""
    sel = st.session_state.get(SELECTION_KEY)
    return sel if sel is not None else sidebar()


def require_run(sel: Selection):
    """The loaded checkpoint of the selection, or stop the page with a hint."""
    if sel.run is None:
        st.info("Choose or train a checkpoint first (sidebar / Train page).")
        st.stop()
    try:
        return get_run(str(sel.run.path), sel.run.model_hash)
    except ATLDError as exc:  # e.g. a checkpoint from an older architecture: say why, in one line
        st.error(md(f"cannot load {sel.run.label}: {exc}"))
        st.stop()
