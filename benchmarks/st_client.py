"""A browser-less Streamlit client for load tests: speaks the app server's websocket protocol
(protobuf `BackMsg` up, `ForwardMsg` down) the way the browser does, and fetches the media files
(images) a page refers to, so the server does the same work as for a real tab.

One `Session` is one browser tab: `await session.open(page)` runs a page, `await
session.set(page, label, value)` changes a widget (found by its label) and waits for the rerun;
both return a `Render` (seconds until the script finished, the elements drawn). Used by
`benchmarks.bench_app`.
"""

from __future__ import annotations

import asyncio
import time
import urllib.request
from dataclasses import dataclass, field

import websockets
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.proto.WidgetStates_pb2 import WidgetState

# element type -> the WidgetState field its value travels in (the widgets the benchmark sets)
VALUE_FIELDS = {"slider": "double_array_value", "radio": "int_value", "selectbox": "int_value",
                "number_input": "double_value", "button": "trigger_value", "checkbox": "bool_value"}


@dataclass
class Render:
    """What one rerun drew. seconds: from sending the request to `script_finished` plus fetching
    the page's images; elements: (type, label, proto) of every new element, in order."""
    seconds: float
    elements: list[tuple[str, str, object]] = field(default_factory=list)
    status: int = 0  # ScriptFinishedStatus (0 = finished successfully)

    def texts(self) -> str:
        """Markdown, captions and alerts of the page, joined (to check what the page says)."""
        out = []
        for kind, _, proto in self.elements:
            if kind in ("markdown", "alert", "heading", "text"):
                out.append(getattr(proto, "body", "") or getattr(proto, "text", ""))
        return "\n".join(out)

    def count(self, kind: str) -> int:
        return sum(1 for k, _, _ in self.elements if k == kind)


class Session:
    """One browser tab on `http://host:port`."""

    def __init__(self, port: int, host: str = "127.0.0.1", fetch_media: bool = True):
        self.base = f"http://{host}:{port}"
        self.url = f"ws://{host}:{port}/_stcore/stream"
        self.fetch_media = fetch_media
        self.ws = None
        self.widgets: dict[str, WidgetState] = {}  # widget id -> its current state (sent on every rerun)
        self.ids: dict[tuple[str, str], tuple[str, str]] = {}  # (page, label) -> (widget id, element type)

    async def __aenter__(self) -> Session:
        self.ws = await websockets.connect(self.url, subprotocols=["streamlit"], max_size=None, open_timeout=60,
                                           ping_interval=None)
        return self

    async def __aexit__(self, *exc) -> None:
        await self.ws.close()

    async def open(self, page: str = "", timeout: float = 120.0) -> Render:
        """Run `page` (its URL path, "" for the default page) with the current widget values."""
        return await self._rerun(page, timeout)

    async def set(self, page: str, label: str, value, timeout: float = 120.0) -> Render:
        """Set the widget labelled `label` (first label match, seen on `page` before) and rerun."""
        wid, kind = self.ids[(page, label)]
        state = WidgetState(id=wid)
        name = VALUE_FIELDS[kind]
        if name.endswith("array_value"):
            getattr(state, name).data.extend(value if isinstance(value, (list, tuple)) else [value])
        else:
            setattr(state, name, value)
        self.widgets[wid] = state
        render = await self._rerun(page, timeout)
        if kind == "button":  # a trigger is sent once
            self.widgets.pop(wid, None)
        return render

    async def _rerun(self, page: str, timeout: float) -> Render:
        back = BackMsg()
        back.rerun_script.page_name = page
        back.rerun_script.widget_states.widgets.extend(self.widgets.values())
        start = time.perf_counter()
        await self.ws.send(back.SerializeToString())
        render = Render(0.0)
        media = []
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
                if etype in VALUE_FIELDS and getattr(proto, "id", ""):
                    self.ids.setdefault((page, label), (proto.id, etype))
                if etype == "imgs":
                    media += [img.url for img in proto.imgs if img.url.startswith("/")]
            elif kind == "script_finished":
                render.status = msg.script_finished
                if msg.script_finished != ForwardMsg.FINISHED_EARLY_FOR_RERUN:
                    break  # an early finish is followed by the rerun the page asked for
        if self.fetch_media and media:
            await asyncio.get_running_loop().run_in_executor(None, self._fetch, media)
        render.seconds = time.perf_counter() - start
        return render

    def _fetch(self, paths: list[str]) -> None:
        for path in paths:
            with urllib.request.urlopen(self.base + path, timeout=30) as r:
                r.read()
