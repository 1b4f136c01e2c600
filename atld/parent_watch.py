"""A child process that must never outlive its parent nor print a traceback when the parent goes
(the app's compute workers, `atld.ui.worker`): Linux's parent-death signal is not used because
it fires when the *thread* that started the child ends, and the server starts workers from
threads that come and go.

- `quiet_when_parent_gone()`: a daemon thread compares the parent's pid every PARENT_POLL_S and
  ends this process at once (exit status 0, nothing printed) when the parent has changed, i.e.
  the parent died and the process was re-parented; Ctrl-C in the server's terminal is left to
  the server (SIGINT is ignored here), which then closes its workers.
- `send_or_exit(conn, message)`: a send to the parent that ends this process quietly when the
  parent has closed its end (BrokenPipeError, a reset, EOF) instead of raising.

Ending with `os._exit` is deliberate: nothing of a worker needs finishing (its results are on
their way to a parent that is gone; stored results are written atomically), and a normal exit
would flush buffers into a closed pipe and print "Exception ignored" lines.
"""

from __future__ import annotations

import os
import signal
import threading

PARENT_POLL_S = 0.5


def exit_quietly() -> None:
    os._exit(0)


def quiet_when_parent_gone(poll_s: float = PARENT_POLL_S) -> threading.Thread:
    """Start the watchdog (see the module docstring); returns its thread."""
    parent = os.getppid()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch() -> None:
        while True:
            if os.getppid() != parent:
                exit_quietly()
            threading.Event().wait(poll_s)

    # (a parent that died before this line is found by the first send: the pipe is closed)
    thread = threading.Thread(target=watch, name="atld-parent-watch", daemon=True)
    thread.start()
    return thread


def send_or_exit(conn, message) -> None:
    """`conn.send(message)`, or a quiet end of this process when the parent has closed the pipe."""
    try:
        conn.send(message)
    except (BrokenPipeError, ConnectionError, EOFError, OSError):
        exit_quietly()
