"""Compute workers (`atld.ui.worker`, `atld.parent_watch`) exit quietly when their server goes
away, whatever they are doing, and never outlive it: a real worker process is started as the
service starts it, its server end is closed or its parent process killed at each stage, and it
must be gone within seconds with exit status 0 and nothing on its stderr."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from multiprocessing import Pipe
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VIEWS = "tests.service_views"


def _start_worker():
    ours, theirs = Pipe(duplex=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "atld.ui.worker", str(theirs.fileno()), VIEWS],
                            pass_fds=(theirs.fileno(),), env=env, cwd=ROOT, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    theirs.close()
    return ours, proc


def _run(conn, view: str, *args):
    from atld.ui.service import find_view  # noqa: F401 - the views are registered by name

    conn.send(("run", 1, f"{VIEWS}:{view}", args, None))


def _ends_quietly(proc, within: float = 10.0):
    try:
        out, err = proc.communicate(timeout=within)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("the worker outlived its server")
    assert proc.returncode == 0, (proc.returncode, err.decode()[-2000:])
    assert b"Traceback" not in err and not err.strip(), err.decode()[-2000:]


STAGES = {
    "while it imports its modules (before 'ready')": lambda conn: None,
    "while a view reports progress": lambda conn: (conn.recv(), _run(conn, "counting", 400, 0.02), time.sleep(1.0)),
    "while a view runs silently, then finishes": lambda conn: (conn.recv(), _run(conn, "stubborn", 1.5)),
    "while a view fails": lambda conn: (conn.recv(), _run(conn, "failing", "boom")),
    "while it waits for work": lambda conn: (conn.recv(), time.sleep(0.3)),
}


@pytest.mark.parametrize("stage", list(STAGES))
def test_a_worker_whose_server_closes_its_end_exits_quietly(stage):
    conn, proc = _start_worker()
    try:
        STAGES[stage](conn)
    finally:
        conn.close()
    _ends_quietly(proc)


def test_a_worker_whose_parent_dies_never_outlives_it(tmp_path):
    """A parent process starts the worker, gives it a long silent view, then is SIGKILLed while
    holding the pipe open in a grandchild (so only the parent's death can tell the worker)."""
    script = tmp_path / "parent.py"
    script.write_text(textwrap.dedent(f"""
        import os, subprocess, sys, time
        from multiprocessing import Pipe
        ours, theirs = Pipe(duplex=True)
        env = {{**os.environ, "PYTHONPATH": {str(ROOT)!r}}}
        proc = subprocess.Popen([sys.executable, "-m", "atld.ui.worker", str(theirs.fileno()), {VIEWS!r}],
                                pass_fds=(theirs.fileno(), ours.fileno()), env=env, cwd={str(ROOT)!r},
                                stdin=subprocess.DEVNULL, stderr=open({str(tmp_path / 'err')!r}, 'wb'))
        assert ours.recv()[0] == "ready"
        ours.send(("run", 1, {VIEWS + ':stubborn'!r}, (120.0,), None))
        print(proc.pid, flush=True)
        time.sleep(120)
    """))
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, cwd=ROOT)
    try:
        worker_pid = int(parent.stdout.readline())
        time.sleep(0.3)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(10)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and _alive(worker_pid):
            time.sleep(0.1)
        assert not _alive(worker_pid), "the worker outlived its parent"
    finally:
        if parent.poll() is None:
            parent.kill()
    assert b"Traceback" not in (tmp_path / "err").read_bytes()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie of a reaped-by-init process counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return False


def test_ctrl_c_in_the_server_terminal_is_left_to_the_server():
    conn, proc = _start_worker()
    assert conn.recv()[0] == "ready"
    proc.send_signal(signal.SIGINT)  # what a terminal's Ctrl-C sends the whole process group
    time.sleep(0.3)
    _run(conn, "echo", 7)
    kind, _, payload = conn.recv()
    assert kind == "done" and pickle.loads(payload) == {"value": 7}
    conn.close()
    _ends_quietly(proc)
