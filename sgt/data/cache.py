"""A decoded dataset split cached as one uint8 tensor file, keyed by its source files.

Decoding thousands of PNGs/JPEGs takes seconds to minutes; loading one tensor file takes
a fraction of a second. The file name carries a fingerprint of the source files (paths,
sizes, modification times), so an edited dataset is decoded again instead of served
stale. Files are written atomically, so a killed run or two DDP processes writing at once
never leave a half-written cache.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from torch import Tensor

Split = tuple[Tensor, Tensor]


def fingerprint(files: Iterable[Path], *settings: object) -> str:
    """12 hex digits identifying the files' paths, sizes and mtimes plus ``settings``."""
    h = hashlib.sha1(repr(settings).encode())
    for path in files:
        stat = path.stat()
        h.update(f"{os.path.abspath(path)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return h.hexdigest()[:12]


def _save_atomic(split: Split, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(split, tmp)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def cached_split(path: Path | None, decode: Callable[[], Split]) -> Split:
    """``(inputs, labels)`` from the cache file ``path``, else ``decode()`` and store it.

    ``path=None`` disables caching. An unreadable cache file is decoded again and
    replaced; a cache folder that cannot be written only costs a warning.
    """
    if path is not None and path.is_file():
        try:
            x, y = torch.load(path, map_location="cpu", weights_only=True)
            return x, y
        except Exception as err:  # truncated or foreign file: rebuild it below
            warnings.warn(f"ignoring unreadable cache {path} ({err}); decoding again",
                          stacklevel=2)
    split = decode()
    if path is not None:
        try:
            _save_atomic(split, path)
        except OSError as err:
            warnings.warn(f"cannot write the dataset cache {path} ({err}); set "
                          "dataset.cache_dir to a writable folder to skip decoding next time",
                          stacklevel=2)
    return split
