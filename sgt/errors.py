"""Errors a user can fix by changing data, settings or files.

The CLIs print any :class:`SGTError` as one line (``error: <what>; <how to fix>``) and exit
with code 2; every other exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class SGTError(Exception):
    """Base for user-facing errors: the message names the problem and the fix."""


class SettingError(SGTError, ValueError):
    """A setting is out of range, of the wrong type, unknown, or impossible with another."""


class UnknownNameError(SettingError, KeyError):
    """A name (attribution method, fill, …) that no registry knows."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class DatasetNotFoundError(SGTError, FileNotFoundError):
    """A dataset's files are absent and could not be downloaded.

    ``problem`` says what is missing and where sgt looked; ``holding`` what a data folder
    must hold; the message adds how to point sgt at one (``fix``), which a caller with
    another way to set the folder replaces (:meth:`with_fix`).
    """

    FIX = "Set SGT_DATA_DIR (or paths.data_dir=...) to a folder holding {holding}"

    def __init__(self, problem: str, holding: str = "it", fix: str = FIX) -> None:
        self.problem, self.holding, self.fix = problem, holding, fix
        super().__init__(f"{problem}. {fix.format(holding=holding)}")

    def with_fix(self, fix: str) -> DatasetNotFoundError:
        return DatasetNotFoundError(self.problem, self.holding, fix)


class DatasetCorruptError(SGTError, ValueError):
    """A dataset's files exist but cannot be read as that dataset."""


class ModelError(SGTError, ValueError):
    """A model name or its pretrained weights cannot be used."""


class CheckpointError(SGTError, ValueError):
    """A checkpoint cannot be read, or holds weights for another network."""


class StorageError(SGTError, OSError):
    """Results cannot be written (disk full, read-only or unwritable folder)."""


class NonFiniteError(SGTError, RuntimeError):
    """Raised (``nan_policy=stop``) when the saliency or the loss stops being finite."""
