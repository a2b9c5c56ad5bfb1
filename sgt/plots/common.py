"""Shared plotting helpers and the registry of figures per evaluation result kind.

Figures are built on ``matplotlib.figure.Figure`` (Agg canvas) rather than ``pyplot``, so
plotting never needs a display, never changes the caller's backend and leaks no figures.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from sgt.atomic import atomic_write
from sgt.registry import Registry

# kind -> (results by run label, path stem) -> {figure name: PNG path}
ResultFigures = Callable[[Mapping[str, Any], Path], dict[str, Path]]
FIGURES: Registry[ResultFigures] = Registry("result figure")


def save(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` to ``path`` (its suffix is the format), atomically."""
    path = Path(path)
    with atomic_write(path) as f:
        fig.savefig(f, format=path.suffix.lstrip(".") or "png", dpi=120, bbox_inches="tight")
    return path


def grid(n: int, max_cols: int = 4) -> tuple[int, int]:
    """``(rows, cols)`` of a panel grid for ``n`` panels."""
    cols = max(1, min(n, max_cols))
    return math.ceil(n / cols), cols


def number(value: Any) -> float | None:
    """``value`` as a float, or ``None`` when it is not a number (or NaN)."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(value) else value


def result_figures(results: Mapping[str, Any], stem: Path) -> dict[str, Path]:
    """Every figure of results of one kind (one per run label): ``<stem>_<name>.png``."""
    kind = next(iter(results.values())).kind
    return FIGURES.get(kind)(results, stem) if kind in FIGURES else {}
