"""One run folder, one run: the first start takes an exclusive lock on ``<run>/.sgt.lock``,
held until its process ends (a crash or SIGKILL releases it), so a second start into the
same folder is refused before it writes anything."""

from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path

from sgt.errors import SettingError

LOCK = ".sgt.lock"
_held: dict[Path, tuple[int, bool]] = {}  # run dir -> (its locked file, created by us)


def is_ddp_child() -> bool:
    """A process Lightning started for another device: rank 0 holds the lock for all."""
    return os.environ.get("LOCAL_RANK", "0") != "0" or os.environ.get("NODE_RANK", "0") != "0"


def claim_run_dir(run_dir: Path) -> bool:
    """Lock ``run_dir`` for this process (creating it); returns whether it was created.

    Raises:
        SettingError: the folder cannot be written, or another live run holds it.
    """
    run_dir = run_dir.resolve()
    if run_dir in _held or is_ddp_child():
        return False
    created = not run_dir.exists()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(run_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as err:
        raise SettingError(f"cannot write to the run folder {run_dir} ({err.strerror}); "
                           "choose a writable hydra.run.dir") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise SettingError(f"{run_dir} is in use by another run (a live process holds "
                           f"{LOCK} there); choose another hydra.run.dir, or wait for that run "
                           "to end") from None
    _held[run_dir] = (fd, created)
    return created


def release_run_dir(run_dir: Path, remove: bool = False) -> None:
    """Give the lock back. A folder this process created and left holding nothing but the
    lock is removed, as is any folder with ``remove`` (a start that failed)."""
    run_dir = run_dir.resolve()
    fd, created = _held.pop(run_dir, (None, False))
    if fd is not None:
        os.close(fd)
    empty = created and run_dir.is_dir() and [p.name for p in run_dir.iterdir()] == [LOCK]
    if remove or empty:
        shutil.rmtree(run_dir, ignore_errors=True)
