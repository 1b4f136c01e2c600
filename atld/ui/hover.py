"""Image thumbnails on hover for the page's plotly maps (Streamlit-bound).

Plotly's hover label shows text only, and Streamlit's plotly chart reports selections, not
hovers. This small inline component (no build step, no network) hooks the page's plotly charts:
a point whose `customdata[2]` is an image data URI (`atld.ui.latent.thumbnails`) shows that
image, enlarged without smoothing, beside the cursor while it is hovered."""

from __future__ import annotations

import streamlit.components.v2 as components_v2

_JS = r"""
export default function (component) {
  const box = document.getElementById("atld-hover-thumb") || (() => {
    const el = document.createElement("div");
    el.id = "atld-hover-thumb";
    el.style.cssText = "position:fixed;z-index:100000;pointer-events:none;display:none;padding:4px;" +
      "background:#fff;border:1px solid #888;border-radius:4px;box-shadow:0 2px 6px rgba(0,0,0,.3);" +
      "font:12px sans-serif;color:#222;text-align:center";
    el.innerHTML = '<img data-testid="atld-hover-thumbnail" alt="hovered image" ' +
      'style="width:96px;height:96px;image-rendering:pixelated;display:block"><div></div>';
    document.body.appendChild(el);
    return el;
  })();
  const img = box.querySelector("img"), label = box.querySelector("div");
  const hook = () => {
    document.querySelectorAll(".js-plotly-plot").forEach((gd) => {
      // Hooked per event emitter, not per element: a chart drawn anew on the same element
      // (Plotly.purge, then newPlot) drops its listeners and gets a new emitter.
      if (typeof gd.on !== "function" || (gd._ev && gd.__atldThumbs === gd._ev)) return;
      gd.__atldThumbs = gd._ev;
      gd.on("plotly_hover", (ev) => {
        const pt = ev && ev.points && ev.points[0];
        const src = pt && pt.customdata && pt.customdata[2];
        if (typeof src !== "string" || !src.startsWith("data:image/png;base64,")) return;
        img.src = src;
        label.textContent = "#" + pt.customdata[1];
        const e = ev.event || {};
        const x = (e.clientX || 0) + 18, y = (e.clientY || 0) + 18;
        box.style.left = Math.min(x, window.innerWidth - 120) + "px";
        box.style.top = Math.min(y, window.innerHeight - 140) + "px";
        box.style.display = "block";
      });
      gd.on("plotly_unhover", () => { box.style.display = "none"; });
    });
  };
  hook();
  // Charts are added and drawn anew after this mounts: hook each in the frame it appears (plotly
  // reports a hover only when the hovered point changes, so a late hook misses the first one).
  let queued = false;
  const observer = new MutationObserver(() => {
    if (!queued) { queued = true; requestAnimationFrame(() => { queued = false; hook(); }); }
  });
  observer.observe(document.body, {childList: true, subtree: true});
  const timer = setInterval(hook, 1000);  // and a slow sweep, in case a chart changed in place
  return () => { observer.disconnect(); clearInterval(timer); box.style.display = "none"; };
}
"""

_component = None


def hover_thumbnails(key: str = "atld_hover_thumbnails") -> None:
    """Mount the hover hook once on the page (it draws nothing itself)."""
    global _component
    if _component is None:
        _component = components_v2.component("atld_hover_thumbnails", js=_JS)
    _component(key=key)
