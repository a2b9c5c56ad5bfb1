"""A decoded (or generated) dataset split cached as one tensor file, keyed by its sources.

Decoding thousands of PNGs/JPEGs takes seconds to minutes; loading one tensor file takes
a fraction of a second. The file name carries a fingerprint of the source files (paths,
sizes, modification times), so an edited dataset is decoded again instead of served
stale. Files are written atomically, so a killed run or two DDP processes writing at once
never leave a half-written cache.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

import torch
from torch import Tensor

from sgt.atomic import atomic_write

Split = tuple[Tensor, ...]  # (inputs, labels, ...) or any fixed tuple of tensors
T = TypeVar("T")


def fingerprint(files: Iterable[Path], *settings: object) -> str:
    """12 hex digits identifying the files' paths, sizes and mtimes plus ``settings``."""
    h = hashlib.sha1(repr(settings).encode())
    for path in files:
        stat = path.stat()
        h.update(f"{os.path.abspath(path)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return h.hexdigest()[:12]


def cached(path: Path | None, build: Callable[[], T],
           check: Callable[[object], T] | None = None) -> T:
    """``build()``'s result from the cache file ``path``, else build it and store it.

    The value must be what ``torch.load(weights_only=True)`` reads back (tensors, numbers,
    strings, lists, tuples, dicts). ``check`` turns a loaded value into the expected one
    and raises on anything else. ``path=None`` disables caching. An unreadable or foreign
    cache file is built again and replaced; a folder that cannot be written only costs a
    warning.
    """
    if path is not None and path.is_file():
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
            return check(data) if check is not None else data
        except Exception as err:  # truncated or foreign file: rebuild it below
            warnings.warn(f"ignoring unreadable cache {path} ({err}); decoding again",
                          stacklevel=3)
    value = build()
    if path is not None:
        try:
            with atomic_write(path) as f:
                torch.save(value, f)
        except OSError as err:
            warnings.warn(f"cannot write the dataset cache {path} ({err}); set "
                          "dataset.cache_dir to a writable folder to skip decoding next time",
                          stacklevel=3)
    return value


def _tensors(data: object) -> Split:
    if not isinstance(data, (tuple, list)) or not all(isinstance(t, Tensor) for t in data):
        raise TypeError(f"expected a tuple of tensors, found {type(data).__name__}")
    return tuple(data)


def cached_split(path: Path | None, decode: Callable[[], Split]) -> Split:
    """A tuple of tensors (``(inputs, labels, ...)``) from the cache file ``path``, else
    ``decode()`` and store it (see :func:`cached`)."""
    return cached(path, decode, _tensors)
