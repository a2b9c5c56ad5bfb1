"""Small checks shared by the library. Argument checks raise a :class:`SettingError` that
names the setting, the bad value and what is allowed; data checks raise a
:class:`DatasetCorruptError` (or the caller's :class:`SGTError`) naming the file or tensor
and where in it the problem lies."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from torch import Tensor

from sgt.errors import DatasetCorruptError, SettingError, SGTError


def check_int(value: object, key: str, low: int = 1, high: int | None = None) -> int:
    """An integer (not a bool) in ``[low, high]``."""
    if (isinstance(value, bool) or not isinstance(value, int) or value < low
            or (high is not None and value > high)):
        if high is not None:
            allowed = f"an integer in [{low}, {high}]"
        else:
            allowed = "a positive integer" if low == 1 else f"an integer >= {low}"
        raise SettingError(f"{key} must be {allowed}, got {value!r}")
    return value


def check_choice(value: object, key: str, allowed: Sequence[str]) -> str:
    """One of ``allowed``."""
    if value not in allowed:
        raise SettingError(f"{key} must be one of {list(allowed)}, got {value!r}")
    return value  # type: ignore[return-value]


def check_flag(value: object, key: str) -> bool:
    """``True`` or ``False`` (not 0/1 or a string)."""
    if not isinstance(value, bool):
        raise SettingError(f"{key} must be true or false, got {value!r}")
    return value


def utf8_lines(path: Path, error: type[SGTError], fix: str) -> Iterator[tuple[int, str]]:
    """``(line number, line)`` of a text file, each line (ending at ``\\n``, kept) decoded
    as UTF-8 while streaming, so a multi-gigabyte file is never held whole. A byte that is
    not UTF-8 raises ``error`` naming the file, the byte, its offset and its line: Python's
    own UnicodeDecodeError names neither the file nor a usable offset."""
    offset = 0
    with path.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise error(f"{path} is not UTF-8 text: byte 0x{raw[err.start]:02x} at offset "
                            f"{offset + err.start} (line {number}); {fix}") from None
            offset += len(raw)
            yield number, line


def check_finite(tensor: Tensor, what: str, fix: str) -> None:
    """``tensor`` holds no NaN or infinity (one device sync); else a
    :class:`DatasetCorruptError` says how many of its values are not finite."""
    if tensor.is_floating_point() and not bool(tensor.isfinite().all()):
        bad = int((~tensor.isfinite()).sum())
        raise DatasetCorruptError(f"{what}: {bad} of {tensor.numel()} values are NaN or "
                                  f"infinite; {fix}")


def check_finite_batches(batches: Iterable[Sequence[Tensor]], names: Sequence[str],
                         what: str) -> None:
    """Every batch's tensors named in ``names`` (by position; later ones are not read) are
    finite, before any work on them: NaN inputs give NaN outputs that still count as
    numbers."""
    for index, batch in enumerate(batches):
        for name, tensor in zip(names, batch, strict=False):
            check_finite(tensor, f"{what}, batch {index}, {name}",
                         "fix the data (a NaN or inf input makes every score computed from "
                         "it meaningless), or delete a stale cache of it")


def check_number(value: object, key: str, low: float = 0.0) -> float:
    """A finite real number (not a bool) ``>= low``."""
    if (isinstance(value, bool) or not isinstance(value, int | float)
            or not math.isfinite(value) or value < low):
        raise SettingError(f"{key} must be a finite number >= {low:g}, got {value!r}")
    return float(value)
