"""Progress of long evaluations: the tracker's fraction and time estimate (atld.evaluate.progress),
the events an evaluation emits (AutoAttack's inner attacks included), each shared attack's
seconds reported once, and the CLI's tqdm bar on stderr."""

from __future__ import annotations

import pytest

from atld.attacks.progress import BatchEvent
from atld.cli import main
from atld.config.eval import EvalConfig
from atld.evaluate import ProgressTracker, evaluate
from atld.evaluate.progress import Task, clock, work


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_tracker_fraction_eta_and_part_timings():
    now, events = FakeClock(), []
    tasks = [Task("a", (("PGD-20", 20.0),), 100), Task("b", (("APGD-CE", 100.0), ("APGD-T", 900.0)), 100)]
    tracker = ProgressTracker(tasks, events.append, now)
    a, b = work(20, 100), work(100, 100) + work(900, 100)
    batches = tracker.begin(0)
    batches(BatchEvent("PGD-20", 0, 2, 100))
    now.t = 10.0
    batches(BatchEvent("PGD-20", 2, 2, 100))
    assert events[-1].fraction == pytest.approx(a / (a + b)) and events[-1].part_seconds == 10.0
    assert events[-1].eta == pytest.approx(b * 10.0 / a)  # the work left at the rate measured
    batches = tracker.begin(1)
    batches(BatchEvent("APGD-CE", 0, 1, 100))
    now.t = 20.0
    batches(BatchEvent("APGD-CE", 1, 1, 100))
    batches(BatchEvent("APGD-T", 0, 1, 10))  # only 10 points are still robust: the rest of b shrinks
    done = a + work(100, 100)
    assert events[-1].fraction == pytest.approx(done / (done + work(900, 10)))
    now.t = 30.0
    batches(BatchEvent("APGD-T", 1, 1, 10))
    tracker.finish()
    assert events[-1].fraction == 1.0 and events[-1].eta == 0.0
    assert [(t, p, n) for t, p, n, _ in tracker.timings] == [("a", "PGD-20", 100), ("b", "APGD-CE", 100),
                                                           ("b", "APGD-T", 10)]
    text = events[-2].text()
    assert text.startswith("[2/2] b · APGD-T batch 1/1 · 100 %") and "0:30 elapsed" in text
    assert clock(3725) == "1:02:05" and clock(12.4) == "0:12"


def test_the_estimate_ignores_the_time_before_the_first_batch():
    """Loading, the natural pass and set-up weigh nothing: extrapolated, a few seconds of them made
    a 41-second evaluation announce seven minutes."""
    now, events = FakeClock(), []
    tracker = ProgressTracker([Task("pgd20", (("PGD-20", 20.0),), 100)], events.append, now)
    batches = tracker.begin(0)
    now.t = 5.0  # set-up before the attack's first batch
    batches(BatchEvent("PGD-20", 0, 4, 100))
    assert events[-1].eta is None  # nothing measured yet
    now.t = 6.0
    batches(BatchEvent("PGD-20", 1, 4, 100))
    assert events[-1].eta == pytest.approx(3.0)  # three more batches of one second each


def test_parts_not_started_are_planned_on_the_images_they_will_attack():
    now, events = FakeClock(), []
    aa = Task("autoattack", (("APGD-CE", 100.0), ("APGD-T", 900.0)), 100, on_correct=True, later_on_robust=True)
    tracker = ProgressTracker([Task("pgd20", (("PGD-20", 20.0),), 100), aa], events.append, now)
    batches = tracker.begin(0)
    tracker.observe(0.6, natural=True)  # 60 images classified right
    batches(BatchEvent("PGD-20", 0, 1, 100))
    now.t = 2.0
    batches(BatchEvent("PGD-20", 1, 1, 100))  # in 2 s
    tracker.observe(0.1, natural=False)  # 10 still robust after PGD-20
    batches = tracker.begin(1)
    pgd, planned = work(20, 100), work(100, 60) + work(900, 10)
    assert events[-1].eta == pytest.approx(planned * 2.0 / pgd)
    assert events[-1].fraction == pytest.approx(pgd / (pgd + planned))
    batches(BatchEvent("APGD-CE", 0, 1, 100))  # APGD gets every image but attacks the 60 right ones
    assert events[-1].fraction == pytest.approx(pgd / (pgd + planned))


def test_attacks_through_imt_get_their_own_measured_rate():
    now, events = FakeClock(), []
    tasks = [Task("pgd20 / atld-", (("PGD-20", 20.0),), 10), Task("pgd20 / atld", (("PGD-20", 20.0),), 10, 3.0),
             Task("pgd20 / atld+", (("PGD-20", 20.0),), 10, 3.0)]
    tracker = ProgressTracker(tasks, events.append, now)
    for i, seconds in enumerate((1.0, 10.0)):  # through IMT: 10x the bare time, far from the 3x planned
        batches = tracker.begin(i)
        batches(BatchEvent("PGD-20", 0, 1, 10))
        now.t += seconds
        batches(BatchEvent("PGD-20", 1, 1, 10))
    assert events[-1].eta == pytest.approx(10.0)  # the last task, at the rate measured through IMT


@pytest.mark.slow  # over 10 s
def test_autoattack_reports_every_inner_attack_and_each_shared_attack_once(atld_run, digits):
    events = []
    config = EvalConfig(attacks=("natural", "pgd20", "autoattack"), limit=6, device="cpu", epsilon=0.02)
    report = evaluate(atld_run, config, data=digits, progress=events.append)
    parts = {(e.task.split(" ")[0], e.part) for e in events if e.part}
    assert {("autoattack", p) for p in ("APGD-CE", "APGD-T", "FAB-T", "Square")} <= parts
    assert ("pgd20", "PGD-20") in parts and ("discriminator", "D scores") in parts
    assert events[-1].fraction == 1.0 and any(e.eta is not None for e in events)
    assert all(e.step <= e.steps for e in events)
    runs = [t for t in report.meta["timings"] if t["task"].startswith("autoattack")]
    assert [t["part"] for t in runs] == ["APGD-CE", "APGD-T", "FAB-T", "Square"]  # one shared run, reported once
    aa = [report.row("autoattack", m) for m in ("atld-", "atld", "atld+")]
    assert aa[0]["seconds"] >= sum(t["seconds"] for t in runs) - 0.01  # counted in the first row only
    assert all(r["seconds"] < aa[0]["seconds"] and "counted there" in r["note"] for r in aa[1:])


def test_cli_shows_progress_per_attack_and_batch_on_stderr(natural_run, capsys):
    code = main(["eval", "--checkpoint", str(natural_run.path), "--attacks", "natural,pgd20,adaptive", "--limit", "12",
                 "--batch-size", "5", "--apgd-steps", "5", "--device", "cpu"])
    captured = capsys.readouterr()
    assert code == 0 and "batch" not in captured.out  # data on stdout, progress on stderr
    err = captured.err
    for fragment in ("pgd20 on the bare classifier · PGD-20 batch 3/3", "adaptive / atld- · APGD-T batch 2/3",
                     "elapsed", "left", "APGD-T: 12 images"):
        assert fragment in err, fragment
