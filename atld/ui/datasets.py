"""What the app says about its data (Streamlit-free): the picker's line per dataset, the Home
page's table, the note on pages computed on a shipped sample, and why training needs the full data."""

from __future__ import annotations

from atld.data.availability import Availability
from atld.data.registry import get_spec


def picker_label(name: str, avail: Availability | None) -> str:
    """The sidebar's dataset option, e.g. "mnist · 3 checkpoints · sample only"."""
    return name if avail is None else f"{name} · {avail.summary()}"


def availability_rows(table: dict[str, Availability]) -> list[dict]:
    """One row per registered dataset for the Home page's table."""
    return [{"dataset": name, "shipped checkpoints": ", ".join(a.checkpoints) or "none",
             "shipped test sample": "yes" if a.sample is not None else "no",
             "full data": "yes" if a.full_data else ("no (downloadable here)" if a.downloadable else "no")}
            for name, a in table.items()]


def sample_note(data) -> str | None:
    """The line a page shows when its images and numbers come from the shipped sample, else None."""
    if not data.sample:
        return None
    return (f"Images and accuracies here are computed {data.on_what()} (the full {data.spec.name} data is not "
            "on this server" + ("; download it on the Home page, under Datasets)." if data.spec.downloadable
                                else ")."))


def full_data_needed(dataset: str, n_sample: int | None = None) -> str:
    """Why training `dataset` cannot start on a server that has only its shipped sample, and what to do."""
    spec = get_spec(dataset)
    how = ("download it on the Home page (Datasets), or restart the app with ATLD_DATA_ROOT set to a folder that "
           "holds it" if spec.downloadable else
           f"restart the app with ATLD_DATA_ROOT set to a folder that holds {spec.source}")
    what = f"the shipped sample of {n_sample:,} test images" if n_sample else "a shipped sample of test images"
    return f"Training on {dataset} needs its full data set; this server has only {what}: {how}."
