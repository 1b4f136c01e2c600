"""A compute worker process of the app (`python -m atld.ui.worker FD MODULE...`; started by
`atld.ui.service`, never by hand). It imports the modules that hold the views once (torch with
them), then runs the views the server sends over the pipe FD, one at a time, and sends back their
results, errors and progress. It ends when the server says so or its pipe closes (the server is
gone)."""

from __future__ import annotations

import os
import pickle
import sys
import time
import traceback
import warnings

from atld.progress import Cancelled


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
            self.conn.send(("progress", self.task_id, fraction, text))

    def _read_control(self) -> None:
        while self.conn.poll():
            message = self.conn.recv()
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
    conn.send(("ready", os.getpid()))
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
            conn.send(("cancelled", task_id))
        except BaseException as exc:  # noqa: BLE001 - report every failure, keep serving
            from atld.errors import ATLDError

            if not isinstance(exc, ATLDError):
                traceback.print_exc()
            conn.send(("error", task_id, _reportable(exc)))
        else:
            conn.send(("done", task_id, payload))
            save_result(find_view(name), store_target, result)  # after the hand-over: nobody waits for it
        if channel.stop_after:
            return


def main(argv: list[str]) -> int:
    from multiprocessing.connection import Connection

    from atld.priority import lower_process_priority

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
