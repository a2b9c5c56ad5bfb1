"""Accuracy-drop curves: one panel per method, one line per run."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from matplotlib.figure import Figure

from sgt.evaluation.accuracy_drop import AccuracyDropResult
from sgt.plots.common import FIGURES, grid, save


def plot_accuracy_drop(
    runs: Mapping[str, AccuracyDropResult],
    path: str | Path,
    methods: Sequence[str] | None = None,
) -> Path:
    """Accuracy vs % of most salient features removed: one panel per method, one line per
    run (e.g. ``{"regular": r0, "SGT": r1}``), the AUC in the legend."""
    if methods is None:
        methods = list(dict.fromkeys(m for r in runs.values() for m in r.accuracy))
    rows, cols = grid(len(methods))
    fig = Figure(figsize=(3.6 * cols, 3.0 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False, sharey=True).flatten()
    for ax, method in zip(axes, methods, strict=False):  # spare axes hidden below
        for label, result in runs.items():
            if method in result.accuracy:
                ax.plot([100 * level for level in result.levels], result.accuracy[method],
                        marker="o", ms=3, label=f"{label} (AUC {result.auc[method]:.3f})")
        ax.set(title=method, xlabel="% most salient features removed", ylim=(0, 1.02))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in axes[len(methods):]:
        ax.set_visible(False)
    axes[0].set_ylabel("test accuracy")
    return save(fig, path)


@FIGURES.register("accuracy_drop")
def accuracy_drop_figures(results: Mapping[str, AccuracyDropResult], stem: Path
                          ) -> dict[str, Path]:
    return {"curves": plot_accuracy_drop(results, f"{stem}_curves.png")}
