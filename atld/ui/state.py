"""The Streamlit-bound part of the app: the settings check, cached loaders, the sidebar selection
kept across pages, the process-wide job manager and compute service, and the start-up work.

Caching: models are `st.cache_resource` (one copy per process, keyed by path + model hash so a
retrained run is never served stale); what the pages compute goes through the compute service
(`compute`: one pool of workers for the whole server, results shared by all sessions, see
`atld.ui.service`)."""

from __future__ import annotations

import gc
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import streamlit as st

from atld.config.settings import Settings, settings
from atld.errors import SEED_LIMIT, ATLDError
from atld.ui.runs import RunEntry, datasets_in_order, discover_runs, preferred_run
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


# Imported in the background after the first page is drawn, so the next page finds them loaded.
PRELOAD = ("torch", "atld.runs.store", "atld.attacks", "atld.inference", "atld.latent", "atld.evaluate",
           "atld.jobs", "atld.ui.compute", "plotly.graph_objects", "pandas")


@st.cache_resource
def compute_service():
    """The server's one compute service (ATLD_WORKERS workers of ATLD_WORKER_KIND, results
    shared by all sessions up to ATLD_RESULT_CACHE_MB). Its workers start at once; each loads
    UMAP's compiled code when it is idle (ATLD_UMAP_WARMUP)."""
    from atld.ui import compute as views
    from atld.ui.service import ComputeService

    current = settings()
    service = ComputeService(current.workers, current.worker_kind, max_bytes=current.result_cache_mb * 2**20,
                             context=str(current.data_root))
    if current.umap_warmup:
        service.on_worker_start = lambda wid: [(views.warm_up, (False,))]
    return service.start()


QUIET_S = 0.15  # a result within this is drawn without a progress bar (no flash for fast views)


def compute(view, args: tuple, *, slot: str, label: str, cancellable: bool = False,
            on_cancel: Callable[[], None] | None = None):
    """`view(*args)` through the compute service, for this session's `slot`: a result computed
    before (by anyone) returns at once; otherwise a progress bar shows what the computation
    reports, with a Cancel button when `cancellable` (`on_cancel` then runs, e.g. to reset the
    widget that asked for it). Raises the computation's error (ATLDError: one line for the page)."""
    from atld.progress import Cancelled
    from atld.ui.service import Superseded

    service = compute_service()
    slot_id = (owner_id(), slot)
    ticket = service.submit(view, args, slot=slot_id, interrupt=cancellable or None)
    if not ticket.wait(QUIET_S):
        box = st.empty()
        with box.container():
            bar = st.progress(0.0, text=label)
            if cancellable:
                st.button("Cancel", key=f"atld_cancel_{slot}", on_click=_cancel, args=(slot_id, on_cancel))
        while not ticket.wait(0.25):  # each update lets Streamlit stop this run for a newer one
            fraction, text = ticket.progress()
            bar.progress(fraction, text=md(f"{label} {text} · {ticket.seconds():.0f} s"))
        box.empty()
    try:
        return ticket.result()
    except (Cancelled, Superseded):
        st.caption("Cancelled.")
        st.stop()


def _cancel(slot_id, on_cancel) -> None:
    compute_service().cancel(slot_id)
    if on_cancel is not None:
        on_cancel()


@st.cache_resource
def background_start() -> dict:
    """Once per process, after the first page is drawn: start the compute workers and, in a
    daemon thread, import the heavy modules (PRELOAD; at normal priority: a page that needs one
    waits for the import) and queue the default views of the checkpoint
    the sidebar picks first (ATLD_PREWARM), as background work that yields to every request.
    ATLD_PRELOAD=0 skips all of it (benchmarks of the bare start).
    Returns {"preloaded": Event, "prewarmed": Event, "error": str | None}."""
    import importlib

    status = {"preloaded": threading.Event(), "prewarmed": threading.Event(), "error": None}
    current = settings()
    if not current.preload:
        status["preloaded"].set()
        status["prewarmed"].set()
        return status

    service = compute_service()  # created here, in a script thread: its workers start now

    def work():
        try:
            for name in PRELOAD:
                importlib.import_module(name)
            configure_torch()
            # The modules' objects live as long as the server: keep the garbage collector from
            # scanning them again in every full collection (milliseconds instead of ~0.3 s).
            gc.collect()
            gc.freeze()
            status["preloaded"].set()
            if current.prewarm:
                prewarm(service)
        except Exception as exc:  # noqa: BLE001 - failed background work only costs time later
            status["error"] = f"{type(exc).__name__}: {exc}"
        finally:
            status["preloaded"].set()
            status["prewarmed"].set()

    threading.Thread(target=work, name="atld-preload", daemon=True).start()
    return status


def prewarm(service) -> list:
    """Queue the default views (`atld.ui.compute.default_requests`) as background requests;
    returns their tickets."""
    from atld.ui import compute as views
    from atld.ui.service import BACKGROUND

    runs = discover_runs()
    if not runs:
        return []
    dataset = datasets_in_order(runs)[0]
    n_test = service.submit(views.test_size, (dataset,), priority=BACKGROUND).result()
    return [service.submit(v, args, priority=BACKGROUND) for v, args in views.default_requests(runs, n_test)]


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
        dataset = st.selectbox("Dataset", datasets_in_order(runs), key="atld_dataset",
                               help="datasets with at least one checkpoint (digits ships with the app)")
        mine = [r for r in runs if r.dataset == dataset]
        labels = [r.label for r in mine]
        if labels:
            if st.session_state.get("atld_run") not in labels:
                st.session_state["atld_run"] = preferred_run(runs, dataset).label
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


D_CHECK_IMAGES = 200  # test images of the discriminator check on the pages that show D scores


def show_discriminator_check(run, seed: int) -> None:
    """Where a page shows D's scores, say how well D separates natural from adversarial latents in
    eval mode (beside the card's training metric) and how often ATLD+ is unsure, in plain words."""
    if run.discriminator is None:
        return
    from atld.ui import cached
    from atld.ui.evaluate_view import discriminator_messages

    check = cached.discriminator_check(str(run.path), run.model_hash, D_CHECK_IMAGES, seed)
    for level, text in discriminator_messages(check):
        getattr(st, level)(md(text))
