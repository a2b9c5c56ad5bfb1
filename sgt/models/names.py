"""Models of other libraries chosen by name: a typo gets the close names, not a traceback."""

from __future__ import annotations

import difflib
from collections.abc import Sequence

from sgt.errors import ModelError


def check_model_name(name: str, known: Sequence[str], kind: str, listing: str) -> None:
    """Raise a one-line :class:`ModelError` unless ``name`` is one of ``known``.

    Args:
        kind: what ``known`` holds, for the message (``timm model``).
        listing: the call that lists every name (``timm.list_models()``).
    """
    if name in known:
        return
    close = difflib.get_close_matches(str(name), known, n=5, cutoff=0.4)
    raise ModelError(f"unknown {kind} {name!r}; close names: {close or list(known[:5])} "
                     f"(all: {listing})")
