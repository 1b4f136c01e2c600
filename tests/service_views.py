"""Views for the compute-service tests (imported by tests/test_service.py and, by name, by the
worker processes those tests start). Thread-mode tests steer `gated` through GATES."""

from __future__ import annotations

import threading
import time

from atld.progress import report
from atld.ui.result_store import JSON
from atld.ui.service import view

GATES: dict[str, threading.Event] = {}  # name -> released when set (thread workers only)
RUNS: list[tuple] = []  # every (view, args) that ran in this process, in order
RUNS_LOCK = threading.Lock()


def _ran(*entry) -> None:
    with RUNS_LOCK:
        RUNS.append(entry)


@view()
def echo(value):
    _ran("echo", value)
    return {"value": value}


@view()
def gated(gate: str, value):
    """Returns `value` once GATES[gate] is set (reporting progress while it waits)."""
    _ran("gated", value)
    while not GATES[gate].wait(0.01):
        report(0.5, "waiting at the gate")
    return value


@view()
def counting(steps: int, seconds_per_step: float):
    """Reports every step; cancellable between steps."""
    _ran("counting", steps)
    for i in range(steps):
        report(i / steps, f"step {i}")
        time.sleep(seconds_per_step)
    return steps


@view()
def stubborn(seconds: float):
    """Sleeps without reporting: only stopping its process ends it early."""
    _ran("stubborn", seconds)
    time.sleep(seconds)
    return seconds


@view()
def failing(message: str):
    raise ValueError(message)


@view(persist=JSON)
def stored_echo(value):
    """`echo`, kept on disk by a service with a result store."""
    _ran("stored_echo", value)
    return {"value": value}
