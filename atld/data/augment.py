"""Per-batch augmentation done on the batch's own device (no DataLoader workers)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from atld.vocab import Augmentation, parse

CROP_PADDING = 4  # pixels, CIFAR's random crop 32 -> pad 4 -> crop 32


def augment_batch(x: torch.Tensor, kind: str, generator: torch.Generator | None = None) -> torch.Tensor:
    """Apply `kind` ("none" | "crop-flip") to a float batch [B, C, H, W] in [0, 1].

    crop-flip: zero-pad by 4 pixels, take a random HxW crop per image, flip half the images
    horizontally. Randomness comes from `generator` (on the batch's device) for reproducibility.
    """
    if parse(Augmentation, kind, "augmentation") is Augmentation.NONE:
        return x
    b, _, h, w = x.shape
    p = CROP_PADDING
    padded = F.pad(x, (p, p, p, p))
    dx = torch.randint(0, 2 * p + 1, (b,), device=x.device, generator=generator)
    dy = torch.randint(0, 2 * p + 1, (b,), device=x.device, generator=generator)
    rows = (dy[:, None] + torch.arange(h, device=x.device)[None, :])  # [B, H]
    cols = (dx[:, None] + torch.arange(w, device=x.device)[None, :])  # [B, W]
    flip = torch.rand(b, device=x.device, generator=generator) < 0.5
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    batch_idx = torch.arange(b, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch_idx, rows[:, :, None], cols[:, None, :]]  # [B, H, W, C]
    return out.permute(0, 3, 1, 2).contiguous()
