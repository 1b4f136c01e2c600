"""The app's screenshots in docs/screenshots/: `streamlit run app.py` on the shipped checkpoints,
photographed by Debian's chromium (Python Playwright) at 1280×720, a projector's size.

    python -m benchmarks.screenshots [--out docs/screenshots]

Each PNG is the visible window (not the whole page), reduced to a 256-colour palette so it stays
well under 300 KB. It reuses the browser test's server and browser helpers
(tests/test_browser_app.py)."""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from PIL import Image

from tests.test_browser_app import CHROMIUM, CHROMIUM_ARGS, free_port, start_server, stop_server, wait_count, wait_idle

ROOT = Path(__file__).resolve().parents[1]
VIEWPORT = {"width": 1280, "height": 720}
WAIT_MS = 240_000


def save(page, path: Path) -> int:
    """Screenshot the window into `path` as a palette PNG; returns its size in bytes."""
    page.wait_for_timeout(800)  # let the charts finish their transitions
    page.screenshot(path=str(path))
    with Image.open(path) as im:
        im.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    return path.stat().st_size


def open_page(page, url: str, title: str) -> None:
    page.goto(url)
    page.wait_for_selector(f"h1:has-text('{title}')", timeout=WAIT_MS)
    wait_idle(page, WAIT_MS)


def hover_a_point(page) -> None:
    """Hover points of the first map until the hover thumbnail shows."""
    plot = page.locator(".js-plotly-plot").first
    plot.scroll_into_view_if_needed()
    points = plot.locator(".scatterlayer path.point")
    thumb = page.locator("[data-testid='atld-hover-thumbnail']")
    for i in (40, 5, 120, 200):
        box = points.nth(i).bounding_box()
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.wait_for_timeout(500)
        if thumb.count() and thumb.is_visible():
            return


def learn_file(k: int, title: str) -> str:
    """"learn-7-what-d-really-learned" for step 7 of the lesson."""
    words = "".join(c if c.isalnum() else "-" for c in title.split(" · ", 1)[1].lower())
    return f"learn-{k}-" + "-".join(w for w in words.split("-") if w)


def learn_steps(page, base: str, out: Path) -> dict[str, int]:
    """Each step of the Learn lesson, scrolled so that its heading is at the top of the window (the
    lesson's own content, as a projector shows it). The path step is stepped 6 frames on with ›, the
    share step shows a batch of 100 % adversarial images."""
    from atld.ui.learn import STEPS

    sizes = {}
    for k, (title, _) in enumerate(STEPS, start=1):
        open_page(page, f"{base}/learn?step={k}", "Learn")
        page.locator("h3", has_text=title).wait_for()
        if "path" in title.lower():
            for _ in range(6):
                page.get_by_role("button", name="›").click()
                wait_idle(page, WAIT_MS)
        if title.endswith("What D really learned"):
            thumb = page.locator("[data-testid='stSlider'] [aria-label='Adversarial images in the batch (%)']").first
            grip, track = thumb.bounding_box(), page.locator("[data-testid='stSlider']").first.bounding_box()
            page.mouse.move(grip["x"] + grip["width"] / 2, grip["y"] + grip["height"] / 2)
            page.mouse.down()
            page.mouse.move(track["x"] + track["width"] * 0.8, grip["y"] + grip["height"] / 2, steps=8)
            page.mouse.up()
            wait_idle(page, WAIT_MS)
        page.locator("h3", has_text=title).evaluate("e => e.scrollIntoView({block: 'start'})")
        name = learn_file(k, title)
        sizes[name] = save(page, out / f"{name}.png")
    return sizes


def take(base: str, out: Path) -> dict[str, int]:
    from playwright.sync_api import sync_playwright

    sizes = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport=VIEWPORT)
        page.set_default_timeout(WAIT_MS)

        open_page(page, base, "ATLD lab")
        sizes["home"] = save(page, out / "home.png")

        open_page(page, f"{base}/attack", "Attack")
        wait_count(page.locator("[data-testid='stImage']"), 6 * 4, WAIT_MS)
        page.locator("[data-testid='stImage']").nth(4).scroll_into_view_if_needed()
        sizes["attack"] = save(page, out / "attack.png")

        open_page(page, f"{base}/latent", "Latent explorer")
        hover_a_point(page)
        sizes["latent"] = save(page, out / "latent.png")

        sizes.update(learn_steps(page, base, out))

        open_page(page, f"{base}/evaluate", "Evaluate")
        sizes["evaluate"] = save(page, out / "evaluate.png")

        open_page(page, f"{base}/train", "Train")
        sizes["train"] = save(page, out / "train.png")
        browser.close()
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = parser.parse_args()
    if CHROMIUM is None:
        raise SystemExit("chromium is not installed (apt-get install -y chromium)")
    args.out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    with tempfile.TemporaryDirectory() as runs:
        proc = start_server({"ATLD_RUNS_DIR": runs, "ATLD_UMAP_WARMUP": "0", "ATLD_PREWARM": "0",
                             "ATLD_TORCH_THREADS": "1"}, port)
        t0 = time.perf_counter()
        try:
            sizes = take(f"http://127.0.0.1:{port}", args.out)
        finally:
            stop_server(proc)
    for name, size in sizes.items():
        print(f"{args.out / name}.png: {size / 1024:.0f} KB")
    print(f"{len(sizes)} screenshots in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
