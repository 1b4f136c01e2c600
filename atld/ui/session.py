"""What one browser session holds (Streamlit-bound): the sidebar's selection, the settings kept
in the page's address, a result's box, the session's ownership of jobs and compute slots, and
`show`, the one way a page gets a computation done. What the server holds for every session is
`atld.ui.server`.

A page never loads a model or a dataset: it reads a checkpoint's facts from its card (`RunEntry`,
`card_of`) and a dataset's from `facts_or_stop`, and shows every computation with
`show(view, request)` (`atld.ui.compute` has the views)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass

import streamlit as st

from atld.config.settings import Settings, settings
from atld.errors import SEED_LIMIT, ATLDError, CheckpointError
from atld.ui.datasets import picker_label
from atld.ui.runs import RunEntry, RunRef, datasets_in_order, discover_runs, preferred_run
from atld.ui.server import compute_service, dataset_availability
from atld.ui.display import md, status_badge

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
            asked = st.query_params.get("checkpoint")  # a shared address may name a checkpoint this server lacks
            url_setting("atld_run", preferred_run(runs, dataset).label, choice(labels), param="checkpoint")
            label = st.selectbox("Checkpoint", labels, key="atld_run",
                                 help="shipped checkpoints, the runs you trained and the models you imported")
            run = mine[labels.index(label)]
            if asked is not None and asked not in {r.label for r in runs}:
                st.warning(md(f"No checkpoint {asked[:80]!r} here: showing {label} instead."), icon="⚠️")
            st.caption(md((f"imported weights ({run.path.name})" if run.imported else
                           f"{run.method} · {run.epochs_done} epochs · {status_badge(run.status)}")
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
    page with a hint."""
    if sel.run is None:
        st.info("Choose or train a checkpoint first (sidebar / Train page).")
        st.stop()
    return sel.run


def cannot_load(entry: RunEntry, exc: BaseException) -> str:
    """The one line a page shows for a checkpoint that fails to load (here or in a worker)."""
    return md(f"cannot load {entry.label}: {exc}")


# ---------------------------------------------------------------------- getting work done

QUIET_S = 0.15  # a result within this is drawn without a progress bar (no flash for fast views)


def show(view, request, *, slot: str | None = None, interrupt: bool = False,
         on_cancel: Callable[[], None] | None = None):
    """`view(request)` through the server's compute service, for this session's `slot` (default:
    the view's name; a newer request from the same slot supersedes an older one): a result computed
    before (by anyone) returns at once; otherwise a progress bar shows what the computation reports,
    with a Cancel button (`on_cancel` then runs, e.g. to reset the widget that asked for it).
    `interrupt`: cancel it too when the slot asks for something else while it runs (long views).
    Raises the computation's error (ATLDError: one line for the page)."""
    from atld.progress import Cancelled
    from atld.ui.service import Superseded

    slot = slot or view.name.rsplit(":", 1)[-1]
    slot_id = (owner_id(), slot)
    ticket = compute_service().submit(view, (request,), slot=slot_id, interrupt=interrupt or None)
    if not ticket.wait(QUIET_S):
        box = st.empty()
        with box.container():
            bar = st.progress(0.0, text=view.label)
            st.button("Cancel", key=f"atld_cancel_{slot}_{ticket.key[:16]}", on_click=_cancel,
                      args=(slot_id, on_cancel))
        while not ticket.wait(0.25):  # each update lets Streamlit stop this run for a newer one
            fraction, text = ticket.progress()
            bar.progress(fraction, text=md(f"{view.label} {text} · {ticket.seconds():.0f} s"))
        box.empty()
    try:
        return ticket.result()
    except (Cancelled, Superseded):
        st.caption("Cancelled.")
        st.stop()
    except CheckpointError as exc:  # a worker could not load it: say which checkpoint, in one line
        refs = [getattr(request, name) for name in ("run", "map") if hasattr(request, name)]
        ref = refs[0] if refs else request
        ref = getattr(ref, "run", ref)
        label = next((r.label for r in discover_runs() if str(r.path) == getattr(ref, "path", None)), None)
        raise CheckpointError(f"cannot load {label}: {exc}" if label else str(exc)) from None


def ready(view, request) -> bool:
    """Whether `view(request)` is computed already (then a page may show it without asking first)."""
    return compute_service().cached(view, (request,))


def _cancel(slot_id, on_cancel) -> None:
    compute_service().cancel(slot_id)
    if on_cancel is not None:
        on_cancel()


def ref_or_stop(entry: RunEntry) -> RunRef:
    """The checkpoint as a view's request names it, or stop the page with its one-line error."""
    try:
        return RunRef.of(entry.path)
    except ATLDError as exc:
        st.error(cannot_load(entry, exc))
        st.stop()


def facts_or_stop(dataset: str) -> dict:
    """{"n_test", "n_train", "note"} of `dataset` from the compute service (no tensors in the
    server), or stop the page with its one-line error; a page computed on the shipped sample says
    so under its title."""
    from atld.ui import compute

    try:
        facts = show(compute.data_facts, compute.DataFacts.of(dataset), slot=f"data_facts:{dataset}")
    except ATLDError as exc:
        st.error(md(exc))
        st.stop()
    if facts["note"]:
        st.info(md(facts["note"]))
    return facts


def show_discriminator_check(run: RunEntry, seed: int) -> dict | None:
    """Where a page shows D's scores, say how well D separates natural from adversarial latents in
    eval mode (beside the card's training metric) and how often ATLD+ is unsure, in plain words.
    Returns the check (None for a run without D)."""
    if not run.has_discriminator:
        return None
    from atld.ui import compute
    from atld.ui.evaluate import discriminator_messages

    check = show(compute.discriminator_check, compute.CheckRequest(ref_or_stop(run), seed),
                 slot=f"discriminator_check:{run.path}")
    for level, text in discriminator_messages(check):
        getattr(st, level)(md(text))
    return check


# ---------------------------------------------------------------------- ownership

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
