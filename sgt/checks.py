"""Small argument checks shared by the library: each raises a :class:`SettingError` that
names the setting, the bad value and what is allowed."""

from __future__ import annotations

from collections.abc import Sequence

from sgt.errors import SettingError


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
