"""Per-batch progress of an attack, reported through a callback (torch-free).

An attack over many images runs in parts (PGD-20 is one part; AutoAttack's are APGD-CE, APGD-T,
FAB-T and Square) and each part in batches. The attack calls `progress(BatchEvent(...))` once
when a part starts (batch 0) and after every batch; the evaluation turns these events into an
overall fraction and a time estimate (`atld.evaluate.progress`), the CLI into a tqdm bar, the
app into its progress bar.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


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
