"""The app where people wait: every UI figure in one command, bounded in time, as one table.

Against `streamlit run app.py` on 127.0.0.1 (fresh servers; Debian's chromium driven by
Playwright for what a browser shows, `benchmarks.st_client` websocket sessions for the rest):

- start: launching the server -> the Home page drawn and idle in the browser (chromium is
  started before the clock); the median of --repeats fresh servers.
- new tab: a new tab on that running server -> Home drawn and idle (three tabs per server).
- first latent view, fresh server: "Latent explorer" clicked -> the map drawn (the default views
  come from the on-disk result store, filled once per machine), on odd rounds the instant Home's
  script is idle (the browser is then still loading Home's chart code, plotly.js), on even rounds
  once Home has loaded in the browser (network idle and no long task for 0.5 s); then
  Projection -> UMAP -> the default UMAP map drawn.
- first latent view, empty cache: the same on a server whose latent cache is empty (the first
  server on a machine: the views are computed at start, in the background).
- attack page: "Attack" clicked -> its images shown.
- attack update: on the Attack page, ← on the ε slider -> the new adversarial image shown; and
  five quick ← presses -> the last one's image (only the first and the last are computed).
- UMAP on a fresh server: MNIST (`mnist-natural`, needs ATLD_DATA_ROOT or --data-root),
  2 x 2,000 points (FGSM latents, already on disk), "Compute UMAP" -> the map; the progress it
  showed; then a slower UMAP (the natural map) cancelled -> the page back.
- 8 sessions: --sessions websocket sessions, each alternating the Attack page (its own ε each
  time: a new computation) and the default Latent page for --load-seconds; p50 / p95 per page,
  `/_stcore/health` polled every 0.25 s (10 s timeout), the server's and its workers' memory.
  Three runs: process workers (the default), the same with a training job running on the
  server, and thread workers (ATLD_WORKER_KIND=thread) for comparison.

Caches: numba's compiled code lives where the app keeps it ($ATLD_CACHE/numba, filled once per
machine: its first fill is reported); the latents of the default views go to a cache directory of
this benchmark, filled once at its start (reported: the first view a machine ever computes).

    python -m benchmarks.bench_app              # everything, about 12 minutes on 2 cores
    python -m benchmarks.bench_app --quick      # two repeats, 30 s load tests
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from benchmarks.st_client import Session

ROOT = Path(__file__).resolve().parents[1]
IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
GOALS = {"start_s": 3.0, "new_tab_s": 1.5, "first_latent_s": 1.0, "first_latent_loaded_s": 1.0,
         "first_umap_s": 1.0, "attack_open_s": 1.5, "home_loaded_s": None, "first_latent_empty_cache_s": None,
         "attack_update_s": 0.5,
         "attack_burst_s": None, "umap_s": 10.0, "umap_cancel_s": None, "load_attack_p95_s": 3.0,
         "load_latent_p95_s": 5.0, "load_health_max_s": 1.0}
RESULTS: list[dict] = []


def record(name: str, value, goal=None, unit: str = "s", note: str = "") -> None:
    load = os.getloadavg()[0]
    met = "" if goal is None or value is None else ("yes" if value <= goal else "**no**")
    RESULTS.append({"measure": name, "value": value, "unit": unit, "goal": goal, "met": met, "load": round(load, 2),
                    "note": note})
    shown = "not measured" if value is None else f"{value:.2f} {unit}"
    print(f"  {name}: {shown} (load {load:.1f}) {note}", flush=True)


# ----------------------------------------------------------------------------- a server

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def descendants(pid: int) -> list[int]:
    """pid and every process below it (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def rss_mb(pids: list[int]) -> float:
    total = 0
    for p in pids:
        with contextlib.suppress(OSError, StopIteration, ValueError):
            line = next(x for x in Path(f"/proc/{p}/status").read_text().splitlines() if x.startswith("VmRSS"))
            total += int(line.split()[1])
    return total / 1024


def cpu_s(pids: list[int]) -> float:
    total = 0.0
    for p in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


class Server:
    """`streamlit run app.py` on a free port with `env`; started by `start()` (returns the time
    it was launched), stopped on exit."""

    def __init__(self, env: dict):
        self.env, self.port, self.proc = env, free_port(), None
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self) -> float:
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(self.port), "--server.headless",
             "true", "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
            cwd=ROOT, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("streamlit exited early")
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=1) as r:
                    if r.status == 200:
                        return t0
            time.sleep(0.05)
        raise RuntimeError("streamlit did not start")

    def pids(self) -> list[int]:
        return descendants(self.proc.pid) if self.proc else []

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc) -> None:
        if self.proc is None:
            return
        pids = self.pids()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        for p in pids[1:]:  # workers whose pipe is closed end by themselves; make sure
            with contextlib.suppress(OSError):
                os.kill(p, 9)


# ----------------------------------------------------------------------------- in the browser

def wait_idle(page, timeout_ms: int = 120_000) -> None:
    page.wait_for_selector(IDLE, timeout=timeout_ms)


def settled(page, quiet_ms: int = 500, timeout_ms: int = 60_000) -> None:
    """Wait until the browser has loaded what the page uses (network idle) and its main thread has
    run no long task (over 50 ms: parsing plotly.js, drawing a chart) for `quiet_ms`: the page
    has finished loading, as it has for a visitor who reads it for a moment."""
    page.wait_for_load_state("networkidle")
    page.evaluate("""([quiet, timeout]) => new Promise((resolve, reject) => {
        let last = 0;
        new PerformanceObserver(list => {
            for (const e of list.getEntries()) last = Math.max(last, e.startTime + e.duration);
        }).observe({type: "longtask", buffered: true});
        const start = performance.now();
        const check = () => performance.now() - last >= quiet ? resolve()
            : performance.now() - start > timeout ? reject(new Error("the page never settled")) : setTimeout(check, 50);
        setTimeout(check, 50);
    })""", [quiet_ms, timeout_ms])


def nav(page, name: str) -> None:
    page.locator("[data-testid='stSidebarNav']").get_by_role("link", name=name).click()


def map_drawn(page, axis: str = "PC1", timeout_ms: int = 300_000) -> None:
    """Wait until a plotly map whose x-axis title starts with `axis` has points: the Latent
    explorer's map, never another page's chart still on screen (Home draws training curves)."""
    page.wait_for_function("""(axis) => [...document.querySelectorAll('.js-plotly-plot')].some(p =>
        p.querySelector('.scatterlayer .trace') &&
        [...p.querySelectorAll('.xtitle')].some(t => t.textContent.startsWith(axis)))""",
                           arg=axis, polling=20, timeout=timeout_ms)


def browser_round(browser, env: dict, updates: int, patient: bool = False) -> None:
    """One fresh server: start, first latent view, new tabs, attack updates, a quick burst.
    `patient`: click the Latent explorer once the browser has finished loading Home (`settled`: its
    chart code parsed and the chart drawn), not at the instant the script is idle."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(300_000)
    with Server(env) as server:
        t0 = server.start()
        page.goto(server.url)
        page.wait_for_selector("h1:has-text('ATLD lab')")
        wait_idle(page)
        record("start_s", time.perf_counter() - t0, GOALS["start_s"], note="launch -> Home drawn and idle")
        if patient:
            settled(page)
            record("home_loaded_s", time.perf_counter() - t0, None,
                   note="launch -> Home loaded in the browser (network idle, no long task for 0.5 s)")
        t = time.perf_counter()
        nav(page, "Latent explorer")
        map_drawn(page)
        if patient:
            record("first_latent_loaded_s", time.perf_counter() - t, GOALS["first_latent_loaded_s"],
                   note="fresh server, clicked once Home has loaded in the browser -> map drawn")
        else:
            record("first_latent_s", time.perf_counter() - t, GOALS["first_latent_s"],
                   note="fresh server, clicked the instant Home is idle -> map drawn (plotly.js still loading)")
        wait_idle(page)
        t = time.perf_counter()
        page.get_by_text("UMAP (on request)").click()
        map_drawn(page, "UMAP 1")
        record("first_umap_s", time.perf_counter() - t, GOALS["first_umap_s"],
               note="then Projection → UMAP -> the default UMAP map drawn")
        page.get_by_text("PCA (instant)").click()
        wait_idle(page)
        for _ in range(3):
            tab = browser.new_page(viewport={"width": 1400, "height": 1000})
            t = time.perf_counter()
            tab.goto(server.url)
            tab.wait_for_selector("h1:has-text('ATLD lab')")
            wait_idle(tab)
            record("new_tab_s", time.perf_counter() - t, GOALS["new_tab_s"], note="running server -> Home idle")
            tab.close()
        t = time.perf_counter()
        nav(page, "Attack")
        page.wait_for_selector("h1:has-text('Attack')")
        images = page.locator("[data-testid='stImage'] img")
        images.nth(23).wait_for()
        record("attack_open_s", time.perf_counter() - t, GOALS["attack_open_s"],
               note="Attack clicked -> its images shown (natural, adversarial, perturbation, IMT)")
        wait_idle(page)
        slider = page.locator("[data-testid='stSlider']", has_text="ε").get_by_role("slider")
        changed = """([sel, before]) => { const app = document.querySelector(sel);
            const imgs = document.querySelectorAll("[data-testid='stImage'] img");
            return app && imgs.length > 1 && imgs[1].getAttribute('src') !== before; }"""
        for _ in range(updates):
            before = images.nth(1).get_attribute("src")
            slider.focus()
            t = time.perf_counter()
            page.keyboard.press("ArrowLeft")
            page.wait_for_function(changed, arg=[IDLE, before], polling=20)
            record("attack_update_s", time.perf_counter() - t, GOALS["attack_update_s"],
                   note="ε ← -> new adversarial image")
        before = images.nth(1).get_attribute("src")
        slider.focus()
        t = time.perf_counter()
        for _ in range(5):
            page.keyboard.press("ArrowLeft")
            page.wait_for_timeout(60)
        last = time.perf_counter()
        page.wait_for_function(changed, arg=[IDLE, before], polling=20)
        wait_idle(page)
        record("attack_burst_s", time.perf_counter() - last, None,
               note=f"5 quick ε changes ({last - t:.2f} s) -> the last one's view")
    page.close()


def browser_empty_cache(browser, env: dict) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(300_000)
    with Server(env) as server:
        server.start()
        page.goto(server.url)
        page.wait_for_selector("h1:has-text('ATLD lab')")
        wait_idle(page)
        t = time.perf_counter()
        nav(page, "Latent explorer")
        map_drawn(page)
        record("first_latent_empty_cache_s", time.perf_counter() - t, GOALS["first_latent_empty_cache_s"],
               note="first server on a machine: views computed at start")
    page.close()


# ----------------------------------------------------------------------------- websocket sessions

def label_of(session: Session, page: str, prefix: str) -> str:
    return next(label for (p, label) in session.found if p == page and label.lower().startswith(prefix.lower()))


async def umap_round(env: dict) -> None:
    """UMAP of 2 x 2,000 MNIST points on a fresh server, then a cancelled slower UMAP."""
    with Server(env) as server:
        t0 = server.start()
        async with Session(server.port) as s:
            await s.open("")
            await s.set("", "Dataset", "mnist")
            await s.open("latent")
            await s.set("latent", "Attack", "fgsm")
            await s.set("latent", "Test images", "2000")
            r = await s.set("latent", "Projection", "umap")
            assert s.found.get(("latent", "Compute UMAP")), "the page did not offer UMAP"
            since_start = time.perf_counter() - t0
            r = await s.click("latent", "Compute UMAP", timeout=300)
            shown = [p for p in r.progress if p]
            record("umap_s", r.seconds, GOALS["umap_s"],
                   note=f"2 x 2,000 points, {since_start:.0f} s after launch; {len(shown)} progress updates, "
                        f"e.g. {shown[len(shown) // 2] if shown else '(none)'!r}; plots {r.count('plotly_chart')}")
            await s.set("latent", "Map", "natural")
            clicked: dict[str, float] = {}

            async def cancel_soon() -> None:
                async def later():
                    for _ in range(100):
                        await asyncio.sleep(0.1)
                        if ("latent", "Cancel") in s.found:
                            break
                    await asyncio.sleep(1.0)
                    clicked["t"] = time.perf_counter()
                    await s.send_click("latent", "Cancel")
                asyncio.create_task(later())

            r = await s.click("latent", "Compute UMAP", timeout=300, on_progress=cancel_soon)
            if "t" in clicked:
                record("umap_cancel_s", time.perf_counter() - clicked["t"] - 0.0, None,
                       note="Cancel clicked during a UMAP (natural map) -> the page back"
                            + (", PCA shown" if "Cancelled" in r.texts() or r.count("plotly_chart") else ""))
            else:
                record("umap_cancel_s", None, None, note="the UMAP ended before Cancel could be clicked")


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


async def load_round(env: dict, sessions: int, seconds: float, label: str, train: bool = False) -> None:
    """`sessions` sessions alternating Attack (a new ε each time) and Latent for `seconds`."""
    with Server(env) as server:
        server.start()
        async with Session(server.port) as warm:  # the first visitor: the pages and their defaults are ready
            await warm.open("")
            await warm.open("attack")
            await warm.open("latent")
        if train:
            trainer = Session(server.port)
            await trainer.__aenter__()
            await trainer.open("train")
            trainer.stage("train", label_of(trainer, "train", "epochs"), 500.0)
            r = await trainer.click("train", "Start training")
            if "Your run" not in r.texts() and r.count("progress") == 0:
                raise RuntimeError("the training job did not start")
        times: dict[str, list[float]] = {"attack": [], "latent": []}
        health: list[float] = []
        rss: list[float] = []
        stop = threading.Event()

        def poll() -> None:
            while not stop.is_set():
                t = time.perf_counter()
                try:
                    with urllib.request.urlopen(f"{server.url}/_stcore/health", timeout=10) as r:
                        r.read()
                    health.append(time.perf_counter() - t)
                except OSError:
                    health.append(float("inf"))
                rss.append(rss_mb(server.pids()))
                stop.wait(0.25)

        poller = threading.Thread(target=poll, daemon=True)
        eps = [round(0.2 - 0.01 * i, 4) for i in range(1, 20)]

        async def user(i: int, deadline: float) -> None:
            async with Session(server.port) as s:
                await s.open("")
                await s.open("attack")
                slider = label_of(s, "attack", "ε")
                k = 7 * i
                while time.perf_counter() < deadline:
                    k += 1
                    times["attack"].append((await s.set("attack", slider, eps[k % len(eps)])).seconds)
                    times["latent"].append((await s.open("latent")).seconds)
                    times["attack"].append((await s.open("attack")).seconds)

        cpu0 = cpu_s(server.pids())
        poller.start()
        deadline = time.perf_counter() + seconds
        await asyncio.wait_for(asyncio.gather(*(user(i, deadline) for i in range(sessions))), seconds + 300)
        stop.set()
        poller.join()
        cpu = cpu_s(server.pids()) - cpu0
        if train:
            await trainer.__aexit__()
    slow = sum(h >= 1.0 for h in health)
    note = f"{label}; {sessions} sessions × {seconds:.0f} s"
    record(f"load_attack_p95_s [{label}]", percentile(times["attack"], 0.95), GOALS["load_attack_p95_s"],
           note=f"{note}: p50 {percentile(times['attack'], 0.5):.2f} s, n {len(times['attack'])}")
    record(f"load_latent_p95_s [{label}]", percentile(times["latent"], 0.95), GOALS["load_latent_p95_s"],
           note=f"{note}: p50 {percentile(times['latent'], 0.5):.2f} s, n {len(times['latent'])}")
    record(f"load_health_max_s [{label}]", max(health) if health else None, GOALS["load_health_max_s"],
           note=f"{len(health)} polls, {slow} at 1 s or more, p95 {percentile(health, 0.95):.3f} s")
    record(f"load_memory_max [{label}]", max(rss) if rss else None, None, unit="MB",
           note=f"server + workers, start {rss[0] if rss else 0:.0f} MB; server CPU {cpu:.0f} s in the run")


# ----------------------------------------------------------------------------- set-up

def fill_caches(env: dict, data_root: str | None) -> None:
    """Compute the default views (and the MNIST latents of the UMAP round) into the benchmark's
    caches (latents, results), in a separate process, as the first server on a machine would."""
    code = f"""
import time
from atld.ui import compute
from atld.ui.runs import default_run, discover_runs
runs = discover_runs()
t = time.perf_counter()
service = compute.app_service(workers=1, kind="thread").start()  # the server's keys and result store
facts = service.submit(compute.data_facts, (compute.DataFacts.of(default_run(runs).dataset),)).result()
for v, request in compute.default_requests(runs, facts["n_test"]):
    service.submit(v, (request,)).result()
service.close()
print("defaults", time.perf_counter() - t)
if {data_root is not None}:
    mnist = [r for r in runs if r.dataset == "mnist"]
    if mnist:
        t = time.perf_counter()
        from atld.data.registry import get_spec
        from atld.ui.runs import RunRef
        latent = compute.page_latent(2000, "fgsm", get_spec("mnist").epsilon, 0, "logits", "pca", "joint")
        compute.latent_map.fn(compute.MapRequest(RunRef.of(mnist[0].path), latent))
        print("mnist", time.perf_counter() - t)
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=900)
    if out.returncode:
        raise RuntimeError(out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "cache fill failed")
    for line in out.stdout.splitlines():
        name, seconds = line.split()
        record(f"cache_fill_{name}_s", float(seconds), None,
               note="default views computed once per machine" if name == "defaults" else
               "MNIST FGSM latents of 2,000 images for the UMAP round")


def fill_numba(env: dict) -> None:
    code = "from atld.latent import warm_up_umap; print(warm_up_umap())"
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    if out.returncode:
        raise RuntimeError("UMAP warm-up failed")
    record("numba_cache_s", time.perf_counter() - t, None,
           note="UMAP's code loaded from numba's disk cache in a fresh process (compiled and stored the first "
                "time on a machine)")


def table(meta: str) -> str:
    lines = [meta, "", "| measure | value | goal | met | load avg | notes |", "|---|---|---|---|---|---|"]
    groups: dict[str, list[dict]] = {}
    for row in RESULTS:
        groups.setdefault(row["measure"], []).append(row)
    for name, rows in groups.items():
        values = [r["value"] for r in rows if r["value"] is not None]
        unit, goal = rows[0]["unit"], rows[0]["goal"]
        if not values:
            lines.append(f"| {name} | not measured | {'' if goal is None else f'≤ {goal:g} {unit}'} | | "
                         f"{rows[0]['load']} | {rows[0]['note']} |")
            continue
        value = statistics.median(values)
        shown = f"{value:.2f} {unit}" + (f" (median of {len(values)}: {', '.join(f'{v:.2f}' for v in values)})"
                                         if len(values) > 1 else "")
        met = "" if goal is None else ("yes" if value <= goal else "**no**")
        loads = sorted(r["load"] for r in rows)
        load = f"{loads[0]}" + (f"-{loads[-1]}" if loads[-1] != loads[0] else "")
        lines.append(f"| {name} | {shown} | {'' if goal is None else f'≤ {goal:g} {unit}'} | {met} | {load} | "
                     f"{rows[-1]['note']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=4, help="fresh servers for the browser figures")
    p.add_argument("--updates", type=int, default=3, help="ε changes per server")
    p.add_argument("--sessions", type=int, default=8, help="concurrent sessions of the load test")
    p.add_argument("--load-seconds", type=float, default=60.0, help="length of each load test")
    shared = next((str(d) for d in (ROOT.parent / "shared" / "data" / "mnist",
                                    ROOT.parents[1] / "shared" / "data" / "mnist") if d.is_dir()), None)
    p.add_argument("--data-root", default=os.environ.get("ATLD_DATA_ROOT") or shared,
                   help="torchvision datasets folder with MNIST, for the UMAP round (default: ATLD_DATA_ROOT, "
                        "else ../shared/data/mnist)")
    p.add_argument("--quick", action="store_true", help="two repeats, 30 s load tests")
    p.add_argument("--skip", nargs="*", default=[], choices=["browser", "empty", "umap", "load", "train", "threads"])
    p.add_argument("--json", help="also write the rows to this file")
    args = p.parse_args(argv)
    if args.quick:
        args.repeats, args.load_seconds = 2, 30.0
    started = time.perf_counter()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    work = Path(tempfile.mkdtemp(prefix="atld-bench-app-"))
    user_cache = Path(os.environ.get("ATLD_CACHE") or Path.home() / ".cache" / "atld").expanduser()
    base = {**os.environ, "ATLD_RUNS_DIR": str(work / "runs"), "ATLD_TORCH_THREADS": "1",
            "NUMBA_CACHE_DIR": os.environ.get("NUMBA_CACHE_DIR") or str(user_cache / "numba"),
            "ATLD_CACHE": str(work / "warm")}
    if args.data_root:
        base["ATLD_DATA_ROOT"] = args.data_root
    base["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    print(f"# set-up (numba cache {base['NUMBA_CACHE_DIR']})", flush=True)
    try:
        fill_numba(base)
        fill_caches(base, args.data_root)
        if chromium is None:
            print("not measured: chromium is not installed (apt-get install -y chromium)")
        elif "browser" not in args.skip or "empty" not in args.skip:
            from playwright.sync_api import sync_playwright

            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
                if "browser" not in args.skip:
                    for r in range(args.repeats):  # odd rounds click at once, even rounds once Home is loaded
                        print(f"# browser round {r + 1}", flush=True)
                        browser_round(browser, base, args.updates, patient=r % 2 == 1)
                if "empty" not in args.skip:
                    print("# first view with an empty cache", flush=True)
                    browser_empty_cache(browser, {**base, "ATLD_CACHE": str(work / f"empty-{time.time_ns()}")})
                version = browser.version
                browser.close()
        if "umap" not in args.skip:
            print("# UMAP on a fresh server", flush=True)
            if args.data_root:
                asyncio.run(umap_round(base))
            else:
                record("umap_s", None, GOALS["umap_s"], note="no MNIST data (--data-root)")
        if "load" not in args.skip:
            runs = [("process workers", base, False)]
            if "train" not in args.skip:
                runs.append(("process workers + a training job", base, True))
            if "threads" not in args.skip:
                runs.append(("thread workers", {**base, "ATLD_WORKER_KIND": "thread"}, False))
            for label, env, train in runs:
                print(f"# load: {label}", flush=True)
                asyncio.run(load_round(env, args.sessions, args.load_seconds, label, train))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    import streamlit
    import torch

    meta = (f"{platform.node()}: {os.cpu_count()} CPU cores, python {platform.python_version()}, torch "
            f"{torch.__version__}, streamlit {streamlit.__version__}, chromium "
            f"{version if chromium else 'none'}, ATLD_TORCH_THREADS=1, "
            f"{datetime.datetime.now(datetime.UTC).isoformat(timespec='minutes')}, "
            f"{time.perf_counter() - started:.0f} s in all")
    print()
    print(table(meta))
    if args.json:
        Path(args.json).write_text(json.dumps({"meta": meta, "rows": RESULTS}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
