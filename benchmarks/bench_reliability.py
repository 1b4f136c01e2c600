"""Figures for the reload and concurrency defences (docs/security.md), measured on this machine.

    python -m benchmarks.bench_reliability            # about 1-2 minutes on 2 CPU cores

1. reload: a training job started from the Train page (Streamlit's AppTest), then a new session
   with the same address (run + key): seconds until it shows the job's Stop button, seconds from
   its Stop to the job's end; a session with a wrong key gets no Stop.
2. unwatched time limit: a job nobody looks at any more (the limit set to 5 s): seconds from the
   last look to the job's stop.
3. concurrency: N `python -m atld train` processes started at once with the same --out: how many
   train, how many are refused (one line, exit 2), and how long a refusal takes.
4. a reader polling a run while it trains: loads per second, how many were refused ("changed
   while it was read"), whether epochs ever went back, and the trainer's wall time with and
   without the reader (the ratio is the reader's cost on a shared machine).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

from atld.config.train import TrainConfig
from atld.data.loaders import ImageData, load_dataset
from atld.errors import CheckpointError
from atld.jobs import JobManager
from atld.runs.store import load_checkpoint
from atld.train.trainer import train

REPO = Path(__file__).resolve().parents[1]
APP = str(REPO / "app.py")


def _wait(condition, seconds: float, step: float = 0.1) -> float:
    start = time.perf_counter()
    while not condition():
        if time.perf_counter() - start > seconds:
            raise TimeoutError("timed out")
        time.sleep(step)
    return time.perf_counter() - start


def reload_figures(tmp: Path) -> dict:
    from streamlit.testing.v1 import AppTest

    os.environ.update(ATLD_CHECKPOINTS_DIR=str(REPO / "checkpoints"), ATLD_RUNS_DIR=str(tmp / "app-runs"),
                      ATLD_UMAP_WARMUP="0", ATLD_PRELOAD="0", ATLD_TORCH_THREADS="1")
    first = AppTest.from_file(APP, default_timeout=120).run()
    first.switch_page("app_pages/train_page.py").run()
    first.selectbox(key="train_method").set_value("natural")
    first.number_input(key="train_epochs").set_value(500)
    first.number_input(key="train_eval_limit").set_value(0)
    first.text_input(key="train_name").input("reload-bench")
    first.button(key="train_start").click().run()
    key = first.query_params["key"]
    key = key[0] if isinstance(key, list) else key
    start = time.perf_counter()
    second = AppTest.from_file(APP, default_timeout=120)
    second.query_params.update(run="reload-bench", key=key)
    second.run()
    second.switch_page("app_pages/train_page.py").run()
    attach = time.perf_counter() - start
    has_stop = any(b.key == "train_stop" for b in second.button)
    stranger = AppTest.from_file(APP, default_timeout=120)
    stranger.query_params.update(run="reload-bench", key="wrong")
    stranger.run()
    stranger.switch_page("app_pages/train_page.py").run()
    stranger_stop = any(b.key == "train_stop" for b in stranger.button)
    t_stop = time.perf_counter()
    second.button(key="train_stop").click().run()

    def stopped() -> bool:
        second.run()
        return any("stopped" in m.value for m in second.markdown)

    _wait(stopped, 120, 0.2)
    return {"reload_to_stop_button_s": round(attach, 2), "reloaded_session_has_stop": has_stop,
            "wrong_key_session_has_stop": stranger_stop,
            "stop_click_to_job_stopped_s": round(time.perf_counter() - t_stop, 2)}


def unwatched_figures(tmp: Path, data: ImageData, limit_s: float = 5.0) -> dict:
    manager = JobManager(tmp / "unwatched", unwatched_seconds=limit_s)
    job = manager.start("bench", TrainConfig(method="natural", epochs=10_000, eval_limit=0, device="cpu"),
                        "unwatched", data=data)
    _wait(lambda: job.epochs_done >= 1, 120)
    job.seen()
    last_seen = time.perf_counter()
    job.wait(600)
    return {"unwatched_limit_s": limit_s, "last_look_to_stop_s": round(time.perf_counter() - last_seen, 2),
            "status": str(job.status), "note": job.note}


def concurrency_figures(tmp: Path, n: int = 4) -> dict:
    out = tmp / "same-out"
    cmd = [sys.executable, "-m", "atld", "train", "--method", "natural", "--epochs", "3", "--eval-limit", "0",
           "--device", "cpu", "--quiet", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    procs = [subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(n)]
    ends: list[tuple[int, float, str] | None] = [None] * n

    def wait(i: int) -> None:  # each process's own end time, not the order they are waited for
        _, err = procs[i].communicate(timeout=600)
        ends[i] = (procs[i].returncode, time.perf_counter() - start, err.strip())

    waiters = [threading.Thread(target=wait, args=(i,)) for i in range(n)]
    for w in waiters:
        w.start()
    for w in waiters:
        w.join()
    refused = [e for e in ends if e[0] == 2]
    return {"processes": n, "trained": sum(e[0] == 0 for e in ends), "refused_one_line": len(refused),
            "refusals": sorted({e[2][:90] for e in refused}),
            "refusal_after_s": [round(e[1], 2) for e in refused],
            "trainer_done_after_s": [round(e[1], 2) for e in ends if e[0] == 0],
            "saved_run_loads": load_checkpoint(out).card["epochs_done"] == 3}


def reader_figures(tmp: Path, data: ImageData, epochs: int = 20) -> dict:
    config = TrainConfig(method="natural", epochs=epochs, batch_size=50, eval_limit=0, device="cpu")
    start = time.perf_counter()
    train(config, data=data, run_dir=tmp / "alone")
    alone = time.perf_counter() - start
    run_dir = tmp / "watched"
    train(config.with_overrides(epochs=1), data=data, run_dir=run_dir)
    stop, outcomes = threading.Event(), []

    def read_once() -> int | str:
        """epochs_done of a complete load, or the one-line reason it was refused."""
        try:
            return load_checkpoint(run_dir, with_train_state=True).card["epochs_done"]
        except CheckpointError as exc:
            return str(exc)

    poller = threading.Thread(target=lambda: [outcomes.append(read_once()) for _ in iter(stop.is_set, True)])
    poller.start()
    start = time.perf_counter()
    train(config, data=data, run_dir=run_dir, resume=True)
    watched = time.perf_counter() - start
    stop.set()
    poller.join()
    seen = [o for o in outcomes if isinstance(o, int)]
    refused = [o for o in outcomes if isinstance(o, str)]
    return {"epochs": epochs, "reads": len(seen), "reads_per_s": round(len(seen) / watched, 1),
            "refused": len(refused), "epochs_never_went_back": seen == sorted(seen),
            "train_alone_s": round(alone, 2), "train_with_reader_s": round(watched, 2),
            "slowdown": round(watched / alone, 2)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args()
    torch.set_num_threads(1)
    digits = load_dataset("digits")
    small = ImageData(digits.spec, digits.x_train[:300], digits.y_train[:300], digits.x_test[:50], digits.y_test[:50])
    figures = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "torch": torch.__version__,
               "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load_before": os.getloadavg()}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ["ATLD_CACHE"] = str(tmp / "cache")
        figures["reader"] = reader_figures(tmp, small)
        figures["concurrency"] = concurrency_figures(tmp)
        figures["unwatched"] = unwatched_figures(tmp, small)
        figures["reload"] = reload_figures(tmp)
    figures["load_after"] = os.getloadavg()
    text = json.dumps(figures, indent=1, default=str)
    print(text)
    if args.json:
        args.json.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
