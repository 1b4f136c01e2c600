"""Image thumbnails on hover for the page's plotly maps (Streamlit-bound).

Plotly's hover label shows text only, and Streamlit's plotly chart reports selections, not
hovers. This small inline component (no build step, no network) hooks the page's plotly charts:
a point whose `customdata[2]` is an image data URI (`atld.ui.latent.thumbnails`) shows that
image, enlarged without smoothing, beside the cursor while it is hovered. The other way round, a
listed image whose caption names its point ("natu #12", "pert #12", as the Latent explorer's
selection and neighbour lists write them) rings that point on the map while the image is hovered
(`RING_JS`): drawn over the chart in the browser, so the page does not run again."""

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
  const unring = ring();
  return () => { observer.disconnect(); clearInterval(timer); box.style.display = "none"; unring(); };
}
""" + r"""
// A listed image -> its point: hovering an image whose caption reads "natu #i" or "pert #i" rings
// the point whose hover text starts "natural #i:" / "perturbed #i:" on the first map of the page.
function ring() {
  const mark = document.getElementById("atld-point-ring") || (() => {
    const el = document.createElement("div");
    el.id = "atld-point-ring";
    el.setAttribute("data-testid", "atld-point-ring");
    el.style.cssText = "position:fixed;z-index:99999;pointer-events:none;display:none;width:26px;height:26px;" +
      "margin:-13px 0 0 -13px;border:3px solid #111;border-radius:50%;box-shadow:0 0 0 3px rgba(255,200,0,.85);" +
      "font:14px sans-serif;line-height:20px;text-align:center;color:#111";
    document.body.appendChild(el);
    return el;
  })();
  const find = (kind, index) => {
    const gd = document.querySelector(".st-key-lat_plot .js-plotly-plot") || document.querySelector(".js-plotly-plot");
    if (!gd || !gd._fullLayout || !gd._fullData) return null;
    const prefix = (kind === "natu" ? "natural" : "perturbed") + " #" + index + ":";
    for (const trace of gd._fullData) {  // decoded arrays (the spec may hold base64 ones)
      const text = trace.text || [];
      for (let p = 0; p < text.length; p++) {
        if (typeof text[p] === "string" && text[p].startsWith(prefix)) {
          const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis, box = gd.getBoundingClientRect();
          return [box.left + xa._offset + xa.l2p(trace.x[p]), box.top + ya._offset + ya.l2p(trace.y[p])];
        }
      }
    }
    return null;
  };
  const over = (ev) => {
    const el = ev.target && ev.target.closest && ev.target.closest('[data-testid="stElementContainer"]');
    const hit = el && /\b(natu|pert) #(\d+)/.exec(el.innerText || "");
    const at = hit && el.querySelector("img") ? find(hit[1], hit[2]) : null;
    if (!at) { mark.style.display = "none"; return; }
    // a point scrolled out of the window is pointed at from the window's edge, at its x
    const off = at[1] < 0 ? "▲" : at[1] > window.innerHeight ? "▼" : "";
    mark.textContent = off;
    mark.style.background = off ? "rgba(255,255,255,.9)" : "transparent";
    mark.title = off ? "its point is on the map, out of view" : "";
    mark.style.left = at[0] + "px";
    mark.style.top = Math.min(Math.max(at[1], 16), window.innerHeight - 16) + "px";
    mark.style.display = "block";
  };
  document.addEventListener("mouseover", over);
  return () => { document.removeEventListener("mouseover", over); mark.style.display = "none"; };
}
"""

_component = None


def hover_thumbnails(key: str = "atld_hover_thumbnails") -> None:
    """Mount the hover hook once on the page (it draws nothing itself)."""
    global _component
    if _component is None:
        _component = components_v2.component("atld_hover_thumbnails", js=_JS)
    _component(key=key)
