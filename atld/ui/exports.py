"""Downloads offered by the app: the run config as JSON, the checkpoint as a zip, tables as CSV.
Streamlit-free and torch-free; every function returns the bytes/text a download button serves."""

from __future__ import annotations

import io
import itertools
import json
import re
import time
import zipfile
from pathlib import Path

from atld.errors import CheckpointError
from atld.fileio import read_regular
from atld.runs.card import CARD, MARKER, MAX_CARD_BYTES, MAX_TENSOR_FILE_BYTES, card_files, read_card


def config_json(card: dict) -> str:
    """The run's full (resolved) training config as pretty JSON, with what it was trained as."""
    payload = {"name": card.get("name"), "method": card["method"], "dataset": card["dataset"],
               "arch": card["arch"], "seed": card["seed"], "config": card["config"]}
    return json.dumps(payload, indent=2)


def checkpoint_zip(run_dir: str | Path) -> bytes:
    """A zip of the run: its card, the tensor files the card names and the lab's marker (so the
    unzipped folder can be resumed), under a folder named after the run. Nothing else in the
    folder leaves the server, and links or special files are never followed."""
    run_dir = Path(run_dir)
    card = read_card(run_dir)  # validates; refuses a broken run
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        tensors = ((name, MAX_TENSOR_FILE_BYTES) for name in card_files(card))
        for name, limit in ((CARD, MAX_CARD_BYTES), (MARKER, 4096), *tensors):
            try:
                zf.writestr(f"{run_dir.name}/{name}", read_regular(run_dir / name, limit, CheckpointError, name))
            except CheckpointError:
                if name != MARKER:  # an older run without the marker still zips
                    raise
    return buf.getvalue()


def frame_csv(frame) -> bytes:
    """A pandas DataFrame as UTF-8 CSV bytes (no index)."""
    return frame.to_csv(index=False).encode()


_EXPORTS = itertools.count(1)  # this server's exports, so no two get the same name


def export_name(stem: str, extension: str) -> str:
    """A download's file name that no other export of this server shares: `stem`, the local time
    to the second and a running number (two exports within one second used to get the same name,
    and the browser kept only one). The stem is reduced to letters, digits, '.', '_' and '-'."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", str(stem)).strip("._") or "export"
    return f"{stem[:80]}-{time.strftime('%Y%m%d-%H%M%S')}-{next(_EXPORTS)}.{extension.lstrip('.')}"
