"""Decode many image files into one uint8 ``(N, 3, H, W)`` tensor, in parallel.

Pillow releases the GIL while decoding, so a thread pool scales with cores. Every file
must decode and have the expected size; the first that does not raises a
:class:`DatasetCorruptError` naming it, instead of failing later inside a batch.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from sgt.errors import DatasetCorruptError

# Pillow modes whose conversion to 8-bit RGB keeps every pixel value exactly.
EXACT_MODES = {"1", "L", "P", "RGB", "LA", "PA", "RGBA"}


def read_rgb(path: Path) -> np.ndarray:
    """One image file -> ``(H, W, 3)`` uint8 RGB, exactly: 1-bit, grey and palette images
    are expanded, an opaque alpha channel dropped; anything that cannot be read as 8-bit RGB
    without changing pixel values (16-bit, float, CMYK, real transparency) is refused."""
    try:
        with Image.open(path) as image:
            image.load()
            mode = image.mode
            if mode not in EXACT_MODES:
                raise DatasetCorruptError(
                    f"image {path} is in Pillow mode {mode} (e.g. 16-bit or CMYK), which "
                    "8-bit RGB cannot hold exactly; convert it to 8-bit RGB or greyscale")
            if mode in ("LA", "PA", "RGBA") or "transparency" in image.info:
                alpha = np.array(image.convert("RGBA"))[..., 3]
                if (alpha < 255).any():
                    raise DatasetCorruptError(
                        f"image {path} is transparent in places; flatten it onto a background "
                        "(sgt reads RGB)")
            return np.array(image.convert("RGB"))  # a writable copy for torch
    except (OSError, SyntaxError, ValueError, zlib.error) as err:
        raise DatasetCorruptError(
            f"cannot decode image {path} ({err}); replace or delete that file"
        ) from None


def read_rgb_stack(paths: Sequence[Path], size: tuple[int, int], fix: str) -> Tensor:
    """Decode ``paths`` into ``(N, 3, H, W)`` uint8, each image exactly ``size = (H, W)``.

    Args:
        fix: what to tell the user when an image has another size.
    """
    height, width = size
    out = torch.empty((len(paths), 3, height, width), dtype=torch.uint8)

    def decode(i: int) -> None:
        image = read_rgb(paths[i])
        if image.shape[:2] != (height, width):
            raise DatasetCorruptError(
                f"image {paths[i]} is {image.shape[1]}×{image.shape[0]} pixels but "
                f"{width}×{height} were expected; {fix}"
            )
        out[i] = torch.from_numpy(image).permute(2, 0, 1)  # (H, W, 3) -> (3, H, W)

    pool = ThreadPoolExecutor(min(16, os.cpu_count() or 1))
    try:
        for _ in pool.map(decode, range(len(paths))):  # re-raises the first error
            pass
    finally:
        pool.shutdown(cancel_futures=True)  # after an error, skip the files still queued
    return out
