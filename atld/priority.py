"""CPU priority of background threads (torch-free)."""

from __future__ import annotations

import os
import threading


def lower_thread_priority() -> bool:
    """Give the calling thread the lowest CPU priority (Linux nice values are per thread), so
    that what it runs (a training job, start-up imports) yields the cores to what people wait
    for. Best effort: returns False where the platform does not allow it."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        return True
    except (AttributeError, OSError):
        return False


WORKER_NICE = 5  # the app's compute workers: below the server and the browser, above a training job (19)


def lower_process_priority(increment: int = WORKER_NICE) -> bool:
    """Lower the calling process's CPU priority by `increment` (best effort, like
    `lower_thread_priority`). The app's compute workers call it first thing: their start-up
    (importing torch) then yields the cores to the server drawing the first page and to the browser,
    and the server's event loop keeps answering while they compute."""
    try:
        os.nice(increment)
        return True
    except (AttributeError, OSError):
        return False


def at_lowest_priority(fn, *args):
    """`fn(*args)` in a thread of the lowest CPU priority, waited for: background work in a worker
    that has nothing else to do (its GIL is free), which must never slow the computations people
    wait for in the other workers. Returns its result or raises its error."""
    out: dict = {}

    def run() -> None:
        lower_thread_priority()
        try:
            out["result"] = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            out["error"] = exc

    thread = threading.Thread(target=run, name="atld-low-priority", daemon=True)
    thread.start()
    thread.join()
    if "error" in out:
        raise out["error"]
    return out["result"]
