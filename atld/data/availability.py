"""What the lab has of each registered dataset: shipped checkpoints, the shipped test sample, the
full data under the data root (torch-free, a few `stat` calls: cheap enough for every rerun).

The app loads the full data when it is present and falls back to the shipped sample (the test
split only) otherwise (`atld.data.loaders.load_for_app`)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from atld.data.registry import DATASET_NAMES, get_spec
from atld.data.samples import sample_path


@dataclass(frozen=True)
class Availability:
    dataset: str
    checkpoints: tuple[str, ...]  # names of the shipped runs of this dataset
    sample: Path | None  # the shipped test sample, when there is one
    full_data: bool  # the whole data set is under the data root (or ships with a package)
    downloadable: bool  # the app can download the full data

    @property
    def usable(self) -> bool:
        """Test images are at hand (full data or sample)."""
        return self.full_data or self.sample is not None

    def summary(self) -> str:
        """One short line, e.g. "3 checkpoints · sample · full data"."""
        n = len(self.checkpoints)
        parts = [f"{n} checkpoint{'s' if n != 1 else ''}" if n else "no checkpoint"]
        if self.full_data:
            parts.append("full data")
        elif self.sample is not None:
            parts.append("sample only")
        else:
            parts.append("no data")
        return " · ".join(parts)


def full_data_dir(dataset: str, root: str | os.PathLike | None) -> Path | None:
    """The folder holding every file `dataset`'s loader reads: `root` itself (torchvision's
    layout, e.g. ROOT/MNIST/raw) or `root/<dataset>` (one folder per dataset, e.g.
    ROOT/mnist/MNIST/raw); None when neither has them all."""
    spec = get_spec(dataset)
    if root is None or not spec.data_files:
        return None
    root = Path(root).expanduser()
    for folder in (root, root / dataset):
        if all((folder / f).is_file() or (folder / f"{f}.gz").is_file() for f in spec.data_files):
            return folder
    return None


def has_full_data(dataset: str, root: str | os.PathLike | None) -> bool:
    """Whether the whole data set is at hand: under `root` (`full_data_dir`), or shipped with a
    package (digits)."""
    return not get_spec(dataset).needs_root or full_data_dir(dataset, root) is not None


def availability(dataset: str, *, data_root: str | os.PathLike | None, samples_dir: str | os.PathLike,
                 checkpoints: dict[str, str] | None = None) -> Availability:
    """What is there of `dataset`. `checkpoints`: shipped run name -> its dataset
    (`atld.runs.card.shipped_checkpoints`; the app passes its cached listing)."""
    spec = get_spec(dataset)
    path = sample_path(dataset, samples_dir)
    return Availability(dataset, tuple(sorted(n for n, d in (checkpoints or {}).items() if d == dataset)),
                        path if path.is_file() else None, has_full_data(dataset, data_root), spec.downloadable)


def all_availability(*, data_root, samples_dir, checkpoints: dict[str, str] | None = None) -> dict[str, Availability]:
    """`availability` of every registered dataset, in registry order."""
    return {name: availability(name, data_root=data_root, samples_dir=samples_dir, checkpoints=checkpoints)
            for name in DATASET_NAMES}
