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

        open_page(page, f"{base}/learn?step=2", "Learn")
        page.locator("[data-testid='stImage']").first.scroll_into_view_if_needed()
        page.mouse.move(700, 400)
        page.mouse.wheel(0, 380)  # the statement and the first fooled examples with their predictions
        sizes["learn-fooled"] = save(page, out / "learn-fooled.png")

        open_page(page, f"{base}/learn?step=3", "Learn")
        chart = page.locator(".js-plotly-plot", has=page.locator(".updatemenu-button")).first
        chart.scroll_into_view_if_needed()
        chart.locator(".updatemenu-button", has_text="Play").click()
        page.wait_for_timeout(2500)  # a few frames in: the points on their way
        sizes["learn-path"] = save(page, out / "learn-path.png")

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
