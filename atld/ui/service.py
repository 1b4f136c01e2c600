"""The app's compute service: heavy work off the Streamlit script threads, computed once for all
sessions (Streamlit-free, torch-free).

A *view* is one computation a page shows: one frozen request (a dataclass) and one function of
it, registered with `@view(Request)` (the app's views are in `atld.ui.compute`).
`ComputeService.submit(view, (request,), slot)` returns a `Ticket` at once; the work runs in a
bounded pool of workers:
- kind "process" (the app's default): worker processes (`python -m atld.ui.worker`), so torch's
  and numba's Python-level work never holds the server's GIL and its event loop keeps answering;
  a computation that will not stop is ended by stopping its process (a new one takes its place);
  they start one after another, at a lower CPU priority than the server;
- kind "thread": worker threads in this process (tests, platforms without fd passing).

Keys and sharing: a request is keyed by the view's name and version and its fields, where a
checkpoint (`RunRef`) counts by its content (the model file's hash and the run's config), never
by its path. A finished result is kept in memory (LRU, bounded in entries and bytes) and served to
every session; a request whose key is being computed joins that computation.

Slots and superseded requests: every request comes from a slot (one per browser session and
page purpose, e.g. the Attack page's view). A slot wants only its latest request: a queued
request that no slot wants any more is dropped before it starts, and a slot's next request waits
until its previous one has finished, so of several quick ε changes only the first (already
running) and the last are computed. A running request asked with `interrupt` (UMAP) that nobody
wants any more is cancelled; other running requests finish and their results are kept.

Progress and cancellation travel one way, `atld.progress`: the computation calls `report`, the
service keeps (fraction, text) on its ticket, and a cancel makes the next `report` raise (it is
cooperative); a worker process that has not stopped `CANCEL_GRACE_S` seconds later is killed and
replaced.

Background requests (priority BACKGROUND: pre-computing the default views, warming up a worker)
run only when no session's request is waiting and never on the last free worker (one worker
stays ready for the next visitor); they are never dropped.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import itertools
import json
import os
import pickle
import subprocess
import sys
import threading
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path

from atld.errors import ATLDError
from atld.progress import Cancelled, reporting
from atld.ui.result_store import ResultStore

USER, BACKGROUND = 0, 10  # priorities: lower runs first
CANCEL_GRACE_S = 2.0  # a cancelled computation that has not stopped after this is killed (process workers)
PROGRESS_INTERVAL_S = 0.1  # a worker process sends progress at most this often
READY_TIMEOUT_S = 300.0  # a worker process must have imported its modules within this


class ComputeFailed(ATLDError):
    """A computation failed for a reason that is not the user's input (a bug, a crashed worker)."""


class Superseded(ATLDError):
    """The request was dropped: its slot asked for something newer before it started."""


@dataclass(frozen=True)
class View:
    """A registered computation. `name` ("module:function") is how a worker process finds it."""
    name: str
    fn: Callable
    version: int  # bump when the function's result changes meaning (old cached results become misses)
    interrupt: bool  # cancel it when it is running and nobody wants it any more (long views)
    persist: object = None  # an `atld.ui.result_store.Codec`: results also kept on disk, read without a worker
    request: type | None = None  # the type of its one argument (None: any arguments, the tests' views)
    label: str = "Computing…"  # what a page's progress bar says while it runs

    def __call__(self, *args):
        return self.fn(*args)


VIEWS: dict[str, View] = {}


def view(request: type | None = None, *, version: int = 1, interrupt: bool = False, persist=None,
         label: str = "Computing…") -> Callable[[Callable], View]:
    """Register a module-level function of one `request` (a frozen dataclass) as a view
    (`atld.ui.compute` has the app's views). Its arguments must be values `key_part` knows; its
    result must pickle and be treated as read-only (one object is handed to every session).
    `persist`: a codec (`atld.ui.result_store`) that also keeps its results on disk for every
    later server; `label`: the progress bar's text."""
    def register(fn: Callable) -> View:
        v = View(f"{fn.__module__}:{fn.__qualname__}", fn, version, interrupt, persist, request, label)
        VIEWS[v.name] = v
        return v
    return register


def find_view(name: str) -> View:
    """The registered view `name` (its module is imported when the worker starts)."""
    try:
        return VIEWS[name]
    except KeyError:
        raise ComputeFailed(f"unknown view {name[:80]!r}") from None


def key_part(value):
    """A JSON-able stand-in for one argument: objects with a `cache_key` (a checkpoint reference)
    by their content key and `stamp` (its model file's size and modification time), enums by
    value, floats exactly (repr), containers and dataclasses (requests, configs) element-wise."""
    if hasattr(value, "cache_key"):
        return {"content": value.cache_key, "stamp": getattr(value, "stamp", None)}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: key_part(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if getattr(value, "shape", None) == () and hasattr(value, "item"):  # a NumPy scalar
        value = value.item()
    if isinstance(value, float):
        return {"float": repr(float(value))}
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, (tuple, list)):
        return [key_part(v) for v in value]
    raise TypeError(f"a view argument must be a plain value, not {type(value).__name__}")


def request_key(v: View, args: tuple, context: Hashable = None) -> str:
    """The cache key of `v(*args)`; `context` adds what the computation reads implicitly
    (e.g. the data folder)."""
    text = json.dumps([v.name, v.version, key_part(list(args)), key_part(context)], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


class State(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    DROPPED = "dropped"  # superseded before it started
    CANCELLED = "cancelled"


@dataclass(eq=False)
class _Task:
    key: str
    view: View
    args: tuple
    priority: int
    seq: int
    keep: bool  # a background request: runs without waiters, never dropped
    interrupt: bool = False  # cancel it when it runs and nobody wants it any more (long computations)
    affinity: int | None = None  # only this worker may run it
    waiters: set = field(default_factory=set)  # slots that want it now
    requesters: set = field(default_factory=set)  # every slot that asked (a slot is busy while it runs)
    state: State = State.QUEUED
    event: threading.Event = field(default_factory=threading.Event)
    result: object = None
    error: BaseException | None = None
    fraction: float = 0.0
    text: str = ""
    submitted: float = field(default_factory=time.monotonic)
    started: float | None = None
    finished: float | None = None
    cancel_requested: bool = False


class Pickled:
    """A process worker's result as it came over the pipe, unpickled on first use (once, for every
    session): the server imports a result's modules (torch for a tensor) only when a page reads it."""

    def __init__(self, payload: bytes):
        self._payload, self._value, self._lock = payload, None, threading.Lock()

    def value(self):
        with self._lock:
            if self._payload is not None:
                try:
                    self._value = pickle.loads(self._payload)
                except Exception as exc:  # noqa: BLE001 - a result that cannot be read is a failed computation
                    raise ComputeFailed(f"a computed result could not be read ({type(exc).__name__})") from None
                self._payload = None
            return self._value


def _unwrapped(result):
    return result.value() if isinstance(result, Pickled) else result


class Ticket:
    """A request's handle: `wait(timeout)`, `done()`, `result()` (raises the computation's
    error), `progress()` -> (fraction, text), `seconds()` since it was submitted."""

    def __init__(self, key: str, task: _Task | None = None, result: object = None):
        self.key, self._task, self._result = key, task, result
        self._submitted = time.monotonic()

    def done(self) -> bool:
        return self._task is None or self._task.event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._task is None or self._task.event.wait(timeout)

    def result(self):
        if self._task is None:
            return _unwrapped(self._result)
        self._task.event.wait()
        if self._task.error is not None:
            raise self._task.error
        return _unwrapped(self._task.result)

    def progress(self) -> tuple[float, str]:
        if self._task is None:
            return 1.0, ""
        state = self._task.state
        if state == State.QUEUED:
            return 0.0, "waiting for a free worker"
        return self._task.fraction, self._task.text

    @property
    def state(self) -> State:
        return State.DONE if self._task is None else self._task.state

    def seconds(self) -> float:
        return time.monotonic() - self._submitted


class ComputeService:
    """A bounded pool of workers, an LRU of results and the slots' latest requests (see the
    module docstring). Thread-safe; `close()` stops the workers."""

    def __init__(self, workers: int = 2, kind: str = "process", max_bytes: int = 512 * 2**20,
                 max_entries: int = 512, context: Hashable = None, env: dict | None = None,
                 modules: tuple[str, ...] = ("atld.ui.compute",), store_dir: str | os.PathLike | None = None):
        if kind not in ("process", "thread"):
            raise ValueError(f"worker kind must be 'process' or 'thread', not {kind!r}")
        if not 1 <= workers <= 64:
            raise ValueError("workers must be in 1..64")
        self.kind, self.max_bytes, self.max_entries, self.context = kind, max_bytes, max_entries, context
        self.modules = tuple(modules)  # where the views live; a worker imports them when it starts
        self.store = ResultStore(store_dir) if store_dir is not None else None  # results of `persist` views
        self._env = env
        self._lock = threading.Condition()
        self._tasks: dict[str, _Task] = {}  # queued and running, by key
        self._slots: dict[Hashable, str] = {}  # slot -> key of its latest request
        self._results: OrderedDict[str, tuple[object, int]] = OrderedDict()  # key -> (result, bytes)
        self._bytes = 0
        self._seq = itertools.count()
        self._closed = False
        self.counts = {"hits": 0, "stored_hits": 0, "joined": 0, "computed": 0, "failed": 0, "dropped": 0,
                       "cancelled": 0, "worker_restarts": 0}
        self.timings: dict[str, list] = {}  # view -> [runs, seconds queued, seconds running, longest run]
        self.on_worker_start: Callable[[int], list[tuple[View, tuple]]] | None = None  # per-worker warm-up
        self._first_ready = threading.Event()  # a worker process is up (the others start after it)
        worker = _ProcessWorker if kind == "process" else _ThreadWorker
        self._workers = [worker(self, wid) for wid in range(workers)]

    # ------------------------------------------------------------------ requests

    def submit(self, v: View, args: tuple = (), slot: Hashable = None, priority: int = USER,
               keep: bool = False, affinity: int | None = None, interrupt: bool | None = None) -> Ticket:
        """Request `v(*args)` for `slot` (None: nobody in particular; then it is kept).
        interrupt: whether to cancel it while it runs once nobody wants it (default: the view's)."""
        key = request_key(v, tuple(args), self.context) + ("" if affinity is None else f"@{affinity}")
        keep = keep or slot is None
        stored = self._from_disk(v, key)
        with self._lock:
            if self._closed:
                raise ComputeFailed("the compute service is shut down")
            if slot is not None:
                self._supersede(slot, key)
            if stored is not None and key not in self._results:
                self.counts["stored_hits"] += 1
                self._store(key, stored, approx_bytes(stored))
                return Ticket(key, result=stored)
            hit = self._results.get(key)
            if hit is not None:
                self._results.move_to_end(key)
                self.counts["hits"] += 1
                return Ticket(key, result=hit[0])
            task = self._tasks.get(key)
            if task is None:
                task = _Task(key, v, tuple(args), priority, next(self._seq), keep,
                             v.interrupt if interrupt is None else interrupt, affinity)
                self._tasks[key] = task
                self._lock.notify_all()
            else:
                self.counts["joined"] += 1
                task.priority = min(task.priority, priority)
                task.keep = task.keep or keep
                task.interrupt = task.interrupt and (interrupt if interrupt is not None else v.interrupt)
            if slot is not None:
                task.waiters.add(slot)
                task.requesters.add(slot)
            return Ticket(key, task)

    def _from_disk(self, v: View, key: str):
        """A `persist` view's stored result when this server has not got it in memory, else None
        (a file read, outside the lock)."""
        if v.persist is None or self.store is None:
            return None
        with self._lock:
            if key in self._results or key in self._tasks:
                return None
        return self.store.load(key, v.persist)

    def _store_target(self, task: _Task) -> tuple[str, str] | None:
        """(directory, key) where the worker writes `task`'s result, or None (not a `persist` view)."""
        if task.view.persist is None or self.store is None:
            return None
        return str(self.store.directory), task.key

    def _supersede(self, slot: Hashable, key: str) -> None:
        """`slot` now wants `key`: its previous request loses this waiter (lock held)."""
        old_key = self._slots.get(slot)
        self._slots[slot] = key
        if old_key is None or old_key == key:
            return
        old = self._tasks.get(old_key)
        if old is not None:
            old.waiters.discard(slot)
            self._unwanted(old)

    def _unwanted(self, task: _Task) -> None:
        """Drop or cancel `task` if nobody wants it (lock held)."""
        if task.waiters or task.keep:
            return
        if task.state == State.QUEUED:
            self._end(task, State.DROPPED, error=Superseded("superseded by a newer request"))
            self.counts["dropped"] += 1
        elif task.state == State.RUNNING and task.interrupt:
            self._cancel_running(task)

    def cancel(self, slot: Hashable) -> bool:
        """The slot no longer wants its latest request (a Cancel button): a queued one is dropped, a
        running one cancelled unless another session waits for it. True if something stopped."""
        with self._lock:
            key = self._slots.pop(slot, None)
            task = self._tasks.get(key) if key else None
            if task is None:
                return False
            task.waiters.discard(slot)
            if task.waiters or task.keep:
                return False
            if task.state == State.QUEUED:
                self._end(task, State.CANCELLED, error=Cancelled("cancelled"))
                self.counts["cancelled"] += 1
            else:
                self._cancel_running(task)
            return True

    def _cancel_running(self, task: _Task) -> None:
        if not task.cancel_requested:
            task.cancel_requested = True
            for worker in self._workers:
                worker.cancel(task)

    def forget_slot(self, slot: Hashable) -> None:
        """A session ended: its slot wants nothing any more."""
        with self._lock:
            key = self._slots.pop(slot, None)
            task = self._tasks.get(key) if key else None
            if task is not None:
                task.waiters.discard(slot)
                self._unwanted(task)

    def cached(self, v: View, args: tuple = ()) -> bool:
        """Whether `v(*args)` is computed already, in memory or on disk (no request is made)."""
        key = request_key(v, tuple(args), self.context)
        with self._lock:
            if key in self._results:
                return True
        return v.persist is not None and self.store is not None and self.store.has(key, v.persist)

    # ------------------------------------------------------------------ workers' side

    def _next_task(self, wid: int) -> _Task | None:
        """Block until a task is eligible for worker `wid`, mark it running and return it;
        None when the service closes."""
        with self._lock:
            while True:
                if self._closed:
                    return None
                task = self._pick(wid)
                if task is not None:
                    task.state, task.started = State.RUNNING, time.monotonic()
                    return task
                self._lock.wait()

    def _pick(self, wid: int) -> _Task | None:
        busy, running = set(), 0
        for t in self._tasks.values():
            if t.state == State.RUNNING:
                busy |= t.requesters
                running += 1
        # Background work never takes the last free worker: one stays ready for the next visitor.
        background_ok = len(self._workers) == 1 or running + 1 < len(self._workers)
        best = None
        for t in self._tasks.values():
            if t.state != State.QUEUED or t.affinity not in (None, wid):
                continue
            if not t.keep and t.waiters <= busy:  # every waiter's previous request still runs
                continue
            if t.priority >= BACKGROUND and not background_ok:
                continue
            if best is None or (t.priority, t.seq) < (best.priority, best.seq):
                best = t
        return best

    def _progress(self, task: _Task, fraction: float, text: str) -> None:
        task.fraction, task.text = fraction, text

    def _finish(self, task: _Task, result: object = None, error: BaseException | None = None,
                size: int | None = None) -> None:
        """A worker finished `task` (result, or an error: Cancelled, ATLDError, anything else)."""
        with self._lock:
            if isinstance(error, Cancelled):
                self.counts["cancelled"] += 1
                self._end(task, State.CANCELLED, error=error)
            elif error is not None:
                self.counts["failed"] += 1
                self._end(task, State.FAILED, error=error)
            else:
                self.counts["computed"] += 1
                self._store(task.key, result, approx_bytes(result) if size is None else size)
                self._end(task, State.DONE, result=result)
            timing = self.timings.setdefault(task.view.name.split(":")[-1], [0, 0.0, 0.0, 0.0])
            run = task.finished - (task.started or task.finished)
            timing[0] += 1
            timing[1] += (task.started or task.finished) - task.submitted
            timing[2] += run
            timing[3] = max(timing[3], run)

    def _end(self, task: _Task, state: State, result=None, error=None) -> None:
        task.state, task.result, task.error, task.finished = state, result, error, time.monotonic()
        task.fraction = 1.0 if state == State.DONE else task.fraction
        if self._tasks.get(task.key) is task:
            del self._tasks[task.key]
        task.event.set()
        self._lock.notify_all()  # a slot may have become free

    def _store(self, key: str, result: object, size: int) -> None:
        if size > self.max_bytes // 4:  # too big to keep: served once, computed again next time
            return
        self._results[key] = (result, size)
        self._bytes += size
        while self._results and (len(self._results) > self.max_entries or self._bytes > self.max_bytes):
            _, (_, old) = self._results.popitem(last=False)
            self._bytes -= old

    def warm_workers(self, requests: Callable[[int], list[tuple[View, tuple]]]) -> None:
        """From now on, `requests(wid)` are queued for each worker, now and whenever one (re)starts,
        as background work bound to that worker (e.g. loading compiled code into it)."""
        self.on_worker_start = requests
        lists = [requests(wid) for wid in range(len(self._workers))]
        for i in range(max(map(len, lists), default=0)):  # every worker's first request before any second one
            for wid, todo in enumerate(lists):
                if i < len(todo):
                    self._warm(wid, *todo[i])

    def _worker_started(self, wid: int) -> None:
        """Queue the per-worker warm-up requests of a (re)started worker."""
        if self.on_worker_start is not None:
            for v, args in self.on_worker_start(wid):
                self._warm(wid, v, args)

    def _warm(self, wid: int, v: View, args: tuple) -> None:
        """A warm-up request: background work bound to worker `wid`, below the start-up views."""
        self.submit(v, args, priority=BACKGROUND + 1, keep=True, affinity=wid)

    # ------------------------------------------------------------------ life cycle

    def start(self) -> ComputeService:
        for worker in self._workers:
            worker.start()
        return self

    def stats(self) -> dict:
        with self._lock:
            return {**self.counts, "kind": self.kind, "workers": len(self._workers), "entries": len(self._results),
                    "bytes": self._bytes, "queued": sum(t.state == State.QUEUED for t in self._tasks.values()),
                    "running": sum(t.state == State.RUNNING for t in self._tasks.values()),
                    "pids": [w.pid for w in self._workers],
                    "timings": {name: {"runs": n, "mean_queued_s": round(q / n, 3), "mean_run_s": round(r / n, 3),
                                       "max_run_s": round(m, 3)} for name, (n, q, r, m) in self.timings.items()}}

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for task in list(self._tasks.values()):
                self._end(task, State.CANCELLED, error=Cancelled("the compute service is shut down"))
            self._lock.notify_all()
        for worker in self._workers:
            worker.stop()


def approx_bytes(obj, _depth: int = 0) -> int:
    """Memory held by a result, roughly: arrays and tensors by their buffers, containers and
    dataclasses by their items, strings by length."""
    if _depth > 6:
        return 64
    nbytes = getattr(obj, "nbytes", None)
    if isinstance(nbytes, int):
        return nbytes
    if hasattr(obj, "element_size") and hasattr(obj, "numel"):
        return obj.element_size() * obj.numel()
    if isinstance(obj, (str, bytes)):
        return len(obj)
    if isinstance(obj, dict):
        return 64 + sum(approx_bytes(k, _depth + 1) + approx_bytes(v, _depth + 1) for k, v in obj.items())
    if isinstance(obj, (list, tuple, set)):
        return 64 + sum(approx_bytes(v, _depth + 1) for v in obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return 64 + sum(approx_bytes(getattr(obj, f.name), _depth + 1) for f in dataclasses.fields(obj))
    return 64


def run_view(task_view: View, args: tuple, listener) -> object:
    """Run a view with `listener` receiving its progress (both worker kinds use this)."""
    with reporting(listener):
        return task_view.fn(*args)


def save_result(v: View, target: tuple[str, str] | None, result) -> None:
    """Write a `persist` view's result where the service said (`_store_target`), after it was
    handed over: a failed write only means it is computed again next time."""
    if target is not None:
        try:
            ResultStore(target[0]).save(target[1], v.persist, result)
        except Exception:  # noqa: BLE001 - an unwritable result is not an error of the computation
            traceback.print_exc()


def as_reportable(exc: BaseException) -> BaseException:
    """User errors (ATLDError) and cancellations pass as they are; anything else becomes one line."""
    if isinstance(exc, (ATLDError, Cancelled)):
        return exc
    return ComputeFailed(f"the computation failed: {type(exc).__name__}: {str(exc)[:300]}")


class _ThreadWorker:
    """A worker thread of this process. Cancellation: the task's next progress report raises."""

    def __init__(self, service: ComputeService, wid: int):
        self.service, self.wid = service, wid
        self.pid = os.getpid()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name=f"atld-compute-{self.wid}", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        import importlib

        for module in self.service.modules:
            importlib.import_module(module)
        self.service._worker_started(self.wid)
        while True:
            task = self.service._next_task(self.wid)
            if task is None:
                return

            def listener(fraction: float, text: str, task=task) -> None:
                if task.cancel_requested:
                    raise Cancelled("cancelled")
                self.service._progress(task, fraction, text)

            try:
                result = run_view(task.view, task.args, listener)
            except BaseException as exc:  # noqa: BLE001 - every failure ends the task, the worker lives on
                if not isinstance(exc, (ATLDError, Cancelled)):
                    traceback.print_exc()
                self.service._finish(task, error=as_reportable(exc))
            else:
                self.service._finish(task, result)
                save_result(task.view, self.service._store_target(task), result)

    def cancel(self, task: _Task) -> None:
        pass  # the listener sees task.cancel_requested

    def stop(self) -> None:
        pass  # daemon thread; _next_task returns None once the service is closed


class _ProcessWorker:
    """One worker process (`python -m atld.ui.worker FD MODULE...`) and the server thread that feeds it.

    Messages (pickled over a pipe): to the worker ("run", id, view name, args, store target),
    ("cancel", id), ("stop",); from it ("ready", pid), ("progress", id, fraction, text), ("done", id, payload
    bytes), ("error", id, exception), ("cancelled", id)."""

    def __init__(self, service: ComputeService, wid: int):
        self.service, self.wid = service, wid
        self.pid: int | None = None
        self._proc: subprocess.Popen | None = None
        self._conn = None
        self._send_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._current: _Task | None = None
        self._stopping = False

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name=f"atld-compute-{self.wid}", daemon=True)
            self._thread.start()

    def _spawn(self) -> None:
        from multiprocessing import Pipe

        ours, theirs = Pipe(duplex=True)
        root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ if self.service._env is None else self.service._env)
        env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
        self._proc = subprocess.Popen([sys.executable, "-m", "atld.ui.worker", str(theirs.fileno()),
                                       *self.service.modules],
                                      pass_fds=(theirs.fileno(),), env=env, cwd=root, stdin=subprocess.DEVNULL)
        theirs.close()
        self._conn = ours
        if not ours.poll(READY_TIMEOUT_S):
            raise ComputeFailed("a compute worker did not start")
        message = ours.recv()
        if message[0] != "ready":
            raise ComputeFailed(f"a compute worker did not start: {message!r:.200}")
        self.pid = message[1]

    def _loop(self) -> None:
        first = True
        if self.wid > 0:  # one worker imports torch at a time: the browser drawing the first page needs the cores
            self.service._first_ready.wait(READY_TIMEOUT_S)
        while not self._stopping:
            try:
                self._spawn()
            except (OSError, EOFError, ComputeFailed) as exc:
                print(f"atld: compute worker {self.wid} failed to start: {exc}", file=sys.stderr)
                self._kill()
                time.sleep(5)
                continue
            if not first:
                self.service.counts["worker_restarts"] += 1
            first = False
            self.service._first_ready.set()
            self.service._worker_started(self.wid)
            if not self._serve():
                return

    def _serve(self) -> bool:
        """Feed tasks to the live process; False when the service closes, True when the process
        died (it is then restarted)."""
        while True:
            task = self.service._next_task(self.wid)
            if task is None:
                self.stop()
                return False
            self._current = task
            try:
                with self._send_lock:
                    self._conn.send(("run", id(task), task.view.name, task.args, self.service._store_target(task)))
                if task.cancel_requested:
                    self.cancel(task)
                while True:
                    message = self._conn.recv()
                    kind = message[0]
                    if kind == "progress":
                        self.service._progress(task, message[2], message[3])
                    elif kind == "done":
                        self.service._finish(task, Pickled(message[2]), size=len(message[2]))
                        break
                    elif kind == "error":
                        self.service._finish(task, error=message[2])
                        break
                    elif kind == "cancelled":
                        self.service._finish(task, error=Cancelled("cancelled"))
                        break
            except (EOFError, OSError) as exc:
                error = Cancelled("cancelled") if task.cancel_requested else \
                    ComputeFailed(f"the compute worker stopped while computing ({type(exc).__name__})")
                self.service._finish(task, error=error)
                self._current = None
                self._kill()
                return not self._stopping
            finally:
                self._current = None

    def cancel(self, task: _Task) -> None:
        """Ask the process to stop `task` at its next progress report; kill it if it does not."""
        if self._current is not task or self._conn is None:
            return
        try:
            with self._send_lock:
                self._conn.send(("cancel", id(task)))
        except OSError:
            pass
        proc = self._proc

        def backstop() -> None:
            if self._current is task and self._proc is proc:
                self._kill()

        timer = threading.Timer(CANCEL_GRACE_S, backstop)
        timer.daemon = True
        timer.start()

    def _kill(self) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        if self._conn is not None:
            try:
                self._conn.close()
            except OSError:
                pass

    def stop(self) -> None:
        self._stopping = True
        try:
            if self._conn is not None:
                with self._send_lock:
                    self._conn.send(("stop",))
        except (OSError, ValueError):
            pass
        proc = self._proc
        if proc is not None:
            try:
                proc.wait(2)
            except subprocess.TimeoutExpired:
                self._kill()
