"""One run folder, one run: the first start takes an exclusive lock on ``<run>/.sgt.lock``,
held until its process ends, so a second start into the same folder is refused before it
writes anything.

The lock is filelock's: ``flock`` where the filesystem has it (the kernel releases it when the
holder dies, even by SIGKILL), else a soft lock, a marker file naming the holder (some
cluster filesystems have no ``flock``).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from filelock import BaseFileLock, FileLock, SoftFileLock, Timeout

from sgt.errors import SettingError

LOCK = ".sgt.lock"
_held: dict[Path, tuple[BaseFileLock, bool]] = {}  # run dir -> (its lock, created by us)


def try_lock(path: Path) -> BaseFileLock | None:
    """An exclusive lock on ``path`` now held by this process (until :meth:`release` or its
    end), or ``None`` while another process holds it."""
    for kind in (FileLock, SoftFileLock):
        lock = kind(path, timeout=0)
        try:
            lock.acquire()
        except Timeout:
            return None
        except NotImplementedError:  # a filelock that does not fall back itself: no flock here
            continue
        return lock
    raise AssertionError("SoftFileLock needs no flock")


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
        lock = try_lock(run_dir / LOCK)
    except OSError as err:
        raise SettingError(f"cannot write to the run folder {run_dir} ({err.strerror}); "
                           "choose a writable hydra.run.dir") from None
    if lock is None:
        raise SettingError(f"{run_dir} is in use by another run (a live process holds "
                           f"{LOCK} there); choose another hydra.run.dir, or wait for that run "
                           "to end")
    _held[run_dir] = (lock, created)
    return created


def held_by_another(folder: Path) -> bool:
    """Whether another live process holds ``folder``'s run lock (tested by taking it for a
    moment; a lock file that cannot be opened here tells nothing)."""
    path = folder / LOCK
    if folder.resolve() in _held or not path.is_file():
        return False
    try:
        lock = try_lock(path)
    except OSError:
        return False
    if lock is None:
        return True
    lock.release()
    return False


def check_not_training(run_dir: Path) -> None:
    """Refuse to evaluate a run that a live process is still training: its checkpoints are
    not its final ones (the training process itself evaluates its own best checkpoint)."""
    if held_by_another(run_dir):
        raise SettingError(f"{run_dir} is still training (a live process holds {LOCK} "
                           "there), so its checkpoints are not final; evaluate it when that "
                           "run has ended")


def release_run_dir(run_dir: Path, remove: bool = False) -> None:
    """Give the lock back. A folder this process created and left holding nothing but the
    lock is removed, as is any folder with ``remove`` (a start that failed)."""
    run_dir = run_dir.resolve()
    lock, created = _held.pop(run_dir, (None, False))
    if lock is not None:
        lock.release()
    empty = created and run_dir.is_dir() and {p.name for p in run_dir.iterdir()} <= {LOCK}
    if remove or empty:
        shutil.rmtree(run_dir, ignore_errors=True)
