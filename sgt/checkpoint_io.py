"""Checkpoints that are never half-written, and that fail with one clear line when unusable.

A run killed while saving must not leave a truncated ``last.ckpt`` that a resume would
trust. :class:`AtomicCheckpointIO` writes each checkpoint through
:func:`sgt.atomic.atomic_write`, so the target is always the previous or the new complete
file; a write the disk refuses (full, over quota, read-only) is recognised by its errno and
raises a one-line :class:`StorageError`, and leaves the checkpoints of the epoch before as
they were (see :meth:`AtomicCheckpointIO.remove_checkpoint`). Reading turns torch's errors
about corrupt or
foreign files into a :class:`CheckpointError`, and :func:`check_fits` says which network a
checkpoint was trained with when it does not fit the one being built.
"""

from __future__ import annotations

import errno
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from torch import nn

from sgt.atomic import atomic_write
from sgt.errors import CheckpointError, StorageError

NET_KEY = "sgt_net"  # checkpoint entry naming the network class it holds weights for


def net_name(net: nn.Module) -> str:
    """Import path of a network's class, e.g. ``sgt.models.mnist_cnn.MNISTNet``."""
    return f"{type(net).__module__}.{type(net).__qualname__}"


def temporary_path(path: Path) -> Path:
    """Where ``path`` is written before the rename: hidden, not ``*.ckpt``, and the same
    name every time, so a file left by a killed save is simply replaced by the next one."""
    return path.with_name(f".{path.name}.tmp")


def _reason(path: str | Path, err: Exception) -> str:
    """Why torch could not load ``path``, in a few words (its own errors run to many lines)."""
    if not zipfile.is_zipfile(path):  # torch.save writes zip archives; the index is at the end
        return "not a complete zip archive, as torch.save writes"
    text = str(err).strip()
    return text.splitlines()[0].split(". ")[0] if text else type(err).__name__


def read_checkpoint(path: str | Path, map_location: Any = "cpu",
                    weights_only: bool | None = None) -> dict[str, Any]:
    """``torch.load`` a checkpoint; a truncated or foreign file raises :class:`CheckpointError`."""
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=weights_only)
    except FileNotFoundError:
        raise
    except Exception as err:  # torch raises many types (pickle, zip, EOF) for one cause
        raise CheckpointError(
            f"cannot read checkpoint {path}: it is truncated or not a PyTorch checkpoint "
            f"({_reason(path, err)}); pass another ckpt_path (e.g. an epoch_*.ckpt beside it), "
            "or start a new run without one"
        ) from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(f"{path} is not a Lightning checkpoint (no state_dict); "
                              "pass a .ckpt written by experiments.train")
    return checkpoint


def _first_difference(theirs: dict[str, Any], ours: dict[str, torch.Tensor]) -> str | None:
    """The first parameter name or shape that differs, in words; ``None`` if all match."""
    for key, value in ours.items():
        if key not in theirs:
            return f"the checkpoint has no {key}"
        if tuple(theirs[key].shape) != tuple(value.shape):
            return (f"{key} is {tuple(theirs[key].shape)} in the checkpoint but "
                    f"{tuple(value.shape)} here")
    extra = next((key for key in theirs if key not in ours), None)
    return None if extra is None else f"the checkpoint has an unexpected {extra}"


def check_fits(checkpoint: dict[str, Any], module: nn.Module, path: str | Path) -> None:
    """Raise :class:`CheckpointError` unless ``checkpoint`` holds ``module``'s exact weights
    (same names and shapes), naming the network it was trained with and this run's."""
    problem = _first_difference(checkpoint["state_dict"], module.state_dict())
    if problem is None:
        return
    net = getattr(module, "net", module)
    trained = checkpoint.get(NET_KEY, "another network")
    raise CheckpointError(
        f"checkpoint {path} was trained with {trained}, which does not fit this run's "
        f"{net_name(net)} ({problem}); set model=... to the one it was trained with, "
        "or pass another ckpt_path"
    )


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint plugin: atomic, fsynced writes; clear errors on unreadable files.

    Wired in through ``trainer.plugins`` (``configs/trainer/default.yaml``); it covers every
    file ``ModelCheckpoint`` writes, ``last.ckpt`` included (``save_last: true`` saves a full
    copy through this plugin, where ``save_last: link`` would not).
    """

    def __init__(self) -> None:
        super().__init__()
        self._saved: tuple[Any, Path] | None = None  # (round, path) of the last good write
        self._replaced: list[tuple[Any, Path, Path]] = []  # (round, new file, old file)

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path,
                        storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        path = Path(path)
        when = (checkpoint.get("epoch"), checkpoint.get("global_step"))
        try:
            with atomic_write(path, temporary=temporary_path(path)) as f:
                save_to(checkpoint, f)
        except BaseException as err:
            self._finish_replacements(undo=when)
            if isinstance(err, OSError) and err.errno is not None:  # the system refused it
                raise StorageError(
                    f"cannot write checkpoint {path}: {err.strerror} "
                    f"({errno.errorcode.get(err.errno, err.errno)}); any checkpoint written "
                    f"before it is intact: {storage_fix(err.errno, path.parent)}") from None
            raise
        self._saved = (when, path)
        self._finish_replacements()

    def remove_checkpoint(self, path: str | Path) -> None:
        """Lightning removes the best checkpoint it replaced right after writing the new one,
        before the same epoch's ``last.ckpt``, which names the old one until it is written:
        the removal waits for the next good write, and when a write of that round (epoch,
        step) fails, the new best is removed instead, so the files agree with ``last.ckpt``."""
        if self._saved is None:
            super().remove_checkpoint(path)
        else:
            self._replaced.append((*self._saved, Path(path)))

    def teardown(self) -> None:
        self._finish_replacements()
        super().teardown()

    def _finish_replacements(self, undo: Any = None) -> None:
        """Remove the replaced files; of a replacement made in the round ``undo``, remove
        the new file and keep the old one."""
        for when, new, old in self._replaced:
            super().remove_checkpoint(new if when == undo else old)
        self._replaced.clear()

    def load_checkpoint(self, path: str | Path,
                        map_location: Callable | Any = lambda storage, loc: storage,
                        weights_only: bool | None = None) -> dict[str, Any]:
        if not Path(path).is_file():
            raise FileNotFoundError(f"Checkpoint file not found: {path}")
        return read_checkpoint(path, map_location, weights_only)


class _KeepWriteError:
    """The file ``torch.save`` writes through, keeping the ``OSError`` a write raised:
    torch's zip writer replaces it with a ``RuntimeError`` of its own that has lost the
    errno (``unexpected pos …``)."""

    def __init__(self, file: IO[bytes]) -> None:
        self.file = file
        self.error: OSError | None = None

    def write(self, data: bytes) -> int:
        try:
            return self.file.write(data)
        except OSError as err:
            self.error = err
            raise

    def flush(self) -> None:
        self.file.flush()


def save_to(checkpoint: dict[str, Any], file: IO[bytes]) -> None:
    """``torch.save`` into an open file; a failed write raises its own ``OSError``."""
    writer = _KeepWriteError(file)
    try:
        torch.save(checkpoint, writer)
    except RuntimeError:
        if writer.error is None:
            raise
        raise writer.error from None


def storage_fix(code: int, folder: Path) -> str:
    """What frees a write that failed with ``code`` (an errno) in ``folder``."""
    if code in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return f"free space for {folder} (on its disk, or in your quota)"
    if code in (errno.EROFS, errno.EACCES, errno.EPERM):
        return f"make {folder} writable"
    return f"check the disk that holds {folder}"
