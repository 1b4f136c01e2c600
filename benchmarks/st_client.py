"""A browser-less Streamlit client for load tests: speaks the app server's websocket protocol
(protobuf `BackMsg` up, `ForwardMsg` down) the way the browser does, and fetches the media files
(images) a page refers to, so the server does the same work as for a real tab.

One `Session` is one browser tab: `await session.open(page)` runs a page; `await
session.set(page, label, value)` changes a widget (found by its label on that page) and waits
for the rerun; `stage` changes one without a rerun (form fields); `click` presses a button. Each
returns a `Render`: seconds until the script finished (and its images were fetched), the
elements drawn, and when the first progress bar appeared. Used by `benchmarks.bench_app`.
"""

from __future__ import annotations

import asyncio
import time
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import websockets
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.proto.WidgetStates_pb2 import WidgetState


@dataclass
class Render:
    """What one rerun drew. seconds: from sending the request to `script_finished` (plus fetching
    the page's images); elements: (type, label, proto) of every new element, in order;
    first_progress_s: when the first progress bar arrived (None: none did); progress: its texts."""
    seconds: float = 0.0
    elements: list[tuple[str, str, object]] = field(default_factory=list)
    status: int = 0  # ScriptFinishedStatus (0 = finished successfully)
    first_progress_s: float | None = None
    progress: list[str] = field(default_factory=list)

    def texts(self) -> str:
        """Markdown, captions and alerts of the page, joined (to check what the page says)."""
        return "\n".join(getattr(p, "body", "") for k, _, p in self.elements if k in ("markdown", "alert", "heading"))

    def count(self, kind: str) -> int:
        return sum(1 for k, _, _ in self.elements if k == kind)


def _value_field(kind: str, proto) -> str:
    """The WidgetState field a widget's value travels in."""
    if kind == "slider":
        return "string_array_value" if len(proto.options) else "double_array_value"
    return {"radio": "string_value", "selectbox": "string_value", "number_input": "double_value",
            "checkbox": "bool_value", "button": "trigger_value", "text_input": "string_value"}[kind]


class Session:
    """One browser tab on `http://host:port`."""

    def __init__(self, port: int, host: str = "127.0.0.1", fetch_media: bool = True):
        self.base = f"http://{host}:{port}"
        self.url = f"ws://{host}:{port}/_stcore/stream"
        self.fetch_media = fetch_media
        self.ws = None
        self.widgets: dict[str, WidgetState] = {}  # widget id -> its state (sent with every rerun)
        self.found: dict[tuple[str, str], tuple[str, str, object]] = {}  # (page, label) -> (id, type, proto)

    async def __aenter__(self) -> Session:
        self.ws = await websockets.connect(self.url, subprotocols=["streamlit"], max_size=None, open_timeout=60,
                                           ping_interval=None)
        return self

    async def __aexit__(self, *exc) -> None:
        await self.ws.close()

    async def open(self, page: str = "", timeout: float = 120.0,
                   on_progress: Callable[[], Awaitable[None]] | None = None) -> Render:
        """Run `page` (its URL path, "" for the default page) with the current widget values."""
        return await self._rerun(page, timeout, on_progress)

    def stage(self, page: str, label: str, value) -> None:
        """Set the widget labelled `label` (seen on `page` before) for the next rerun."""
        wid, kind, proto = self.found[(page, label)]
        state = WidgetState(id=wid)
        name = _value_field(kind, proto)
        if name.endswith("array_value"):
            getattr(state, name).data.extend(value if isinstance(value, (list, tuple)) else [value])
        else:
            setattr(state, name, value)
        self.widgets[wid] = state

    async def set(self, page: str, label: str, value, timeout: float = 120.0, on_progress=None) -> Render:
        """Set the widget labelled `label` and rerun `page`."""
        self.stage(page, label, value)
        return await self._rerun(page, timeout, on_progress)

    async def click(self, page: str, label: str, timeout: float = 120.0, on_progress=None) -> Render:
        """Press the button labelled `label` (a trigger is sent once) and rerun `page`."""
        self.stage(page, label, True)
        try:
            return await self._rerun(page, timeout, on_progress)
        finally:
            self.widgets.pop(self.found[(page, label)][0], None)

    async def send_click(self, page: str, label: str) -> None:
        """Press a button while a rerun is still running (e.g. Cancel); the running `open`,
        `set` or `click` call then reads the rerun that follows."""
        self.stage(page, label, True)
        back = self._back(page)
        self.widgets.pop(self.found[(page, label)][0], None)
        await self.ws.send(back.SerializeToString())

    def _back(self, page: str) -> BackMsg:
        back = BackMsg()
        back.rerun_script.page_name = page
        back.rerun_script.widget_states.widgets.extend(self.widgets.values())
        return back

    async def _rerun(self, page: str, timeout: float, on_progress) -> Render:
        start = time.perf_counter()
        await self.ws.send(self._back(page).SerializeToString())
        render, media = Render(), []
        deadline = start + timeout
        while True:
            raw = await asyncio.wait_for(self.ws.recv(), max(0.1, deadline - time.perf_counter()))
            msg = ForwardMsg()
            msg.ParseFromString(raw)
            kind = msg.WhichOneof("type")
            if kind == "delta" and msg.delta.WhichOneof("type") == "new_element":
                element = msg.delta.new_element
                etype = element.WhichOneof("type")
                proto = getattr(element, etype)
                label = getattr(proto, "label", "")
                render.elements.append((etype, label, proto))
                if getattr(proto, "id", "") and etype in ("slider", "radio", "selectbox", "number_input", "checkbox",
                                                          "button", "text_input"):
                    self.found[(page, label)] = (proto.id, etype, proto)
                if etype == "imgs":
                    media += [img.url for img in proto.imgs if img.url.startswith("/")]
                if etype == "progress":
                    render.progress.append(proto.text)
                    if render.first_progress_s is None:
                        render.first_progress_s = time.perf_counter() - start
                        if on_progress is not None:
                            await on_progress()
            elif kind == "script_finished":
                render.status = msg.script_finished
                if msg.script_finished != ForwardMsg.FINISHED_EARLY_FOR_RERUN:
                    break  # an early finish is followed by the rerun that interrupted it
        if self.fetch_media and media:
            await asyncio.get_running_loop().run_in_executor(None, self._fetch, media)
        render.seconds = time.perf_counter() - start
        return render

    def _fetch(self, paths: list[str]) -> None:
        for path in paths:
            with urllib.request.urlopen(self.base + path, timeout=30) as r:
                r.read()
