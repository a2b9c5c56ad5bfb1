"""Errors a user can fix by changing data or settings (printed as one line by the CLIs)."""


class SGTError(Exception):
    """Base for user-facing errors: the message names the problem and the fix."""


class DatasetNotFoundError(SGTError, FileNotFoundError):
    """A dataset's files are absent and could not be downloaded."""


class DatasetCorruptError(SGTError, ValueError):
    """A dataset's files exist but cannot be read as that dataset."""
