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


def plot_tradeoff(points: Mapping[str, Sequence[tuple[str, float, float, bool]]],
                  path: str | Path, faithfulness: str = "faithfulness relative to random"
                  ) -> Path:
    """Test accuracy against each method's faithfulness, one panel per method and one point
    per run ``(label, accuracy, faithfulness, on the Pareto front)``: the front's runs are
    filled, joined in accuracy order and named."""
    rows_, cols = grid(len(points), max_cols=3)
    fig = Figure(figsize=(3.9 * cols, 3.2 * rows_), layout="constrained")
    axes = fig.subplots(rows_, cols, squeeze=False).flatten()
    for ax, (method, runs) in zip(axes, points.items(), strict=False):
        rest = [p for p in runs if not p[3]]
        front = sorted((p for p in runs if p[3]), key=lambda p: p[1])
        ax.scatter([p[1] for p in rest], [p[2] for p in rest], s=22, facecolors="none",
                   edgecolors="C7", label="dominated")
        ax.plot([p[1] for p in front], [p[2] for p in front], "-o", ms=5, color="C3",
                label="Pareto front")
        for label, x, y, _ in front:
            ax.annotate(label, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=6)
        ax.set(title=method, xlabel="test accuracy", ylabel=faithfulness)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    for ax in axes[len(points):]:
        ax.set_visible(False)
    return save(fig, path)
