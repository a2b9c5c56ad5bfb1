"""Sweep figures: metrics against a swept hyperparameter."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from sgt.plots.common import grid, number, save


def plot_metric_vs(
    rows: Sequence[Mapping[str, Any]],
    x: str,
    ys: Sequence[str],
    path: str | Path,
    group: str | None = None,
) -> Path:
    """Metrics against a hyperparameter (e.g. test accuracy and AUCs vs ``k``, one line per
    ``lam``): one panel per ``ys`` entry; rows missing a value are left out."""
    rows_, cols = grid(len(ys), max_cols=3)
    fig = Figure(figsize=(3.8 * cols, 3.0 * rows_), layout="constrained")
    axes = fig.subplots(rows_, cols, squeeze=False).flatten()
    groups = sorted({r.get(group) for r in rows}, key=str) if group else [None]
    for ax, y in zip(axes, ys, strict=False):
        for g in groups:
            points = sorted(p for r in rows if group is None or r.get(group) == g
                            for p in [(number(r.get(x)), number(r.get(y)))]
                            if None not in p)
            if points:
                ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", ms=3,
                        label=None if group is None else f"{group}={g}")
        ax.set(title=y, xlabel=x)
        ax.grid(alpha=0.3)
        if group is not None:
            ax.legend(fontsize=7)
    for ax in axes[len(ys):]:
        ax.set_visible(False)
    return save(fig, path)
