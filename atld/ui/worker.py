"""A compute worker process of the app (`python -m atld.ui.worker FD MODULE...`; started by
`atld.ui.service`, never by hand). It imports the modules that hold the views once (torch with
them), then runs the views the server sends over the pipe FD, one at a time, and sends back their
results, errors and progress. It ends when the server says so or its pipe closes (the server is
gone), and it never outlives the server: a failed send (the server closed its end) and a new
parent process (the server died; a watchdog looks every PARENT_POLL_S) end it at once and
quietly, without a traceback (`atld.parent_watch`)."""

from __future__ import annotations

import os
import pickle
import sys
import time
import traceback
import warnings

from atld.progress import Cancelled
from atld.parent_watch import exit_quietly, quiet_when_parent_gone, send_or_exit


class _Channel:
    """The worker's end of the pipe, with the progress listener of the running view."""

    def __init__(self, conn):
        self.conn = conn
        self.task_id = None
        self.last_sent = 0.0
        self.cancelled = False
        self.stop_after = False

    def listener(self, fraction: float, text: str) -> None:
        from atld.ui.service import PROGRESS_INTERVAL_S

        self._read_control()
        if self.cancelled:
            raise Cancelled("cancelled")
        now = time.monotonic()
        if now - self.last_sent >= PROGRESS_INTERVAL_S or fraction >= 1.0:
            self.last_sent = now
            send_or_exit(self.conn, ("progress", self.task_id, fraction, text))

    def _read_control(self) -> None:
        while True:
            try:
                if not self.conn.poll():
                    return
                message = self.conn.recv()
            except (EOFError, OSError):  # the server closed its end: it is gone
                exit_quietly()
            if message[0] == "cancel" and message[1] == self.task_id:
                self.cancelled = True
            elif message[0] == "stop":
                self.cancelled = self.stop_after = True


def _reportable(exc: BaseException) -> BaseException:
    from atld.ui.service import ComputeFailed, as_reportable

    exc = as_reportable(exc)
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:  # noqa: BLE001 - an exception that cannot travel is sent as one line
        exc = ComputeFailed(str(exc)[:300])
    return exc


def serve(conn, modules: list[str]) -> None:
    """Import `modules` (they register views), then run the views sent over `conn` until told
    to stop or the pipe closes."""
    import importlib

    from atld.ui.service import find_view, run_view, save_result

    for module in modules:
        imported = importlib.import_module(module)
        if hasattr(imported, "configure_process"):
            imported.configure_process()
    channel = _Channel(conn)
    send_or_exit(conn, ("ready", os.getpid()))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message[0] == "stop":
            return
        if message[0] != "run":
            continue  # a late cancel of a view that has finished
        _, task_id, name, args, store_target = message
        channel.task_id, channel.cancelled, channel.last_sent = task_id, False, 0.0
        try:
            result = run_view(find_view(name), args, channel.listener)
            payload = pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
        except Cancelled:
            send_or_exit(conn, ("cancelled", task_id))
        except BaseException as exc:  # noqa: BLE001 - report every failure, keep serving
            from atld.errors import ATLDError

            send_or_exit(conn, ("error", task_id, _reportable(exc)))  # first: a server that is gone wants no log
            if not isinstance(exc, ATLDError):
                traceback.print_exc()
        else:
            send_or_exit(conn, ("done", task_id, payload))
            save_result(find_view(name), store_target, result)  # after the hand-over: nobody waits for it
        if channel.stop_after:
            return


def main(argv: list[str]) -> int:
    from multiprocessing.connection import Connection

    from atld.priority import lower_process_priority

    quiet_when_parent_gone()  # first: the server may go while torch is imported
    lower_process_priority()
    warnings.filterwarnings("ignore", module="numba")
    conn = Connection(int(argv[1]))
    try:
        serve(conn, argv[2:])
    finally:
        conn.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
