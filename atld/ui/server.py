"""What the app's server holds for every session (Streamlit-bound, one per process): the compute
service, the training jobs, the dataset downloads, the training data of those jobs, and the
start-up work. Per-session state (the selection, the address, ownership) is `atld.ui.session`.

Where work runs (docs/layout.md, "The compute wing"): a page's script thread draws and waits; the
compute service's worker processes compute every view; server threads run training jobs and
downloads; a low-priority server thread does the start-up work."""

from __future__ import annotations

import contextlib
import gc
import threading
import time

import streamlit as st

from atld.config.settings import settings
from atld.ui.runs import RunEntry, default_run, discover_runs


def configure_torch() -> None:
    """One intra-op thread per computation by default: the server shares its cores between
    browser sessions and training threads, and on a busy 2-core machine two spinning threads per
    op made a PGD-20 call 7x slower than one. ATLD_TORCH_THREADS overrides it."""
    import torch

    threads = settings().torch_threads
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


# ---------------------------------------------------------------------- the compute service

@st.cache_resource
def compute_service():
    """The server's one compute service (ATLD_WORKERS workers of ATLD_WORKER_KIND, results
    shared by all sessions up to ATLD_RESULT_CACHE_MB, the views' on disk under
    $ATLD_CACHE/views). Its workers start at once."""
    from atld.ui.compute import app_service

    return app_service().start()


def wait_for(view, request):
    """`view(request)`'s result, waiting without drawing anything (e.g. a download button's data,
    made outside the page's script)."""
    return compute_service().submit(view, (request,)).result()


# ---------------------------------------------------------------------- training jobs and their data

@st.cache_resource
def job_manager(directory: str):
    """One JobManager per process and runs directory: the server-wide cap (ATLD_MAX_JOBS,
    default 1) and the unwatched-job time limit hold across all browser sessions."""
    from atld.jobs import JobManager

    return JobManager(directory)


def current_job_manager():
    return job_manager(str(settings().runs_dir))


def training_data(dataset: str):
    """The dataset's tensors for a training job, which runs in this process (the full data under
    the app's data root, else the shipped test sample: `atld.data.loaders.load_for_app`); loaded
    again once the full data appears (a download). The only dataset the server itself loads."""
    from atld.data.availability import has_full_data

    current = settings()
    root = current.app_data_root
    return _training_data(dataset, str(root), str(current.samples_dir), has_full_data(dataset, root))


@st.cache_resource(show_spinner="Loading the dataset…", max_entries=4)
def _training_data(dataset: str, root: str, samples_dir: str, full: bool):
    from atld.data.loaders import load_for_app

    configure_torch()
    return load_for_app(dataset, root, samples_dir)


# ---------------------------------------------------------------------- datasets and downloads

def dataset_availability(runs: list[RunEntry] | None = None) -> dict:
    """`atld.data.availability.all_availability` for this server (a few stat calls)."""
    from atld.data.availability import all_availability

    current = settings()
    runs = discover_runs() if runs is None else runs
    shipped = {r.path.name: r.dataset for r in runs if r.source == "shipped"}
    return all_availability(data_root=current.app_data_root, samples_dir=current.samples_dir, checkpoints=shipped)


@st.cache_resource
def downloads() -> dict:
    """The server's dataset downloads, {dataset: atld.data.download.Download}: one at a time per
    dataset, shared by all sessions (each sees the same progress)."""
    return {"lock": threading.Lock(), "by_dataset": {}}


def start_download(dataset: str):
    """Start downloading `dataset` into the app's data root (ATLD_DATA_ROOT, else <ATLD_CACHE>/data)
    in a background thread, unless one is running; returns the Download."""
    from atld.data.download import Download

    table = downloads()
    with table["lock"]:
        current = table["by_dataset"].get(dataset)
        if current is None or not current.running:
            current = table["by_dataset"][dataset] = Download(dataset, settings().app_data_root).start()
    return current


def cancel_download(dataset: str) -> None:
    """Cancel the running download of `dataset` (it ends within a fraction of a second, even while a
    read waits on a slow mirror; its slot is then free for a new one)."""
    job = current_download(dataset)
    if job is not None:
        job.cancel()


def any_download_running() -> bool:
    return any(d.running for d in list(downloads()["by_dataset"].values()))


def current_download(dataset: str):
    """The latest download of `dataset` on this server, or None."""
    return downloads()["by_dataset"].get(dataset)


# ---------------------------------------------------------------------- start-up

# Imported into the server in the background once the default views are computed: the Train page
# (training jobs run in this process) and results that hold tensors (the Learn page's maps) need them.
PRELOAD = ("torch", "atld.runs.store", "atld.attacks", "atld.inference", "atld.latent", "atld.evaluate",
           "atld.jobs", "plotly.graph_objects", "pandas")
PREWARM_WAIT_S = 120.0  # the start-up work goes on after a default view that takes longer than this
START_UP_QUIET_S = 2.0  # the workers' warm-ups and the server's torch import wait this long without a page


@st.cache_resource
def background_start() -> dict:
    """Once per process, after the first page: start the compute workers (they import torch in
    their own processes, at a lower CPU priority than the server and the browser, `atld.ui.worker`)
    and, in a daemon thread of low priority, in this order: compute the default views of the
    checkpoint the sidebar picks first (ATLD_PREWARM; background work that yields to every request),
    then, once no page has run for START_UP_QUIET_S, have each worker load the default
    checkpoint and UMAP's compiled code (ATLD_UMAP_WARMUP), and after another such quiet moment
    import the heavy modules into the server itself (PRELOAD), which holds the server's GIL for a
    second or two.
    ATLD_PRELOAD=0 skips all of it (benchmarks of the bare start).
    Returns {"prewarmed": Event, "preloaded": Event, "error": str | None}."""
    import importlib

    from atld.priority import lower_thread_priority

    status = {"preloaded": threading.Event(), "prewarmed": threading.Event(), "error": None}
    current = settings()
    if not current.preload:
        status["preloaded"].set()
        status["prewarmed"].set()
        return status

    service = compute_service()  # created here, in a script thread: its workers start now

    def work():
        lower_thread_priority()
        try:
            if current.prewarm:
                for ticket in prewarm(service):
                    ticket.wait(PREWARM_WAIT_S)
            status["prewarmed"].set()
            # Loading UMAP's code takes each worker seconds of CPU: on two cores, even at the lowest
            # priority, it slowed every page drawn meanwhile (new tabs 1.4 -> 2.3 s), so it waits
            # for a quiet moment too; a UMAP asked for before then loads it itself.
            wait_until_quiet(START_UP_QUIET_S)
            service.warm_workers(lambda wid: worker_warm_ups(current.umap_warmup))
            wait_until_quiet(START_UP_QUIET_S)
            for name in PRELOAD:
                importlib.import_module(name)
            configure_torch()
            # The modules' objects live as long as the server: keep the garbage collector from
            # scanning them again in every full collection (milliseconds instead of ~0.3 s).
            gc.collect()
            gc.freeze()
        except Exception as exc:  # noqa: BLE001 - failed background work only costs time later
            status["error"] = f"{type(exc).__name__}: {exc}"
        finally:
            status["prewarmed"].set()
            status["preloaded"].set()

    threading.Thread(target=work, name="atld-preload", daemon=True).start()
    return status


_SCRIPTS = {"running": 0, "since": time.monotonic()}  # scripts running now; when the last one ended
_SCRIPTS_LOCK = threading.Lock()


@contextlib.contextmanager
def script_activity():
    """Around every script run (app.py): lets start-up work wait for a moment nobody waits for a page."""
    with _SCRIPTS_LOCK:
        _SCRIPTS["running"] += 1
    try:
        yield
    finally:
        with _SCRIPTS_LOCK:
            _SCRIPTS["running"] -= 1
            _SCRIPTS["since"] = time.monotonic()


def wait_until_quiet(quiet_s: float) -> None:
    """Block until no script has run for `quiet_s` seconds: heavy start-up work waits for that
    (importing torch into the server holds its GIL for a second or two, and the workers' warm-ups
    take the cores a page drawn at that moment would need)."""
    while True:
        with _SCRIPTS_LOCK:
            left = quiet_s - (time.monotonic() - _SCRIPTS["since"]) if _SCRIPTS["running"] == 0 else quiet_s
        if left <= 0:
            return
        time.sleep(min(left, 0.25))


def worker_warm_ups(umap: bool) -> list[tuple]:
    """What each compute worker loads at the first quiet moment: the default checkpoint and its data
    (the start-up views loaded them into one worker only), then UMAP's compiled code
    (ATLD_UMAP_WARMUP). (view, args) pairs."""
    from atld.ui import compute
    from atld.ui.runs import RunRef

    first = default_run(discover_runs())
    out = [] if first is None else [(compute.prepare, (RunRef.of(first.path),))]
    return out + ([(compute.warm_up, (False,))] if umap else [])


def prewarm(service) -> list:
    """Queue the default views (`atld.ui.compute.default_requests`) as background requests;
    returns their tickets."""
    from atld.ui import compute
    from atld.ui.service import BACKGROUND

    runs = discover_runs()
    first = default_run(runs)  # the sidebar's first checkpoint
    if first is None:
        return []
    facts = service.submit(compute.data_facts, (compute.DataFacts.of(first.dataset),), priority=BACKGROUND).result()
    return [service.submit(v, (request,), priority=BACKGROUND)
            for v, request in compute.default_requests(runs, facts["n_test"])]
