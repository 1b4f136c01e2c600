"""The app in a real browser: how long a user waits, measured with Debian's chromium
driven by Python Playwright against `streamlit run app.py` on this machine.

Three numbers, each the median over --repeats fresh servers (Streamlit's caches start empty):
- start: from launching `streamlit run app.py` to the Home page rendered in the browser
  (title drawn and the script finished). Chromium is launched before the clock starts.
- attack update: on the Attack page (6 digits images, PGD-20), from pressing ← on the ε slider
  (a new ε, so nothing is cached) to the new adversarial image shown and the script finished;
  median of --updates presses per server.
- first latent plot: from clicking "Latent explorer" to the PCA map of 2 × 300 points drawn
  (latents under PGD-20 computed from scratch, the projection fitted).

Goals (2 CPU cores): start ≤ 5 s, attack update ≤ 1 s, first latent plot ≤ 2 s.
Beside each wall time it reports the CPU seconds the Streamlit server process used in that span
(all threads; the browser's share is not counted): on a shared, overloaded machine the wall time
mostly measures waiting for a core, the CPU time what the app itself costs.
Checkpoints: ./checkpoints (ATLD_CHECKPOINTS_DIR to override); the ATLD one is selected.

    python -m benchmarks.bench_app [--repeats 3] [--updates 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
GOALS = {"start_s": 5.0, "attack_update_s": 1.0, "first_latent_plot_s": 2.0}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_server(port: int, env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port), "--server.headless", "true",
         "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_health(port: int, proc: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("streamlit exited early")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("streamlit did not start")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by process `pid` (all its threads), from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_idle(page) -> None:
    page.wait_for_selector(IDLE, timeout=300_000)


def one_server(browser, env: dict, updates: int) -> dict:
    port = free_port()
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(300_000)
    t0 = time.perf_counter()
    proc = launch_server(port, env)
    try:
        wait_health(port, proc)
        page.goto(f"http://127.0.0.1:{port}/")
        page.wait_for_selector("h1:has-text('ATLD lab')")
        wait_idle(page)
        start = time.perf_counter() - t0
        start_cpu = cpu_seconds(proc.pid)

        page.locator("[data-testid='stSidebarNav']").get_by_role("link", name="Attack").click()
        page.wait_for_selector("h1:has-text('Attack')")
        images = page.locator("[data-testid='stImage'] img")
        images.nth(23).wait_for()
        wait_idle(page)
        slider = page.locator("[data-testid='stSlider']", has_text="ε").get_by_role("slider")
        times, cpus = [], []
        for _ in range(updates):
            before = images.nth(1).get_attribute("src")  # the first adversarial image
            slider.focus()
            c = cpu_seconds(proc.pid)
            t = time.perf_counter()
            page.keyboard.press("ArrowLeft")
            page.wait_for_function(
                """([sel, before]) => {
                    const app = document.querySelector(sel);
                    const imgs = document.querySelectorAll("[data-testid='stImage'] img");
                    return app && imgs.length > 1 && imgs[1].getAttribute('src') !== before;
                }""", arg=[IDLE, before], polling=20)
            wait_idle(page)
            times.append(time.perf_counter() - t)
            cpus.append(cpu_seconds(proc.pid) - c)

        page.wait_for_timeout(1000)  # let the background preload finish its share first
        c = cpu_seconds(proc.pid)
        t = time.perf_counter()
        page.locator("[data-testid='stSidebarNav']").get_by_role("link", name="Latent explorer").click()
        page.wait_for_function(
            "() => { const p = document.querySelector('.js-plotly-plot .scatterlayer .trace'); return !!p; }",
            polling=20)
        latent = time.perf_counter() - t
        latent_cpu = cpu_seconds(proc.pid) - c
        wait_idle(page)
        return {"start_s": start, "attack_update_s": statistics.median(times), "attack_updates_s": times,
                "first_latent_plot_s": latent, "start_cpu_s": start_cpu, "attack_update_cpu_s": statistics.median(cpus),
                "first_latent_plot_cpu_s": latent_cpu}
    finally:
        page.close()
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="fresh servers to measure")
    parser.add_argument("--updates", type=int, default=5, help="ε changes per server")
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        print("not measured: chromium is not installed")
        return 1
    from playwright.sync_api import sync_playwright

    env = {**os.environ, "ATLD_RUNS_DIR": tempfile.mkdtemp(prefix="atld-bench-runs-")}
    results = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        for _ in range(args.repeats):
            results.append(one_server(browser, env, args.updates))
        version = browser.version
        browser.close()
    import streamlit
    import torch

    summary = {k: statistics.median(r[k] for r in results) for k in GOALS}
    load = os.getloadavg()
    print(f"# {platform.node()}: {os.cpu_count()} CPU cores, load average {load[0]:.1f}, python "
          f"{platform.python_version()}, torch {torch.__version__}, streamlit {streamlit.__version__}, "
          f"chromium {version}, ATLD_TORCH_THREADS={os.environ.get('ATLD_TORCH_THREADS', '1')}")
    print("| measure | median wall (s) | all runs (s) | server CPU, median (s) | goal (s) |")
    print("|---|---|---|---|---|")
    for key, goal in GOALS.items():
        runs = ", ".join(f"{r[key]:.2f}" for r in results)
        cpu = statistics.median(r[key.replace("_s", "_cpu_s")] for r in results)
        print(f"| {key} | {summary[key]:.2f} | {runs} | {cpu:.2f} | ≤ {goal:g} |")
    print(json.dumps({"summary": summary, "runs": results}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
