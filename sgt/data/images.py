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


def _stored_as(image: Image.Image) -> str:
    """How the file stores its samples (Pillow's raw mode, e.g. ``RGB;16B``): a 16-bit RGB
    or grey-alpha PNG opens in the 8-bit mode ``RGB``/``RGBA`` and is cut to 8 bits on
    load, so only the raw mode tells. Read it before ``load()``, which forgets it."""
    args = image.tile[0][3] if image.tile else ""  # (codec, box, offset, args)
    raw = args[0] if isinstance(args, tuple) and args else args
    return raw if isinstance(raw, str) else ""


def _inexact(image: Image.Image) -> str | None:
    """Why ``image`` cannot become 8-bit RGB without changing pixel values, if it cannot."""
    stored = _stored_as(image)
    if ";16" in stored or ";32" in stored:
        return f"has 16 or more bits per channel (Pillow mode {image.mode}, stored as {stored})"
    if image.mode not in EXACT_MODES:
        return f"is in Pillow mode {image.mode} (e.g. 16-bit grey, 32-bit, float or CMYK)"
    return None


def read_rgb(path: Path) -> np.ndarray:
    """One image file -> ``(H, W, 3)`` uint8 RGB, exactly: 1-bit, grey and palette images
    are expanded, an opaque alpha channel dropped; anything that cannot be read as 8-bit RGB
    without changing pixel values (16-bit of any channel count, float, CMYK, real
    transparency) is refused."""
    try:
        with Image.open(path) as image:
            reason = _inexact(image)
            if reason is not None:
                raise DatasetCorruptError(f"image {path} {reason}, which 8-bit RGB cannot hold "
                                          "exactly; convert it to 8-bit RGB or greyscale")
            image.load()
            if image.mode in ("LA", "PA", "RGBA") or "transparency" in image.info:
                alpha = np.array(image.convert("RGBA"))[..., 3]
                if (alpha < 255).any():
                    raise DatasetCorruptError(
                        f"image {path} is transparent in places; flatten it onto a background "
                        "(sgt reads RGB)")
            return np.array(image.convert("RGB"))  # a writable copy for torch
    except DatasetCorruptError:  # a ValueError, but already says what is wrong
        raise
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
