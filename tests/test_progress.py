"""Progress of long evaluations: the tracker's fraction and time estimate (atld.evaluate.progress),
the events an evaluation emits (AutoAttack's inner attacks included), each shared attack's
seconds reported once, and the CLI's tqdm bar on stderr."""

from __future__ import annotations

import pytest

from atld.attacks.progress import BatchEvent
from atld.cli import main
from atld.config.eval import EvalConfig
from atld.evaluate import ProgressTracker, evaluate
from atld.evaluate.progress import Task, clock


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_tracker_fraction_eta_and_part_timings():
    now, events = FakeClock(), []
    tasks = [Task("a", (("PGD-20", 20.0),), 100), Task("b", (("APGD-CE", 100.0), ("APGD-T", 900.0)), 100)]
    tracker = ProgressTracker(tasks, events.append, now)  # weights 2,000 and 100,000
    batches = tracker.begin(0)
    batches(BatchEvent("PGD-20", 0, 2, 100))
    now.t = 10.0
    batches(BatchEvent("PGD-20", 2, 2, 100))
    assert events[-1].fraction == pytest.approx(2000 / 102000) and events[-1].part_seconds == 10.0
    assert events[-1].eta == pytest.approx(10.0 * (1 - 2000 / 102000) / (2000 / 102000))
    batches = tracker.begin(1)
    batches(BatchEvent("APGD-CE", 0, 1, 100))
    now.t = 20.0
    batches(BatchEvent("APGD-CE", 1, 1, 100))
    batches(BatchEvent("APGD-T", 0, 1, 10))  # only 10 points are still robust: the rest of b shrinks
    assert events[-1].fraction == pytest.approx(12000 / (12000 + 9000))
    now.t = 30.0
    batches(BatchEvent("APGD-T", 1, 1, 10))
    tracker.finish()
    assert events[-1].fraction == 1.0 and events[-1].eta == 0.0
    assert [(t, p, n) for t, p, n, _ in tracker.timings] == [("a", "PGD-20", 100), ("b", "APGD-CE", 100),
                                                           ("b", "APGD-T", 10)]
    text = events[-2].text()
    assert text.startswith("[2/2] b · APGD-T batch 1/1 · 100 %") and "0:30 elapsed" in text
    assert clock(3725) == "1:02:05" and clock(12.4) == "0:12"


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
