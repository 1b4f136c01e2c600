"""Progress and cancellation of long computations, without threading callbacks through every
signature (torch-free).

A long loop in the core calls `report(fraction, text)` now and then. Whoever runs the computation
(the app's compute service, a test) installs a listener for the current thread with
`reporting(listener)`; without one, `report` does nothing. The listener may raise `Cancelled` to
stop the computation at that point: cancellation is cooperative and happens only where the core
reports progress (between attack batches, between UMAP epochs).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar

Listener = Callable[[float, str], None]  # (fraction done in [0, 1], what is happening)

_listener: ContextVar[Listener | None] = ContextVar("atld_progress_listener", default=None)


class Cancelled(Exception):  # noqa: N818 - what happened, not an error
    """A computation was cancelled by its requester (raised from `report`)."""


def report(fraction: float, text: str = "") -> None:
    """Tell the current listener how far the computation is (fraction clipped to [0, 1])."""
    listener = _listener.get()
    if listener is not None:
        listener(min(1.0, max(0.0, float(fraction))), text)


@contextlib.contextmanager
def reporting(listener: Listener | None) -> Iterator[None]:
    """Send this thread's `report` calls to `listener` inside the block."""
    token = _listener.set(listener)
    try:
        yield
    finally:
        _listener.reset(token)


@contextlib.contextmanager
def stage(start: float, end: float, text: str = "") -> Iterator[None]:
    """Map the nested computation's fractions [0, 1] onto [start, end] of the outer one, and
    prefix its text with `text` (e.g. one stage of a pipeline)."""
    outer = _listener.get()
    if outer is None:
        yield
        return
    outer(start, text)

    def inner(fraction: float, detail: str) -> None:
        outer(start + (end - start) * fraction, f"{text}: {detail}" if text and detail else text or detail)

    with reporting(inner):
        yield
    outer(end, text)
