"""Time-series benchmark figures: precision/recall and masked-accuracy curves per method,
and saliency heat maps beside the true box."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torch import Tensor

from sgt.evaluation.timeseries import TimeSeriesResult, rescale_saliency
from sgt.plots.common import FIGURES, grid, save


def _methods(runs: Mapping[str, TimeSeriesResult], methods: Sequence[str] | None) -> list[str]:
    return list(methods) if methods is not None else list(
        dict.fromkeys(m for r in runs.values() for m in r.methods))


def plot_precision_recall(
    runs: Mapping[str, TimeSeriesResult],
    path: str | Path,
    methods: Sequence[str] | None = None,
    prefix: str = "",
) -> Path:
    """Weighted precision (top row) and recall (bottom row) against the saliency mass in
    the mask: one column per method, one line per run (e.g. ``{"regular": r0, "SGT": r1}``),
    AUP/AUR in the legend. ``prefix`` ``time_`` or ``feature_`` draws those levels."""
    methods = _methods(runs, methods)
    fig = Figure(figsize=(3.4 * len(methods), 5.6), layout="constrained")
    axes = fig.subplots(2, len(methods), squeeze=False, sharey=True)
    for row, (curve, area) in enumerate((("precision", "aup"), ("recall", "aur"))):
        for ax, method in zip(axes[row], methods, strict=True):
            for label, result in runs.items():
                if method in result.methods:
                    value = result.areas(method)[f"{prefix}{area}"]
                    ax.plot([100 * p for p in result.levels],
                            result.curves[f"{prefix}{curve}"][method], marker="o", ms=3,
                            label=f"{label} ({area.upper()} {value:.3f})")
            ax.set(xlabel="% of saliency mass in the mask", ylim=(0, 1.02))
            if row == 0:
                ax.set_title(method)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        axes[row, 0].set_ylabel(f"weighted {prefix.replace('_', ' ')}{curve}")
    return save(fig, path)


def plot_masked_accuracy(
    runs: Mapping[str, TimeSeriesResult],
    path: str | Path,
    methods: Sequence[str] | None = None,
) -> Path:
    """Accuracy with the most salient cells replaced by the background sample: one panel
    per method, one line per run, the AUC in the legend."""
    methods = _methods(runs, methods)
    rows, cols = grid(len(methods))
    fig = Figure(figsize=(3.6 * cols, 3.0 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False, sharey=True).flatten()
    for ax, method in zip(axes, methods, strict=False):  # spare axes hidden below
        for label, result in runs.items():
            if method in result.methods:
                auc = result.areas(method)["masked_auc"]
                ax.plot([100 * p for p in result.masked_levels], result.masked_accuracy[method],
                        marker="o", ms=3, label=f"{label} (AUC {auc:.3f})")
        ax.set(title=method, xlabel="% of saliency mass replaced", ylim=(0, 1.02))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in axes[len(methods):]:
        ax.set_visible(False)
    axes[0].set_ylabel("test accuracy")
    return save(fig, path)


def _box(truth: Tensor) -> tuple[int, int, int, int]:
    """``(t_start, t_end, f_start, f_end)`` of a ``(T, F)`` bool box mask."""
    rows, cols = truth.any(1).nonzero()[:, 0], truth.any(0).nonzero()[:, 0]
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def plot_box_saliency(
    maps: Mapping[str, Tensor],
    truth: Tensor,
    path: str | Path,
    inputs: Tensor | None = None,
) -> Path:
    """Saliency heat maps of a few samples beside their true box: one row per sample, the
    input (if given), the box, then each labelled map (e.g. ``{"regular": …, "SGT": …}``),
    time across and features up, the box outlined on every panel.

    Args:
        maps: label -> ``(n, T, F)`` (or ``(n, T·F)``) attributions of the same samples;
            shown as |attribution| min-max scaled per sample, as the metrics see them.
        truth: ``(n, T, F)`` bool true boxes.
        inputs: ``(n, T, F)`` the samples themselves.
    """
    n, steps, features = truth.shape
    panels = ([("input", inputs)] if inputs is not None else []) + [("true box", truth)]
    scaled = {label: rescale_saliency(m.detach().float().cpu().reshape(n, -1).abs())
              for label, m in maps.items()}
    cols = len(panels) + len(scaled)
    fig = Figure(figsize=(2.0 * cols, 1.9 * n), layout="constrained")
    axes = fig.subplots(n, cols, squeeze=False)
    for i in range(n):
        t0, t1, f0, f1 = _box(truth[i].cpu())
        images = [(label, v[i].detach().float().cpu(), "viridis") for label, v in panels]
        images += [(label, m[i].view(steps, features), "hot") for label, m in scaled.items()]
        for ax, (label, image, cmap) in zip(axes[i], images, strict=True):
            ax.imshow(image.T, cmap=cmap, origin="lower", aspect="auto", interpolation="nearest")
            ax.add_patch(Rectangle((t0 - 0.5, f0 - 0.5), t1 - t0, f1 - f0, fill=False,
                                   edgecolor="cyan", lw=1.0))
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(label, fontsize=8)
        axes[i, 0].set_ylabel("features ↑, time →", fontsize=7)
    return save(fig, path)


@FIGURES.register("timeseries")
def timeseries_figures(results: Mapping[str, TimeSeriesResult], stem: Path
                       ) -> dict[str, Path]:
    return {
        "precision_recall": plot_precision_recall(results, f"{stem}_precision_recall.png"),
        "masked_accuracy": plot_masked_accuracy(results, f"{stem}_masked_accuracy.png"),
    }


__all__ = ["plot_box_saliency", "plot_masked_accuracy", "plot_precision_recall"]
