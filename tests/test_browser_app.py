"""End to end in a real browser: Debian's chromium driven by Python Playwright against
`streamlit run app.py` on a free localhost port. Visits every page, runs an attack (changing ε),
makes a box selection on the latent plot and sees the selected images; walks the Learn lesson
(the step in the address) and plays the attack-path animation; a reload keeps a page's settings;
hovering a point shows its image; Home and Attack fit a 390 px phone and a 1280×720 projector. Screenshots go to
artifacts/browser/ (gitignored; CI keeps them as test artifacts)."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

# every test here starts a server and a browser page: the slow tier (the fast tier stays under 3 minutes)
pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "artifacts" / "browser"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"
WAIT_MS = 120_000  # a busy 2-core machine can be slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(env_updates: dict[str, str], port: int) -> subprocess.Popen:
    """`streamlit run app.py` as a subprocess; returns once its health endpoint answers."""
    env = {**os.environ, **env_updates}
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port), "--server.headless", "true",
         "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited early:\n{proc.stdout.read()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError("streamlit did not answer its health check within 60 s")


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def server(app_checkpoints, tmp_path_factory):
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium); the browser test needs it")
    pytest.importorskip("playwright.sync_api", reason="Python Playwright is not installed")
    runs = tmp_path_factory.mktemp("browser-runs")
    port = free_port()
    # ATLD_SCREENSHOT_CHECKPOINTS=checkpoints serves the shipped runs instead (for docs/screenshots)
    shown = os.environ.get("ATLD_SCREENSHOT_CHECKPOINTS") or str(app_checkpoints)
    proc = start_server({"ATLD_CHECKPOINTS_DIR": shown, "ATLD_RUNS_DIR": str(runs),
                         "ATLD_UMAP_WARMUP": "0", "ATLD_PREWARM": "0", "ATLD_TORCH_THREADS": "1"}, port)
    yield f"http://127.0.0.1:{port}"
    stop_server(proc)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


def wait_idle(page, ms: int = WAIT_MS) -> None:
    """Wait until the script has started (if it is going to) and finished."""
    page.wait_for_timeout(300)
    page.wait_for_selector(IDLE, timeout=ms)


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def wait_count(locator, n: int, ms: int = WAIT_MS) -> int:
    """Wait until `locator` matches exactly n elements (the script may still be drawing)."""
    deadline = time.monotonic() + ms / 1000
    while (count := locator.count()) != n and time.monotonic() < deadline:
        time.sleep(0.2)
    return count


def go(page, title: str) -> None:
    page.locator("[data-testid='stSidebarNav']").get_by_role("link", name=re.compile(title)).click()
    page.wait_for_selector(f"h1:has-text('{title}')", timeout=WAIT_MS)
    wait_idle(page)


@pytest.mark.slow  # over 10 s
def test_every_page_attack_and_box_selection(server, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(WAIT_MS)
    page.goto(server)
    page.wait_for_selector("h1:has-text('ATLD lab')")
    wait_idle(page)
    shot(page, "home")
    picker = page.locator("[data-testid='stSidebar']").get_by_role("combobox", name="Checkpoint")
    assert picker.input_value() == "digits-atld (shipped)"

    go(page, "Train")
    assert page.get_by_role("button", name="Start training").count() == 1
    shot(page, "train")

    go(page, "Attack")
    images = page.locator("[data-testid='stImage']")
    assert wait_count(images, 6 * 4) == 6 * 4
    assert page.get_by_text("‖δ‖∞ = 0.200").count() >= 1  # PGD uses the whole ε-ball
    slider = page.locator("[data-testid='stSlider']", has_text="ε").get_by_role("slider")
    slider.focus()
    for _ in range(4):
        page.keyboard.press("ArrowLeft")  # ε: 0.2 -> 0.16
    page.wait_for_selector("[data-testid='stSlider']:has-text('0.1600')")
    wait_idle(page)
    assert wait_count(images, 6 * 4) == 6 * 4
    page.get_by_text("‖δ‖∞ = 0.160").first.wait_for()  # the page re-attacked with the new ε
    assert page.get_by_text("‖δ‖∞ = 0.200").count() == 0
    shot(page, "attack")

    go(page, "Latent explorer")
    plot = page.locator(".js-plotly-plot").first
    plot.wait_for()
    page.get_by_text("Selection (0 points)").wait_for()
    # Box around the middle of the point cloud (between the 20th and 70th percentile of the
    # drawn points' screen positions): never empty, never everything, whatever the checkpoint.
    centres = plot.locator(".scatterlayer path.point").evaluate_all(
        "els => els.map(e => { const r = e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })")
    xs, ys = sorted(c[0] for c in centres), sorted(c[1] for c in centres)
    x0, x1 = xs[len(xs) // 5], xs[7 * len(xs) // 10]
    y0, y1 = ys[len(ys) // 5], ys[7 * len(ys) // 10]
    page.mouse.move(x0, y0)
    page.wait_for_timeout(300)
    page.mouse.down()
    page.wait_for_timeout(300)
    page.mouse.move((x0 + x1) / 2, (y0 + y1) / 2, steps=20)
    page.mouse.move(x1, y1, steps=20)
    page.wait_for_timeout(300)
    page.mouse.up()
    header = page.locator("h3", has_text=re.compile(r"Selection \([1-9]\d* points\)"))
    header.wait_for()
    wait_idle(page)
    n_selected = int(re.search(r"\((\d+) points\)", header.inner_text()).group(1))
    assert 10 < n_selected < 600  # a part of the 2 × 300 points
    assert page.locator("[data-testid='stImage']").count() >= min(n_selected, 24)
    shot(page, "latent-selection")

    go(page, "Evaluate")
    shot(page, "evaluate")
    go(page, "Learn")
    page.get_by_role("button", name="Next →").click()
    wait_idle(page)
    shot(page, "learn")
    errors = page.locator("[data-testid='stException']")
    assert errors.count() == 0
    page.close()


@pytest.mark.slow  # over 10 s
def test_a_reload_keeps_the_settings_and_hovering_a_point_shows_its_image(server, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(WAIT_MS)
    page.goto(f"{server}/latent?space=features&color=predicted+class")  # a deep link on a server
    page.wait_for_selector("h1:has-text('Latent explorer')")
    wait_idle(page)
    assert page.get_by_text("Page not found").count() == 0
    page.get_by_text("natural map (perturbed projected onto it)").click()
    wait_idle(page)
    assert "fit=natural" in page.url
    page.reload()
    page.wait_for_selector("h1:has-text('Latent explorer')")
    wait_idle(page)
    for label in ("features", "natural map (perturbed projected onto it)"):
        radio = page.get_by_role("radio", name=label)
        assert radio.is_checked(), label
    assert page.get_by_role("combobox", name="Colour by").input_value() == "predicted class"
    plot = page.locator(".js-plotly-plot").first
    plot.wait_for()
    point = plot.locator(".scatterlayer path.point").nth(5)
    box = point.bounding_box()
    thumb = page.locator("[data-testid='atld-hover-thumbnail']")
    for dx in (0, 1, -1):  # plotly picks the nearest point; nudge the cursor until it reports one
        page.mouse.move(5, 5)  # off the chart first: plotly reports a hover only for a new point
        page.mouse.move(box["x"] + box["width"] / 2 + dx, box["y"] + box["height"] / 2)
        page.wait_for_timeout(400)
        if thumb.count() and thumb.is_visible():
            break
    assert thumb.is_visible()
    assert thumb.get_attribute("src").startswith("data:image/png;base64,")
    shot(page, "latent-hover")
    page.close()


@pytest.mark.slow  # over 10 s
def test_the_lesson_walks_step_by_step_and_the_attack_path_plays(server, browser):
    from atld.ui.learn import STEPS

    page = browser.new_page(viewport={"width": 1280, "height": 720})
    page.set_default_timeout(WAIT_MS)
    page.goto(f"{server}/learn")
    page.wait_for_selector("h1:has-text('Learn')")
    wait_idle(page)
    for k, (title, _) in enumerate(STEPS, start=1):
        page.locator("h3", has_text=title).wait_for()
        wait_idle(page)
        assert re.search(rf"[?&]step={k}(&|$)", page.url), page.url
        assert page.locator("[data-testid='stException']").count() == 0
        if "path" in title.lower():  # the animation step: play it and see the frames move
            chart = page.locator(".js-plotly-plot", has=page.locator(".updatemenu-button")).first
            grip = chart.locator(".slider-grip-rect")  # the step slider's handle
            before = grip.bounding_box()["x"]
            chart.locator(".updatemenu-button", has_text="Play").click()
            deadline = time.monotonic() + 30
            while grip.bounding_box()["x"] <= before + 1 and time.monotonic() < deadline:
                page.wait_for_timeout(200)
            assert grip.bounding_box()["x"] > before + 1  # the frames play: the slider moves on
        if k < len(STEPS):
            page.get_by_role("button", name="Next →").click()
    page.reload()  # the last step's address opens the last step
    page.locator("h3", has_text=STEPS[-1][0]).wait_for()
    page.close()


OVERFLOW = """() => {
  const main = document.querySelector("[data-testid='stMain']") || document.body;
  return {body: document.body.scrollWidth, main: main.scrollWidth, mainWidth: main.clientWidth,
          window: window.innerWidth};
}"""


@pytest.mark.parametrize("width,height", [(390, 844), (1280, 720)], ids=["phone", "projector"])
def test_home_and_attack_fit_a_phone_and_a_projector(server, browser, width, height):
    page = browser.new_page(viewport={"width": width, "height": height})
    page.set_default_timeout(WAIT_MS)
    for path, title in (("", "ATLD lab"), ("/attack", "Attack")):
        page.goto(f"{server}{path}")
        page.wait_for_selector(f"h1:has-text('{title}')")
        wait_idle(page)
        if title == "Attack":
            page.locator("[data-testid='stImage']").nth(6 * 4 - 1).wait_for()
        sizes = page.evaluate(OVERFLOW)
        assert sizes["body"] <= sizes["window"] + 1, (title, sizes)  # no sideways scrolling of the page
        assert sizes["main"] <= sizes["mainWidth"] + 1, (title, sizes)
        assert page.locator("[data-testid='stException']").count() == 0
    page.close()


@pytest.mark.slow
def test_hovering_a_listed_image_rings_its_point_on_the_map(server, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(WAIT_MS)
    page.goto(f"{server}/latent?find=3")  # found: its two points are listed, with its nearest neighbours
    page.wait_for_selector("h1:has-text('Latent explorer')")
    wait_idle(page)
    page.get_by_text("Nearest neighbours of natural #3").wait_for()
    plot = page.locator(".js-plotly-plot").first
    listed = page.locator("[data-testid='stImage']", has_text="natu #3").first
    plot.scroll_into_view_if_needed()
    listed.hover()
    ring = page.locator("[data-testid='atld-point-ring']")
    ring.wait_for(state="visible")
    spot = ring.bounding_box()
    centre = (spot["x"] + spot["width"] / 2, spot["y"] + spot["height"] / 2)
    if ring.inner_text() == "":  # the map is in view: the ring sits on the plot, at the point
        area = plot.bounding_box()
        assert area["x"] <= centre[0] <= area["x"] + area["width"]
        assert area["y"] <= centre[1] <= area["y"] + area["height"]
    page.mouse.move(5, 5)
    ring.wait_for(state="hidden")
    assert page.locator("[data-testid='stException']").count() == 0
    page.close()


@pytest.mark.slow
def test_what_d_learned_follows_the_share_slider_and_every_learn_step_fits_a_projector(server, browser):
    """The "What D really learned" step: moving the share slider changes D's mean score and the sentence
    under it; every Learn step fits 1280×720 without sideways scrolling; the maps side by side show the hovered
    image."""
    from atld.ui.learn import STEPS

    page = browser.new_page(viewport={"width": 1280, "height": 720})
    page.set_default_timeout(WAIT_MS)
    k = next(k for k, (title, _) in enumerate(STEPS, start=1) if title.endswith("What D really learned"))
    page.goto(f"{server}/learn?step={k}")
    page.locator("h3", has_text=STEPS[k - 1][0]).wait_for()
    wait_idle(page)
    metric = page.locator("[data-testid='stMetricValue']").first
    metric.wait_for()
    note = page.locator("p", has_text=re.compile(r"^A batch of \d+ with"))
    before, before_note = metric.inner_text(), note.first.inner_text()
    assert "50.0 % adversarial" in before_note
    thumb = page.locator("[data-testid='stSlider'] [aria-label='Adversarial images in the batch (%)']").first
    grip, track = thumb.bounding_box(), page.locator("[data-testid='stSlider']").first.bounding_box()
    page.mouse.move(grip["x"] + grip["width"] / 2, grip["y"] + grip["height"] / 2)
    page.mouse.down()
    page.mouse.move(track["x"] + track["width"] + 40, grip["y"] + grip["height"] / 2, steps=8)  # drag to 100 %
    page.mouse.up()
    deadline = time.monotonic() + 60
    while "100.0 % adversarial" not in note.first.inner_text() and time.monotonic() < deadline:
        page.wait_for_timeout(200)
    wait_idle(page)
    assert "100.0 % adversarial" in note.first.inner_text()
    assert metric.inner_text() != before  # D's mean score follows the batch's composition
    shot(page, "learn-d-share")
    for step in range(1, len(STEPS) + 1):
        page.goto(f"{server}/learn?step={step}")
        page.locator("h3", has_text=STEPS[step - 1][0]).wait_for()
        wait_idle(page)
        sizes = page.evaluate(OVERFLOW)
        assert sizes["body"] <= sizes["window"] + 1, (step, sizes)
        assert sizes["main"] <= sizes["mainWidth"] + 1, (step, sizes)
        assert page.locator("[data-testid='stException']").count() == 0
        if STEPS[step - 1][0].endswith("the gap"):  # the maps side by side show the hovered image, as the explorer
            plot = page.locator(".js-plotly-plot").last
            plot.scroll_into_view_if_needed()
            thumb = page.locator("[data-testid='atld-hover-thumbnail']")
            for i in (5, 20, 40, 60):
                box = plot.locator(".scatterlayer path.point").nth(i).bounding_box()
                page.mouse.move(5, 5)  # off the chart first: plotly reports a hover only for a new point
                page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
                page.wait_for_timeout(400)
                if thumb.count() and thumb.is_visible():
                    break
            assert thumb.is_visible() and thumb.get_attribute("src").startswith("data:image/png;base64,")
    page.close()


def test_an_uploaded_model_is_imported_and_its_latent_map_opens(app_checkpoints, browser, tmp_path):
    """Bring your own model: a small model's state dict (the lab's small CNN, saved with
    torch.save as any user would) uploaded on Home, imported in a worker, selected in the sidebar
    as imported; its Latent explorer draws the map. Its own server: the import writes a run."""
    import torch

    from atld.runs.store import load_checkpoint

    weights = tmp_path / "my model.pt"
    torch.save(load_checkpoint(app_checkpoints / "digits-natural").classifier.state_dict(), weights)
    port = free_port()
    proc = start_server({"ATLD_CHECKPOINTS_DIR": str(app_checkpoints), "ATLD_RUNS_DIR": str(tmp_path / "runs"),
                         "ATLD_UMAP_WARMUP": "0", "ATLD_PREWARM": "0", "ATLD_TORCH_THREADS": "1",
                         "ATLD_CACHE": str(tmp_path / "cache")}, port)
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 720})
        page.set_default_timeout(WAIT_MS)
        page.goto(f"http://127.0.0.1:{port}")
        page.wait_for_selector("h1:has-text('ATLD lab')")
        wait_idle(page)
        cut = page.evaluate("""() => [...document.querySelectorAll("[data-testid='stMetricValue'] *")]
            .filter(e => e.scrollWidth > e.clientWidth + 1).map(e => e.textContent)""")
        assert page.locator("[data-testid='stMetricValue']").count() >= 2 and cut == []  # the card's numbers fit
        page.get_by_text("Bring your own model").click()
        page.locator("input[type='file']").wait_for(state="attached")
        page.locator("input[type='file']").set_input_files(str(weights))
        page.get_by_text("my model.pt", exact=True).wait_for()  # the upload reached the server
        wait_idle(page)
        for name, value in (("Architecture", "small-cnn"), ("Dataset", "digits")):
            box = page.locator("[data-testid='stMainBlockContainer']").get_by_role("combobox", name=name)
            box.click()
            page.keyboard.type(value)
            page.get_by_role("option", name=value, exact=True).click()
            wait_idle(page)
        shot(page, "home-upload")
        page.get_by_text("sample images: under a second").wait_for()  # the time estimate before the import
        page.get_by_role("button", name="Import").click()
        picker = page.locator("[data-testid='stSidebar']").get_by_role("combobox", name="Checkpoint")
        deadline = time.monotonic() + WAIT_MS / 1000
        while "(imported)" not in picker.input_value() and time.monotonic() < deadline:
            time.sleep(0.3)
        assert picker.input_value().startswith("digits-imported-my-model-") and "(imported)" in picker.input_value()
        wait_idle(page)
        assert page.get_by_text("Imported my model.pt as").count() == 1
        shot(page, "home-imported")
        go(page, "Latent explorer")
        page.locator("[data-testid='stPlotlyChart']").first.wait_for()
        assert page.locator("[data-testid='stException']").count() == 0
        shot(page, "latent-imported")
        page.close()
    finally:
        stop_server(proc)
