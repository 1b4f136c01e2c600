"""Downloads offered by the app: the run config as JSON, the checkpoint as a zip, tables as CSV.
Streamlit-free; every function returns the bytes/text a download button serves."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path



def config_json(card: dict) -> str:
    """The run's full (resolved) training config as pretty JSON, with what it was trained as."""
    payload = {"name": card.get("name"), "method": card["method"], "dataset": card["dataset"],
               "arch": card["arch"], "seed": card["seed"], "config": card["config"]}
    return json.dumps(payload, indent=2)


def checkpoint_zip(run_dir: str | Path) -> bytes:
    """A zip of the run directory's card and tensor files (only the files the card names, so a
    stray file never leaves the server), under a folder named after the run."""
    from atld.checkpoints import CARD, read_card  # imports torch: only when the zip is asked for

    run_dir = Path(run_dir)
    card = read_card(run_dir)  # validates; refuses a broken run
    names = [CARD] + [n for n in card["files"].values() if n]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in names:
            path = run_dir / name
            if path.is_file() and not path.is_symlink():
                zf.write(path, f"{run_dir.name}/{name}")
    return buf.getvalue()


def frame_csv(frame) -> bytes:
    """A pandas DataFrame as UTF-8 CSV bytes (no index)."""
    return frame.to_csv(index=False).encode()
