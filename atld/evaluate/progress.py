"""Progress of a long evaluation: which attack, which part, which batch, how far overall, and an
estimate of the time left, delivered to one callback (the CLI draws a tqdm bar on stderr, the app
its progress bar; both read the same `ProgressEvent`).

The estimate weighs every planned attack run (a `Task`) by its cost: for each of its parts, the
cost per image (`NamedAttack.cost`, in gradient evaluations of the model) × (images +
`STEP_OVERHEAD_IMAGES`), × `IMT_COST` when the attack goes through IMT. APGD-based attacks only
attack the images the model gets right, and AutoAttack's later parts only the images still
robust: once the evaluation has measured the natural accuracy and an attack's accuracy
(`observe`), the parts not yet started are planned on those shares of the images; when a part
starts, on the images it really gets.

time left = the weighted work left × the seconds per unit of weighted work measured so far, from
the batches the attacks finished (never from the time before the first batch: loading, the
natural pass and a first tiny attack weigh almost nothing and would be extrapolated a hundredfold).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from atld.attacks.progress import BatchEvent, BatchProgress

# an attack step through IMT against one on the bare classifier: f twice and the small D, with a
# straight-through backward (APGD through IMT on cifar10-atld took 1.2-1.4x the bare time); the
# rate measured on the first attack through IMT replaces it
IMT_COST = 1.5
# A step on a few images costs about as much as on this many more: the per-step overhead of a small
# batch (measured on the CPU: AutoAttack's FAB-T and Square on 4 MNIST images took 2.6x APGD-CE's
# time on 199, where images x steps alone predicts a third of it)
STEP_OVERHEAD_IMAGES = 32
MIN_FRACTION = 0.01  # no time estimate before 1 % of the weighted work is done


@dataclass(frozen=True)
class Task:
    """One attack run of an evaluation: what it is, its parts' cost per image, and how many images."""
    label: str  # "autoattack on the bare classifier (serves atld-, atld, atld+)"
    parts: tuple[tuple[str, float], ...]  # (part, gradient evaluations per image)
    images: int
    scale: float = 1.0  # IMT_COST for attacks through IMT
    # APGD's parts attack only the images the model gets right (False: every image, as PGD does)
    on_correct: bool = False
    # AutoAttack: every part after the first attacks only the images still robust
    later_on_robust: bool = False

    @property
    def weight(self) -> float:
        return self.scale * sum(work(cost, self.images) for _, cost in self.parts)

    def share(self, later: bool, clean: float, robust: float) -> float:
        """The share of the images a part attacks (the first part, or a `later` one) when a share
        `clean` of them is classified right and `robust` survives an attack (1.0 when unknown)."""
        first = clean if self.on_correct else 1.0
        return min(first, robust) if later and self.later_on_robust else first

    def planned_weight(self, clean: float, robust: float) -> float:
        """The weight on the shares measured so far (`share`)."""
        first, later = self.share(False, clean, robust), self.share(True, clean, robust)
        costs = [cost for _, cost in self.parts]
        if not costs:
            return 0.0
        return self.scale * (work(costs[0], round(self.images * first))
                             + sum(work(c, round(self.images * later)) for c in costs[1:]))


def work(cost: float, images: int) -> float:
    """The weight of one part: its cost per image × the images, plus the per-step overhead."""
    return cost * (images + STEP_OVERHEAD_IMAGES) if images > 0 else 0.0


@dataclass(frozen=True)
class ProgressEvent:
    """One update. fraction: of the whole job's weighted work, in [0, 1]; elapsed and eta in
    seconds (eta None until it can be estimated); part_seconds: set on the event that ends a part."""
    task: str
    part: str
    batch: int
    batches: int
    images: int
    step: int  # 1-based index of the task
    steps: int
    fraction: float
    elapsed: float
    eta: float | None
    part_seconds: float | None = None

    def text(self) -> str:
        where = f"[{self.step}/{self.steps}] {self.task}"
        if self.part:
            where += f" · {self.part}" + (f" batch {self.batch}/{self.batches}" if self.batches else "")
        left = f", about {clock(self.eta)} left" if self.eta is not None else ""
        return f"{where} · {100 * self.fraction:.0f} % · {clock(self.elapsed)} elapsed{left}"


ProgressCallback = Callable[[ProgressEvent], None]


def clock(seconds: float) -> str:
    """12.3 -> "0:12", 3725 -> "1:02:05"."""
    seconds = int(round(max(seconds, 0.0)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


@dataclass
class ProgressTracker:
    """Turns the attacks' batch events into `ProgressEvent`s for `callback` (see the module
    docstring). `begin(i)` starts task i and returns the batch callback to hand to its attack;
    `observe` takes each row's accuracy; `finish()` reports 100 %. `timings` collects (task, part,
    images, seconds) of every part."""
    tasks: list[Task]
    callback: ProgressCallback | None = None
    now: Callable[[], float] = time.perf_counter
    timings: list[tuple[str, str, int, float]] = field(default_factory=list)

    def __post_init__(self):
        self._t0 = self.now()
        self._done = 0.0  # weight of finished tasks
        self._index = -1
        self._task_done = 0.0  # weight of finished parts of the current task
        self._part: BatchEvent | None = None
        self._part_weight = 0.0
        self._part_t0 = self._t0
        self._remaining: list[float] = [t.weight for t in self.tasks]
        self._clean, self._robust = 1.0, 1.0  # shares of the images measured so far (`observe`)
        # seconds and weighted work of finished batches, per task scale (bare classifier / through
        # IMT): IMT_COST is a guess, and the measured rate of each kind replaces it
        self._rate: dict[float, list[float]] = {}
        self._last_batch: tuple[float, float] | None = None  # (time, weight done) at the part's last event

    def observe(self, accuracy: float, natural: bool) -> None:
        """An evaluation row's accuracy (`natural`: the row without attack): the tasks not yet
        started are planned again on the shares of the images their parts will attack."""
        accuracy = min(max(float(accuracy), 0.0), 1.0)
        if natural:
            self._clean = accuracy
        else:
            self._robust = min(self._robust, accuracy)
        for i in range(self._index + 1, len(self.tasks)):
            self._remaining[i] = self.tasks[i].planned_weight(self._clean, self._robust)

    def _cost(self, task: Task, part: str) -> float:
        return dict(task.parts).get(part, 1.0)

    def _attacked(self, task: Task, part: str, images: int) -> int:
        """Images a part really attacks: an APGD part gets every image but attacks only those the
        model gets right (and, after the first part, those still robust)."""
        if not task.on_correct:
            return images
        names = [p for p, _ in task.parts]
        share = task.share(bool(names) and part != names[0], self._clean, self._robust)
        return min(images, max(1, round(task.images * share)))

    def _later_parts_weight(self, task: Task, part: str, images: int) -> float:
        names = [p for p, _ in task.parts]
        later = names[names.index(part) + 1:] if part in names else []
        return task.scale * sum(work(self._cost(task, p), self._attacked(task, p, images)) for p in later)

    def next_index(self) -> int:
        """The task `begin` should start next."""
        return self._index + 1

    def begin(self, index: int) -> BatchProgress:
        self._close_task()
        self._index = index
        self._task_done = 0.0
        self._part = None
        self._emit(BatchEvent("", 0, 0, self.tasks[index].images))
        return self._on_batch

    def _close_task(self) -> None:
        if self._index >= 0:
            ran = self._part is not None
            self._done += self._task_done + self._part_weight if ran else self.tasks[self._index].weight
            self._remaining[self._index] = 0.0
            self._part, self._part_weight, self._task_done = None, 0.0, 0.0

    def _on_batch(self, event: BatchEvent) -> None:
        task = self.tasks[self._index]
        t = self.now()
        if event.batch == 0:
            if self._part is not None:
                self._task_done += self._part_weight
            self._part, self._part_t0 = event, t
            self._part_weight = task.scale * work(self._cost(task, event.part),
                                                  self._attacked(task, event.part, event.images))
            self._remaining[self._index] = self._part_weight + self._later_parts_weight(task, event.part,
                                                                                          event.images)
            self._last_batch = (t, 0.0)
        elif self._last_batch is not None and event.batches:  # a finished batch: measure the rate
            done = self._part_weight * event.batch / event.batches
            rate = self._rate.setdefault(task.scale, [0.0, 0.0])
            rate[0] += t - self._last_batch[0]
            rate[1] += done - self._last_batch[1]
            self._last_batch = (t, done)
        part_seconds = None
        if event.batches and event.batch == event.batches:
            part_seconds = t - self._part_t0
            self.timings.append((task.label, event.part, event.images, part_seconds))
        self._emit(event, part_seconds)

    def _seconds_per_weight(self, scale: float) -> float | None:
        """Measured seconds per unit of weight for tasks of `scale`; from the other kind's rate
        (scaled by its guess) until that kind has been measured; None before any batch ended."""
        seconds, weight = self._rate.get(scale, (0.0, 0.0))
        if weight > 0:
            return seconds / weight
        seconds, weight = (sum(v[0] for v in self._rate.values()), sum(v[1] for v in self._rate.values()))
        return seconds / weight if weight > 0 else None

    def _eta(self, in_part_left: float) -> float | None:
        left = {}
        if self._index >= 0:
            task = self.tasks[self._index]
            current = self._remaining[self._index] - (self._part_weight - in_part_left if self._part else 0.0)
            left[task.scale] = left.get(task.scale, 0.0) + max(current, 0.0)
        for i in range(self._index + 1, len(self.tasks)):
            left[self.tasks[i].scale] = left.get(self.tasks[i].scale, 0.0) + self._remaining[i]
        eta = 0.0
        for scale, weight in left.items():
            rate = self._seconds_per_weight(scale)
            if rate is None:
                return None
            eta += weight * rate
        return eta

    def _emit(self, event: BatchEvent, part_seconds: float | None = None) -> None:
        if self.callback is None:
            return
        in_part = self._part_weight * (event.batch / event.batches) if self._part is not None and event.batches else 0
        done = self._done + self._task_done + in_part
        total = self._done + self._task_done + sum(self._remaining)
        fraction = min(done / total, 1.0) if total > 0 else 0.0
        elapsed = self.now() - self._t0
        eta = self._eta(self._part_weight - in_part) if fraction >= MIN_FRACTION else None
        self.callback(ProgressEvent(self.tasks[self._index].label if self._index >= 0 else "", event.part,
                                    event.batch, event.batches, event.images, self._index + 1, len(self.tasks),
                                    fraction, elapsed, eta, part_seconds))

    def finish(self) -> None:
        self._close_task()
        if self.callback is not None:
            elapsed = self.now() - self._t0
            self.callback(ProgressEvent("done", "", 0, 0, 0, len(self.tasks), len(self.tasks), 1.0, elapsed, 0.0))
