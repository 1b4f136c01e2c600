"""How long the app's runs list takes with many runs (docs/security.md, "The runs list").

Makes RUNS run folders in a temporary directory (each a copy of the shipped digits-atld card,
no tensor files: listing never reads them) plus BIG oversized-but-valid cards of about 13.5 MB
(15,000 epochs of 40 metrics), then times `atld.ui.runs.discover_runs` over them:
- cold: a fresh process's first listing (every card read and validated once);
- warm: the next listings (what every sidebar rerun pays), median of REPEATS;
- incremental: after 10 cards changed (only those are read again);
- card_of of one big card, cold (what a page showing that run pays once).
The old code cleared its cache past 1,000 cards, so every rerun paid the cold figure.

    python -m benchmarks.bench_runs_list [--runs 5000] [--big 8]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

REPEATS = 5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5000)
    parser.add_argument("--big", type=int, default=8)
    args = parser.parse_args()
    import torch  # noqa: F401 - not needed by the listing; imported so the numbers do not include a stray import

    torch.set_num_threads(1)
    from atld.runs.card import CARD, read_card
    from atld.ui import runs as ui_runs

    print(f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, {os.cpu_count()} cores, "
          f"load average before {os.getloadavg()[0]:.1f}")
    card = read_card(Path(__file__).resolve().parents[1] / "checkpoints" / "digits-atld")
    text = json.dumps(card, indent=1)
    big = {**card, "metrics": [{f"m{k}": 0.123456789 * k for k in range(40)} for _ in range(15000)],
           }
    big_text = json.dumps(big, indent=1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "runs"
        for i in range(args.runs):
            d = root / f"run-{i:05d}"
            d.mkdir(parents=True)
            (d / CARD).write_text(text)
        for i in range(args.big):
            d = root / f"big-{i}"
            d.mkdir()
            (d / CARD).write_text(big_text)
        print(f"{args.runs} runs of {len(text) / 1e3:.1f} kB cards + {args.big} cards of {len(big_text) / 1e6:.1f} MB")
        dirs = [("runs", root)]
        start = time.perf_counter()
        listed = ui_runs.discover_runs(dirs)
        cold = time.perf_counter() - start
        assert len(listed) == args.runs + args.big, len(listed)
        warm = []
        for _ in range(REPEATS):
            start = time.perf_counter()
            ui_runs.discover_runs(dirs)
            warm.append(time.perf_counter() - start)
        for i in range(10):
            (root / f"run-{i * 400:05d}" / CARD).write_text(text.replace('"status": "finished"', '"status": "stopped"'))
        start = time.perf_counter()
        ui_runs.discover_runs(dirs)
        incremental = time.perf_counter() - start
        start = time.perf_counter()
        assert ui_runs.card_of(root / "big-0") is not None
        big_card = time.perf_counter() - start
    print(f"cold listing: {cold:.2f} s ({1e3 * cold / (args.runs + args.big):.2f} ms per run)")
    print(f"warm listing (every rerun): median {1e3 * statistics.median(warm):.0f} ms, max {1e3 * max(warm):.0f} ms "
          f"of {REPEATS}")
    print(f"after 10 cards changed: {1e3 * incremental:.0f} ms")
    print(f"card_of one {len(big_text) / 1e6:.1f} MB card, cold: {big_card:.2f} s")
    print(f"load average after {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
