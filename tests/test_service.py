"""The app's compute service (atld.ui.service) and its views (atld.ui.compute): cache keys follow
a checkpoint's content and every setting, superseded requests are dropped, results are shared,
cancellation stops work, corrupt cache entries are misses, and worker processes survive what
their views do."""

from __future__ import annotations

import copy
import json
import os
import shutil
import sys
import threading
from pathlib import Path

import pytest
import service_views as sv
import torch

from atld.errors import CheckpointError
from atld.progress import Cancelled
from atld.runs.card import CARD
from atld.runs.store import save_checkpoint
from atld.ui import compute
from atld.ui.runs import RunRef, comparison_run, discover_runs
from atld.ui.service import BACKGROUND, ComputeFailed, ComputeService, State, Superseded, request_key

TESTS = str(Path(__file__).resolve().parent)


def _attack(ref, epsilon=0.2, steps=20):
    return compute.AttackRequest(ref, (0, 1), "pgd", epsilon, steps, 0, "atld")


@pytest.fixture
def threads():
    service = ComputeService(workers=2, kind="thread", modules=("service_views",)).start()
    sv.RUNS.clear()
    sv.GATES.clear()
    yield service
    for gate in sv.GATES.values():
        gate.set()
    service.close()


def _gate(name: str) -> threading.Event:
    sv.GATES[name] = threading.Event()
    return sv.GATES[name]


# ----------------------------------------------------------------------------- keys

def test_a_checkpoint_counts_by_its_content_not_its_folder(atld_run, tmp_path):
    copy = shutil.copytree(atld_run.path, tmp_path / "copy")
    key = request_key(compute.attack, (_attack(RunRef.of(atld_run.path)),))
    assert request_key(compute.attack, (_attack(RunRef.of(copy)),)) == key


def test_a_changed_checkpoint_or_setting_is_a_miss(latent_runs, tmp_path):
    run = copy.deepcopy(latent_runs[True])
    path = save_checkpoint(tmp_path / "run", dict(run.card), run.classifier, run.discriminator)
    args = lambda ref, eps=0.2: (_attack(ref, eps),)
    before = request_key(compute.attack, args(RunRef.of(path)))
    assert request_key(compute.attack, args(RunRef.of(path), 0.1)) != before  # a setting
    assert request_key(compute.attack, args(RunRef.of(path))) == before
    with torch.no_grad():  # the same run trained a little further: new weights, new file, new key
        next(run.classifier.parameters()).add_(0.01)
    save_checkpoint(path, dict(run.card), run.classifier, run.discriminator)
    retrained = request_key(compute.attack, args(RunRef.of(path)))
    assert retrained != before
    card = json.loads((path / CARD).read_text())  # the same weights under another config (IMT's ε)
    card["config"]["epsilon"] = 0.15
    (path / CARD).write_text(json.dumps(card))
    assert request_key(compute.attack, args(RunRef.of(path))) not in (before, retrained)


def test_a_model_file_changed_behind_its_card_is_an_error_never_a_stale_result(latent_runs, tmp_path, run_file):
    run = latent_runs[True]
    path = save_checkpoint(tmp_path / "run", dict(run.card), run.classifier, run.discriminator)
    ref = RunRef.of(path)
    data = bytearray(run_file(path).read_bytes())
    data[-1] ^= 1
    run_file(path).write_bytes(bytes(data))
    with pytest.raises(CheckpointError):
        compute.attack(_attack(ref, steps=5))


def test_a_worker_refuses_a_run_that_changed_since_the_page_read_it(latent_runs, tmp_path):
    run = latent_runs[True]
    path = save_checkpoint(tmp_path / "run", dict(run.card), run.classifier, run.discriminator)
    stale = RunRef(str(path), "0" * 64)
    with pytest.raises(CheckpointError, match="changed since"):
        compute.load_run(stale)


def test_arguments_must_be_plain_values_and_numpy_scalars_key_like_python_ones():
    import numpy as np

    assert request_key(sv.echo, (np.float64(0.2), np.int64(3))) == request_key(sv.echo, (0.2, 3))
    assert request_key(sv.echo, (0.2,)) != request_key(sv.echo, (0.20000001,))
    with pytest.raises(TypeError):
        request_key(sv.echo, (object(),))


# ----------------------------------------------------------------------------- sharing, superseding

def test_one_result_for_every_session(threads):
    tickets = [threads.submit(sv.echo, (7,), slot=("session", i)) for i in range(5)]
    assert [t.result() for t in tickets] == [{"value": 7}] * 5
    assert threads.submit(sv.echo, (7,), slot=("late", 0)).result() == {"value": 7}
    assert sv.RUNS.count(("echo", 7)) == 1
    # the same object for everyone (read-only by contract), from the cache after the first
    assert threads.submit(sv.echo, (7,), slot="x").result() is tickets[0].result()
    assert threads.stats()["hits"] >= 1


def test_only_the_latest_of_quick_changes_is_computed(threads):
    gate = _gate("g")
    slot = ("session", "attack")
    first = threads.submit(sv.gated, ("g", 1), slot=slot)
    while first.state != State.RUNNING:
        first.wait(0.01)
    middle = [threads.submit(sv.gated, ("g", v), slot=slot) for v in (2, 3, 4)]
    last = threads.submit(sv.gated, ("g", 5), slot=slot)
    gate.set()
    assert first.result() == 1 and last.result() == 5
    for ticket in middle:
        assert ticket.state == State.DROPPED
        with pytest.raises(Superseded):
            ticket.result()
    assert [v for name, v in sv.RUNS if name == "gated"] == [1, 5]
    assert threads.stats()["dropped"] == 3


def test_another_sessions_request_is_never_dropped_by_mine(threads):
    gate = _gate("h")
    mine = threads.submit(sv.gated, ("h", "a"), slot=("me", "v"))
    theirs = threads.submit(sv.gated, ("h", "b"), slot=("them", "v"))
    threads.submit(sv.gated, ("h", "c"), slot=("me", "v"))  # supersedes mine only
    gate.set()
    assert theirs.result() == "b"
    assert mine.state in (State.DONE, State.DROPPED)


def test_a_shared_request_survives_one_sessions_change_of_mind(threads):
    gate = _gate("s")
    a = threads.submit(sv.gated, ("s", 1), slot=("a", "v"))
    b = threads.submit(sv.gated, ("s", 1), slot=("b", "v"))
    threads.submit(sv.echo, ("other",), slot=("a", "v"))
    assert not threads.cancel(("b", "x"))  # nothing to cancel
    gate.set()
    assert a.result() == b.result() == 1


def test_background_requests_yield_to_sessions(threads):
    gate = _gate("bg")
    blockers = [threads.submit(sv.gated, ("bg", i), slot=("blocker", i)) for i in range(2)]
    while not all(t.state == State.RUNNING for t in blockers):
        blockers[0].wait(0.01)
    background = threads.submit(sv.echo, ("background",), priority=BACKGROUND)
    user = threads.submit(sv.echo, ("user",), slot=("user", 0))
    gate.set()
    assert background.result() and user.result()
    order = [v for name, v in sv.RUNS if name == "echo"]
    assert order.index("user") < order.index("background")


def test_cancel_stops_a_running_computation_between_progress_reports(threads):
    slot = ("me", "umap")
    ticket = threads.submit(sv.counting, (10_000, 0.001), slot=slot, interrupt=True)
    while ticket.state != State.RUNNING or ticket.progress()[0] == 0:
        ticket.wait(0.01)
    assert threads.cancel(slot)
    with pytest.raises(Cancelled):
        ticket.result()
    assert threads.submit(sv.echo, ("after",), slot=slot).result() == {"value": "after"}


def test_an_interruptible_request_nobody_wants_any_more_is_cancelled(threads):
    slot = ("me", "umap")
    ticket = threads.submit(sv.counting, (10_000, 0.001), slot=slot, interrupt=True)
    while ticket.state != State.RUNNING:
        ticket.wait(0.01)
    threads.submit(sv.echo, ("new settings",), slot=slot)
    with pytest.raises(Cancelled):
        ticket.result()


def test_failures_are_one_line_and_not_cached(threads):
    with pytest.raises(ComputeFailed, match="ValueError: boom"):
        threads.submit(sv.failing, ("boom",), slot="s").result()
    with pytest.raises(ComputeFailed):
        threads.submit(sv.failing, ("boom",), slot="s").result()
    assert threads.stats()["failed"] == 2


def test_the_result_cache_is_bounded(threads):
    service = ComputeService(workers=1, kind="thread", max_bytes=4000, max_entries=3, modules=()).start()
    try:
        for i in range(10):
            service.submit(sv.echo, ("x" * 500 + str(i),)).result()
        stats = service.stats()
        assert stats["entries"] <= 3 and stats["bytes"] <= 4000
    finally:
        service.close()


# ----------------------------------------------------------------------------- the app's views and disk cache

def _latent_args(run, projection="pca"):
    return (compute.MapRequest(RunRef.of(run.path), compute.page_latent(40, "fgsm", 0.2, 0, "logits", projection,
                                                                        "joint")),)


def test_a_corrupt_disk_cache_entry_is_a_miss_never_an_error(latent_runs, tmp_path, monkeypatch):
    monkeypatch.setenv("ATLD_CACHE", str(tmp_path / "cache"))
    args = _latent_args(latent_runs[True])
    first = compute.latent_map.fn(*args)
    entries = list((tmp_path / "cache" / "latent").iterdir())
    assert len(entries) >= 3  # latents, gap numbers, projection
    for entry in entries:
        entry.write_bytes(b"\x00garbage" * 10)
    compute._MAPS.clear()
    again = compute.latent_map.fn(*args)
    assert (again.coords == first.coords).all() and again.gap["mmd2"] == first.gap["mmd2"]
    assert all(e.stat().st_size > 100 for e in entries)  # rewritten whole


def test_the_start_up_requests_are_the_ones_the_pages_make(app_checkpoints, monkeypatch):
    monkeypatch.setenv("ATLD_CHECKPOINTS_DIR", str(app_checkpoints))
    runs = [r for r in discover_runs() if r.source == "shipped"]
    requests = compute.default_requests(runs, n_test=450)
    keys = {request_key(v, (request,)) for v, request in requests}
    atld = next(r for r in runs if r.method == "atld")
    other = comparison_run(runs, atld)  # the Latent page's default "Compare with"
    ref = RunRef.of(atld.path)
    # as the pages build them, from the widgets' plain values
    pca = compute.MapRequest(ref, compute.page_latent(300, "pgd20", 0.2, 0, "logits", "pca", "joint"))
    umap = compute.MapRequest(ref, compute.page_latent(300, "pgd20", 0.2, 0, "logits", "umap", "joint"))
    page = [(compute.attack, compute.AttackRequest(ref, tuple(range(6)), "pgd", 0.2, 20, 0, "atld")),
            (compute.map_points, pca), (compute.map_points, umap),
            (compute.discriminator_check, compute.CheckRequest(ref, 0)),
            (compute.attack_path, compute.PathRequest(ref, tuple(range(12)), "pgd20", 0.2, 0)),
            (compute.latent_plot, compute.PlotRequest(pca, "class × natural/perturbed")),
            (compute.compare_plots, compute.CompareRequest((ref, RunRef.of(other.path)), (atld.label, other.label),
                                                           pca.latent))]
    assert {request_key(v, (request,)) for v, request in page} <= keys


def test_a_stored_result_is_served_by_a_later_server_without_a_worker(tmp_path):
    first = ComputeService(workers=1, kind="thread", modules=("service_views",), store_dir=tmp_path).start()
    sv.RUNS.clear()
    try:
        assert first.submit(sv.stored_echo, ("hi",)).result() == {"value": "hi"}
        assert first.submit(sv.echo, ("plain",)).result() == {"value": "plain"}  # not a persist view
    finally:
        first.close()
    later = ComputeService(workers=1, kind="thread", modules=("service_views",), store_dir=tmp_path)  # never started
    ticket = later.submit(sv.stored_echo, ("hi",), slot="s")
    assert ticket.done() and ticket.result() == {"value": "hi"} and later.cached(sv.stored_echo, ("hi",))
    assert later.counts["stored_hits"] == 1
    assert not later.submit(sv.echo, ("plain",)).done()  # only persist views are stored
    assert not later.submit(sv.stored_echo, ("other",)).done()  # another argument: a miss
    later.close()
    assert sv.RUNS == [("stored_echo", "hi"), ("echo", "plain")]  # each computed once, by the first server


def test_a_corrupt_stored_result_is_computed_again(tmp_path):
    service = ComputeService(workers=1, kind="thread", modules=("service_views",), store_dir=tmp_path).start()
    sv.RUNS.clear()
    try:
        key = request_key(sv.stored_echo, ("hi",))
        service.store.path(key, sv.stored_echo.persist).write_bytes(b"\xff\x00 not json")
        assert service.submit(sv.stored_echo, ("hi",)).result() == {"value": "hi"}
        assert sv.RUNS == [("stored_echo", "hi")] and service.counts["stored_hits"] == 0
    finally:
        service.close()


def test_a_rewritten_model_file_is_another_key_even_under_the_same_card(latent_runs, tmp_path):
    run = latent_runs[True]
    path = save_checkpoint(tmp_path / "run", dict(run.card), run.classifier, run.discriminator)
    before = RunRef.of(path)
    model = path / json.loads((path / CARD).read_text())["files"]["model"]
    info = model.stat()
    os.utime(model, ns=(info.st_atime_ns, info.st_mtime_ns + 10**9))  # the same claim in the card, a new file
    after = RunRef.of(path)
    assert after.cache_key == before.cache_key and after.stamp != before.stamp
    args = lambda ref: (compute.MapRequest(ref, compute.page_latent(300, "pgd20", 0.2, 0, "logits")),)
    assert request_key(compute.map_points, args(after)) != request_key(compute.map_points, args(before))


def test_a_process_result_is_read_once_when_first_used():
    import pickle

    from atld.ui.service import Pickled

    payload = Pickled(pickle.dumps({"a": [1, 2]}))
    assert payload.value() == {"a": [1, 2]} and payload.value() is payload.value()
    with pytest.raises(ComputeFailed, match="could not be read"):
        Pickled(b"\x80\x05 truncated").value()


# ----------------------------------------------------------------------------- worker processes

@pytest.fixture
def processes():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([TESTS, os.environ.get("PYTHONPATH", "")])}
    service = ComputeService(workers=1, kind="process", env=env, modules=("service_views",)).start()
    yield service
    service.close()


def test_a_worker_process_computes_shares_and_survives_failures(processes):
    assert processes.submit(sv.echo, ("hello",), slot="a").result() == {"value": "hello"}
    with pytest.raises(ComputeFailed, match="ValueError: nope"):
        processes.submit(sv.failing, ("nope",), slot="a").result()
    assert processes.submit(sv.echo, ("hello",), slot="b").result() == {"value": "hello"}
    stats = processes.stats()
    assert stats["computed"] == 1 and stats["hits"] == 1 and stats["pids"][0] != os.getpid()


def test_a_computation_that_ignores_cancel_is_stopped_with_its_process(processes):
    slot = ("me", "long")
    ticket = processes.submit(sv.stubborn, (600.0,), slot=slot, interrupt=True)
    while ticket.state != State.RUNNING:
        ticket.wait(0.05)
    pid = processes.stats()["pids"][0]
    assert processes.cancel(slot)
    with pytest.raises(Cancelled):
        ticket.result()  # within the grace period plus a kill, not 600 s
    assert processes.submit(sv.echo, ("next",), slot=slot).result() == {"value": "next"}  # a new process
    assert processes.stats()["pids"][0] != pid and processes.stats()["worker_restarts"] == 1


def test_a_cooperative_cancel_keeps_the_process(processes):
    slot = ("me", "counting")
    ticket = processes.submit(sv.counting, (100_000, 0.001), slot=slot, interrupt=True)
    while ticket.progress()[0] == 0:
        ticket.wait(0.05)
    pid = processes.stats()["pids"][0]
    processes.cancel(slot)
    with pytest.raises(Cancelled):
        ticket.result()
    assert processes.submit(sv.echo, (1,), slot=slot).result() == {"value": 1}
    assert processes.stats()["pids"][0] == pid


def test_a_worker_process_stores_its_result_for_the_next_server(tmp_path):
    import time

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([TESTS, os.environ.get("PYTHONPATH", "")])}
    service = ComputeService(workers=1, kind="process", env=env, modules=("service_views",),
                             store_dir=tmp_path).start()
    try:
        assert service.submit(sv.stored_echo, ("far",)).result() == {"value": "far"}
        path = service.store.path(request_key(sv.stored_echo, ("far",)), sv.stored_echo.persist)
        deadline = time.monotonic() + 30
        while not path.exists() and time.monotonic() < deadline:  # written after the hand-over
            time.sleep(0.05)
    finally:
        service.close()
    later = ComputeService(workers=1, kind="process", env=env, modules=("service_views",), store_dir=tmp_path)
    assert later.submit(sv.stored_echo, ("far",)).done()
    later.close()


@pytest.mark.skipif(sys.platform == "win32", reason="worker processes need fd passing")
def test_worker_kind_and_size_are_validated():
    with pytest.raises(ValueError):
        ComputeService(kind="fork")
    with pytest.raises(ValueError):
        ComputeService(workers=0)


# ----------------------------------------------------------------------------- every view reports and stops

def _app_views(run) -> dict:
    """One small request of every long view of the app (`atld.ui.compute`)."""
    from atld.config.eval import EvalConfig

    ref = RunRef.of(run.path)
    return {
        "attack": (compute.attack, compute.AttackRequest(ref, (0, 1), "pgd", 0.2, 20, 0, "atld")),
        "latent_map": (compute.latent_map,
                       compute.MapRequest(ref, compute.page_latent(40, "pgd20", 0.2, 0, "logits"))),
        "evaluation": (compute.evaluation,
                       compute.EvalRequest(ref, EvalConfig(attacks=("natural", "pgd20"), limit=20, device="cpu"))),
        "accuracy_curve": (compute.accuracy_curve, compute.CurveRequest(ref, (0.1, 0.2), "pgd20", "atld-", 20, 0)),
        "accuracy_curves": (compute.accuracy_curves, compute.CurvesRequest(
            (compute.CurveRequest(ref, (0.1, 0.2), "pgd20", "atld-", 20, 0),))),
        "discriminator_check": (compute.discriminator_check, compute.CheckRequest(ref, 0, n=20)),
        "attack_path": (compute.attack_path, compute.PathRequest(ref, (0, 1), "pgd20", 0.2, 0, background_n=20)),
        "adaptive_lesson": (compute.adaptive_lesson, compute.LessonRequest(ref, (0, 1), 0.2, 0, apgd_steps=5)),
    }


@pytest.mark.parametrize("name", ["attack", "latent_map", "evaluation", "accuracy_curve", "discriminator_check",
                                  "attack_path", "adaptive_lesson", "accuracy_curves"])
def test_every_long_view_reports_progress_and_stops_at_a_cancel(latent_runs, name, monkeypatch, tmp_path):
    """Progress travels one way (`atld.progress`), attacks included: a Cancel (the listener raising)
    stops every view at its first report."""
    from atld.progress import reporting

    monkeypatch.setenv("ATLD_CACHE", str(tmp_path))  # a map computed, not read back from an earlier test's cache
    compute._MAPS.clear()
    view, request = _app_views(latent_runs[True])[name]
    reports = []

    def cancel_at_once(fraction: float, text: str) -> None:
        reports.append((fraction, text))
        raise Cancelled("cancelled")

    with reporting(cancel_at_once), pytest.raises(Cancelled):
        view(request)
    assert len(reports) == 1 and 0.0 <= reports[0][0] <= 1.0 and reports[0][1]
