"""ROAD curves: one panel per method; per run a MoRF (solid) and a LeRF (dashed) line."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from matplotlib.figure import Figure

from sgt.evaluation.road import RoadResult
from sgt.plots.common import FIGURES, grid, save


def plot_road(
    runs: Mapping[str, RoadResult],
    path: str | Path,
    methods: Sequence[str] | None = None,
) -> Path:
    """Accuracy vs % of features removed, most relevant first (solid) and least relevant
    first (dashed), one colour per run (e.g. ``{"regular": r0, "SGT": r1}``); the AUCs and
    the gap (LeRF − MoRF AUC, larger = more faithful) in the legend."""
    if methods is None:
        methods = list(dict.fromkeys(m for r in runs.values() for m in r.morf))
    rows, cols = grid(len(methods))
    fig = Figure(figsize=(3.8 * cols, 3.2 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False, sharey=True).flatten()
    colours = {label: f"C{i}" for i, label in enumerate(runs)}
    for ax, method in zip(axes, methods, strict=False):  # spare axes hidden below
        for label, result in runs.items():
            if method not in result.morf:
                continue
            percent = [100 * level for level in result.levels]
            ax.plot(percent, result.morf[method], "-", marker="o", ms=3, color=colours[label],
                    label=f"{label} MoRF (AUC {result.morf_auc[method]:.3f})")
            ax.plot(percent, result.lerf[method], "--", marker="o", ms=3, color=colours[label],
                    label=f"{label} LeRF (AUC {result.lerf_auc[method]:.3f}, "
                          f"gap {result.gap[method]:+.3f})")
        ax.set(title=method, xlabel="% features removed", ylim=(0, 1.02))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    for ax in axes[len(methods):]:
        ax.set_visible(False)
    axes[0].set_ylabel("test accuracy")
    fills = sorted({r.fill for r in runs.values()})
    fig.suptitle(f"ROAD (fill: {', '.join(fills)})", fontsize=9)
    return save(fig, path)


@FIGURES.register("road")
def road_figures(results: Mapping[str, RoadResult], stem: Path) -> dict[str, Path]:
    return {"curves": plot_road(results, f"{stem}_curves.png")}
