"""Files that are never half-written: the one way sgt writes checkpoints, results and caches.

A run killed (or a disk filling up) while writing must leave either the previous complete
file or the new one, never a truncated file that a resume, a report or the next run would
trust. :func:`atomic_write` writes to a hidden temporary file in the target's own folder
(a rename is atomic only within one filesystem), fsyncs it, renames it over the target and
fsyncs the folder, so that the rename itself survives a crash.

A job that writes several files (an evaluation's json, csv, figures; a report's tables)
runs inside :func:`all_or_nothing`: when any write fails, the files it had already made are
removed again, so a full disk never leaves a partial set behind that the next job would
number around. :func:`check_writable` finds an unwritable folder before the work starts.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from sgt.errors import StorageError

_created: list[list[Path]] = []  # files made inside each open all_or_nothing block


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
        OSError: the folder or the file could not be written (its ``filename`` is ``path``
            for a failed write); any earlier ``path`` is intact and no temporary file is left.

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
        new = not path.exists()
        os.replace(tmp, path)
        fsync_folder(path.parent)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if isinstance(err, OSError) and err.filename in (None, str(tmp)):
            err.filename = str(path)  # the file the user knows, not our temporary one
        raise
    if new:
        created(path)


def write_text(path: str | Path, text: str) -> Path:
    """``path``'s contents become ``text`` (UTF-8), atomically."""
    with atomic_write(path, "wb") as f:
        f.write(text.encode("utf-8"))
    return Path(path)


def created(path: Path) -> None:
    """Count ``path`` (a file just made) among the files the open :func:`all_or_nothing`
    block removes if it fails."""
    if _created:
        _created[-1].append(Path(path))


def storage_error(err: OSError, fix: str) -> StorageError:
    """The one line a failed write prints: the file, the system's reason, the fix."""
    where = f" {err.filename}" if err.filename else ""
    return StorageError(f"cannot write{where} ({err.strerror or err}); {fix}")


@contextmanager
def all_or_nothing(fix: str) -> Iterator[None]:
    """A block whose new files (written by :func:`atomic_write`, or announced with
    :func:`created`) are all kept, or all removed when it raises; an ``OSError`` becomes a
    :class:`~sgt.errors.StorageError` ending in ``fix``.
    """
    _created.append([])
    try:
        yield
    except BaseException as err:
        for path in reversed(_created[-1]):
            path.unlink(missing_ok=True)
        if isinstance(err, OSError) and not isinstance(err, StorageError):
            raise storage_error(err, f"nothing of it was kept; {fix}") from None
        raise
    finally:
        made = _created.pop()
        if _created:  # an enclosing block removes them too if it fails later
            _created[-1].extend(made)


def check_writable(folder: str | Path, fix: str) -> Path:
    """Make ``folder`` (with its parents) and write a file there, before any work whose
    results would go there; raises :class:`~sgt.errors.StorageError` naming it."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise StorageError(f"cannot write to {folder} ({err.strerror or err}); {fix}") from None
    return folder


__all__ = ["all_or_nothing", "atomic_write", "check_writable", "created", "fsync_folder",
           "storage_error", "write_text"]
