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
