"""Per-batch progress of an attack, reported through a callback (torch-free).

An attack over many images runs in parts (PGD-20 is one part; AutoAttack's are APGD-CE, APGD-T,
FAB-T and Square) and each part in batches. The attack calls `progress(BatchEvent(...))` once
when a part starts (batch 0) and after every batch; the evaluation turns these events into an
overall fraction and a time estimate (`atld.evaluate.progress`), the CLI into a tqdm bar.
An attack given no callback reports to `atld.progress` instead (the part's fraction and name), so
an attack run by the app's compute service shows its progress and stops at a Cancel like every
other computation there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from atld.progress import report


@dataclass(frozen=True)
class BatchEvent:
    part: str  # what runs: "PGD-20", "APGD-T", "Square", ...
    batch: int  # batches of this part done (0 when the part starts)
    batches: int  # batches in this part
    images: int  # images this part attacks (AutoAttack's later parts only see the still-robust ones)


BatchProgress = Callable[[BatchEvent], None]


def batch_count(n: int, batch_size: int) -> int:
    """Batches of at most `batch_size` that hold n images."""
    return -(-n // batch_size)


def notify(progress: BatchProgress | None, part: str, batch: int, batches: int, images: int) -> None:
    if progress is not None:
        progress(BatchEvent(part, batch, batches, images))
    else:
        report(batch / max(batches, 1), f"{part}: batch {batch}/{batches}")
