"""Files that are never half-written: the one way sgt writes checkpoints, results and caches.

A run killed (or a disk filling up) while writing must leave either the previous complete
file or the new one, never a truncated file that a resume, a report or the next run would
trust. :func:`atomic_write` writes to a hidden temporary file in the target's own folder
(a rename is atomic only within one filesystem), fsyncs it, renames it over the target and
fsyncs the folder, so that the rename itself survives a crash.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (its entry is data of the folder)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_write(path: str | Path, mode: str = "wb", temporary: Path | None = None
                 ) -> Iterator[IO[Any]]:
    """Open a file object whose contents replace ``path`` only when the block completes.

    Args:
        path: the target; its folder is created when missing.
        mode: ``"wb"`` or ``"w"``.
        temporary: the temporary file (in ``path``'s folder); by default a unique hidden
            name, so writers of the same target at once never share one. A fixed name (as
            checkpoints use) means a file left by a killed write is replaced by the next.
    Raises:
        OSError: the folder or the file could not be written; any earlier ``path`` is intact
            and no temporary file is left.

    The file gets the mode any new file gets (the umask), not a temporary file's 0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if temporary is None:
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        tmp = Path(name)
    else:
        tmp = temporary
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_folder(path.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


__all__ = ["atomic_write", "fsync_folder"]
