"""Batched, on-device image augmentation (one gather for the whole batch, no per-image loop)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def random_crop_flip(x: Tensor, padding: int, flip: bool,
                     generator: torch.Generator | None = None) -> Tensor:
    """``RandomCrop(size, padding)`` + ``RandomHorizontalFlip()`` of every image in a batch.

    Each image is zero-padded by ``padding`` pixels, cropped back to its size at a random
    offset in ``[0, 2·padding]²`` and mirrored with probability 1/2, as torchvision's
    transforms do per image. Offsets and flips come from ``generator`` (on ``x.device``).

    Args:
        x: ``(B, C, H, W)`` batch, any dtype (uint8 before normalisation: pads with black).
    Returns:
        ``(B, C, H, W)`` augmented batch on ``x.device``.
    """
    if padding == 0 and not flip:
        return x
    b, c, h, w = x.shape
    device = x.device
    rows = torch.arange(h, device=device).expand(b, h)  # (B, H) source row per output row
    cols = torch.arange(w, device=device).expand(b, w)  # (B, W) source column per column
    if padding > 0:
        x = F.pad(x, (padding, padding, padding, padding))
        dy, dx = torch.randint(0, 2 * padding + 1, (2, b, 1), device=device, generator=generator)
        rows, cols = rows + dy, cols + dx
    if flip:
        mirrored = torch.rand(b, 1, device=device, generator=generator) < 0.5
        cols = torch.where(mirrored, cols.flip(1), cols)
    batch = torch.arange(b, device=device).view(b, 1, 1, 1)
    channel = torch.arange(c, device=device).view(1, c, 1, 1)
    # One gather: out[i, ch, r, s] = x[i, ch, rows[i, r], cols[i, s]]
    return x[batch, channel, rows.view(b, 1, h, 1), cols.view(b, 1, 1, w)]
