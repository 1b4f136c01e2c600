"""The Streamlit-bound part of the app: the settings check, cached loaders, the sidebar selection
kept across pages, the process-wide job manager and compute service, and the start-up work.

Caching: models are `st.cache_resource` (one copy per process, keyed by path + model hash so a
retrained run is never served stale); what the pages compute goes through the compute service
(`compute`: one pool of workers for the whole server, results shared by all sessions, see
`atld.ui.service`)."""

from __future__ import annotations

import contextlib
import gc
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import streamlit as st

from atld.config.settings import Settings, settings
from atld.errors import SEED_LIMIT, ATLDError
from atld.ui.datasets import picker_label
from atld.ui.runs import RunEntry, datasets_in_order, default_run, discover_runs, preferred_run
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


def get_data(dataset: str):
    """The dataset's tensors: the full data under the app's data root (digits ship with
    scikit-learn), else the shipped test sample (`atld.data.loaders.load_for_app`); loaded again
    once the full data appears (a download)."""
    from atld.data.availability import has_full_data

    current = settings()
    root = current.app_data_root
    return _get_data(dataset, str(root), str(current.samples_dir), has_full_data(dataset, root))


@st.cache_resource(show_spinner="Loading the dataset…", max_entries=4)
def _get_data(dataset: str, root: str, samples_dir: str, full: bool):
    from atld.data.loaders import load_for_app

    configure_torch()
    return load_for_app(dataset, root, samples_dir)


def data_facts_or_stop(dataset: str) -> dict:
    """{"n_test", "note"} of `dataset` from the compute service (no tensors in the server), or
    stop the page with its one-line error; a page computed on the shipped sample says so under
    its title."""
    from atld.ui import cached

    try:
        facts = cached.data_facts(dataset)
    except ATLDError as exc:
        st.error(md(exc))
        st.stop()
    if facts["note"]:
        st.info(md(facts["note"]))
    return facts


def data_or_stop(dataset: str):
    """`get_data`, or stop the page with its one-line error; a page computed on the shipped sample
    says so under its title."""
    from atld.ui.datasets import sample_note

    try:
        data = get_data(dataset)
    except ATLDError as exc:
        st.error(md(exc))
        st.stop()
    note = sample_note(data)
    if note:
        st.info(md(note))
    return data


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
    address in another tab, finds the job again (`attached_job`). The key is also the run's owner
    key (`atld.runs.owner`): this session may resume and delete that run."""
    st.session_state[JOB_KEY] = (job.name, job.key)
    st.session_state.setdefault(OWNER_KEYS, {})[job.name] = job.key
    st.query_params.update(run=job.name, key=job.key)


OWNER_KEYS = "atld_owner_keys"  # session state: {run name: owner key} of the runs this session started


def owner_key(run_name: str) -> str | None:
    """The owner key this session holds for run `run_name`: of a run it started, or the key the
    page's address carries with that run's name; else None (the run is read-only here)."""
    key = st.session_state.get(OWNER_KEYS, {}).get(run_name)
    if key is None and st.query_params.get("run") == run_name:
        key = st.query_params.get("key")
    return key


def owns_run(run_dir) -> bool:
    """Whether this session may change the run at `run_dir` (resume, delete, store an evaluation)."""
    from pathlib import Path

    from atld.runs.owner import holds_owner_key

    return holds_owner_key(run_dir, owner_key(Path(run_dir).name))


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


# Imported into the server in the background once the default views are computed, so a page
# that uses them directly (Attack, Evaluate, Learn, Train) finds them loaded.
PRELOAD = ("torch", "atld.runs.store", "atld.attacks", "atld.inference", "atld.latent", "atld.evaluate",
           "atld.jobs", "plotly.graph_objects", "pandas")


@st.cache_resource
def compute_service():
    """The server's one compute service (ATLD_WORKERS workers of ATLD_WORKER_KIND, results
    shared by all sessions up to ATLD_RESULT_CACHE_MB, the views' on disk under
    $ATLD_CACHE/views). Its workers start at once."""
    from atld.ui.compute import app_service

    return app_service().start()


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
START_UP_QUIET_S = 2.0  # the workers' warm-ups and the server's torch import wait this long without a page


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
    (ATLD_UMAP_WARMUP)."""
    from atld.ui import compute as views
    from atld.ui.runs import RunRef

    first = default_run(discover_runs())
    out = [] if first is None else [(views.prepare, (RunRef.of(first.path),))]
    return out + ([(views.warm_up, (False,))] if umap else [])


PREWARM_WAIT_S = 120.0  # the start-up work goes on after a default view that takes longer than this


def prewarm(service) -> list:
    """Queue the default views (`atld.ui.compute.default_requests`) as background requests;
    returns their tickets."""
    from atld.ui import compute as views
    from atld.ui.service import BACKGROUND

    runs = discover_runs()
    first = default_run(runs)  # the sidebar's first checkpoint
    if first is None:
        return []
    facts = service.submit(*views.facts_request(first.dataset), priority=BACKGROUND).result()
    return [service.submit(v, args, priority=BACKGROUND) for v, args in views.default_requests(runs, facts["n_test"])]


def sidebar() -> Selection:
    """Draw the dataset / checkpoint / seed pickers (the app's entry script calls this on every
    rerun, so the widgets and their values persist across pages) and store the selection."""
    checked_settings()
    runs = discover_runs()
    pending = st.session_state.pop("atld_pending_run", None)
    if pending is not None and any(r.label == pending[1] for r in runs):
        # A run just finished on the Train page: select it (before the widgets are drawn).
        st.session_state["atld_dataset"], st.session_state["atld_run"] = pending
    table = dataset_availability(runs)
    extra = tuple(name for name, a in table.items() if a.usable)
    datasets = datasets_in_order(runs, extra)
    # The sidebar's choice lives in every page's address too ("checkpoint", not "run": the Train
    # page's address names its job's run), so a shared link opens the same checkpoint.
    url_setting("atld_dataset", datasets[0], choice(datasets), param="dataset")
    with st.sidebar:
        st.markdown("### Checkpoint")
        dataset = st.selectbox("Dataset", datasets, key="atld_dataset",
                               format_func=lambda name: picker_label(name, table.get(name)),
                               help="checkpoints: shipped runs; sample only: a shipped sample of real test images "
                                    "(full data: download it on Home, Datasets); digits ships with the app")
        mine = [r for r in runs if r.dataset == dataset]
        labels = [r.label for r in mine]
        if labels:
            url_setting("atld_run", preferred_run(runs, dataset).label, choice(labels), param="checkpoint")
            label = st.selectbox("Checkpoint", labels, key="atld_run",
                                 help="shipped checkpoints and the runs you trained (runs directory)")
            run = mine[labels.index(label)]
            st.caption(md(f"{run.method} · {run.epochs_done} epochs · {status_badge(run.status)}"
                          + (" · has D" if run.has_discriminator else " · no discriminator")))
        else:
            run = None
            st.query_params.pop("checkpoint", None)  # the last dataset's: it does not apply here
            st.info("No checkpoint for this dataset yet: train one on the Train page.")
        url_setting("atld_seed", 0, bounded(int, 0, SEED_LIMIT - 1), param="seed")
        seed = st.number_input("Seed", min_value=0, max_value=SEED_LIMIT - 1, step=1, key="atld_seed",
                               help="seeds random starts of attacks and subsampling on every page")
    selection = Selection(run, dataset, int(seed))
    st.session_state[SELECTION_KEY] = selection
    return selection


def selection() -> Selection:
    """The sidebar's current choice (pages call this)."""
    sel = st.session_state.get(SELECTION_KEY)
    return sel if sel is not None else sidebar()


def require_entry(sel: Selection) -> RunEntry:
    """The selection's checkpoint as the picker knows it (its card's facts, no torch), or stop the
    page with a hint. A page that draws only what the compute service returns needs no more."""
    if sel.run is None:
        st.info("Choose or train a checkpoint first (sidebar / Train page).")
        st.stop()
    return sel.run


def cannot_load(entry: RunEntry, exc: BaseException) -> str:
    """The one line a page shows for a checkpoint that fails to load (here or in a worker)."""
    return md(f"cannot load {entry.label}: {exc}")


def require_run(sel: Selection):
    """The loaded checkpoint of the selection, or stop the page with a hint."""
    entry = require_entry(sel)
    try:
        return get_run(str(entry.path), entry.model_hash)
    except ATLDError as exc:  # e.g. a checkpoint from an older architecture: say why, in one line
        st.error(cannot_load(entry, exc))
        st.stop()


def show_discriminator_check(run: RunEntry, seed: int) -> None:
    """Where a page shows D's scores, say how well D separates natural from adversarial latents in
    eval mode (beside the card's training metric) and how often ATLD+ is unsure, in plain words."""
    if not run.has_discriminator:
        return
    from atld.ui import cached
    from atld.ui.evaluate_view import D_CHECK_IMAGES, discriminator_messages

    check = cached.discriminator_check(str(run.path), run.model_hash, D_CHECK_IMAGES, seed)
    for level, text in discriminator_messages(check):
        getattr(st, level)(md(text))


# ---------------------------------------------------------------------- settings in the address
URL_MEMORY = "atld_url_memory"  # session state: {widget key: value}, kept across page switches


def url_setting(key: str, default, parse: Callable[[str], object] = str, param: str | None = None,
                show: Callable[[object], str] = str):
    """Keep widget `key`'s value in the page's address (query parameter `param`, default: the key
    after its page prefix, "lat_attack" -> "attack") and in this session across page switches.
    Call it just before drawing the widget with `key=key` and without a value/index argument.

    The widget starts from, in order: the address (a reload or a shared link), the value this
    session last had on the page (a page switch clears the address), `default`. `parse` turns the
    address's text into a value and raises (ValueError, KeyError, ...) or returns None for text it
    refuses; a refused value falls back to the next source, so a hostile link never reaches a
    widget. `show` writes a value as the address's text (`parse`'s inverse; `several` pairs
    with `joined` for a multiselect). Returns the value the widget will show."""
    param = param or key.split("_", 1)[-1]
    memory = st.session_state.setdefault(URL_MEMORY, {})

    def accepted(raw):
        if raw is None:
            return None
        try:
            return parse(raw if isinstance(raw, str) else show(raw))
        except (ValueError, TypeError, KeyError, OverflowError):
            return None

    # a widget's state exists while the page is shown; it is dropped on a page switch
    current = accepted(st.session_state.get(key))
    if current is None:
        current = next((v for v in (accepted(st.query_params.get(param)), accepted(memory.get(key)))
                        if v is not None), default)
        st.session_state[key] = current
    memory[key] = current
    if st.query_params.get(param) != show(current):
        st.query_params[param] = show(current)
    return current


def choice(options) -> Callable[[str], object]:
    """A `url_setting` parser: the option whose text is the given text (None if there is none)."""
    table = {str(o): o for o in options}
    return table.get


def several(options) -> Callable[[str], object]:
    """A `url_setting` parser for a multiselect: "a,b" -> [a, b] (None if any name is unknown)."""
    table = {str(o): o for o in options}

    def parse(text: str):
        names = [t for t in text.split(",") if t]
        return [table[t] for t in names] if all(t in table for t in names) else None
    return parse


def joined(values) -> str:
    """A multiselect's value as the address's text (`several`'s inverse)."""
    return ",".join(str(v) for v in values)


def bounded(kind: type, low, high) -> Callable[[str], object]:
    """A `url_setting` parser: an int/float within [low, high] (None outside, or for NaN)."""
    def parse(text: str):
        value = kind(float(text)) if kind is int and "." not in text else kind(text)
        return value if low <= value <= high else None
    return parse


def result_box(key: str, made_with: str, current: str):
    """A container for a result computed with the settings `made_with` (shown as its caption);
    when the page's settings now read `current` instead, the result is greyed and says so."""
    box = st.container(key=key)
    stale = made_with != current
    if stale:
        st.html(f"<style>.st-key-{key} {{ opacity: 0.45; }}</style>")
    box.caption(md(f"Computed for: {made_with}." + (" The settings have changed since: run it again to update."
                                                     if stale else "")))
    return box
