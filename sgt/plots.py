"""Figures for evaluations and reports: each function writes one PNG and returns its path.

Built on ``matplotlib.figure.Figure`` (Agg canvas) rather than ``pyplot``, so plotting
never needs a display, never changes the caller's backend and leaks no global figures.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from matplotlib.patches import Patch
from torch import Tensor

from sgt.evaluation.accuracy_drop import AccuracyDropResult


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return path


def _grid(n: int, max_cols: int = 4) -> tuple[int, int]:
    cols = min(n, max_cols)
    return math.ceil(n / cols), cols


def plot_accuracy_drop(
    runs: Mapping[str, AccuracyDropResult],
    path: str | Path,
    methods: Sequence[str] | None = None,
) -> Path:
    """Accuracy vs % of most salient features removed: one panel per method, one line per
    run (e.g. ``{"regular": r0, "SGT": r1}``), the AUC in the legend."""
    if methods is None:
        methods = list(dict.fromkeys(m for r in runs.values() for m in r.accuracy))
    rows, cols = _grid(len(methods))
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
    return _save(fig, path)


def _as_image(x: Tensor) -> Tensor:
    """One input for ``imshow``: ``(H, W)`` for one channel, ``(H, W, 3)`` in [0, 1] for RGB;
    a time series ``(T, F)`` is shown as is."""
    x = x.detach().float().cpu()
    if x.dim() == 3 and x.shape[0] == 1:
        return x[0]
    if x.dim() == 3:
        lo, hi = x.amin(), x.amax()
        return ((x - lo) / (hi - lo).clamp_min(1e-12)).permute(1, 2, 0)
    return x


def plot_saliency_examples(
    inputs: Tensor,
    maps: Mapping[str, Tensor],
    path: str | Path,
) -> Path:
    """A grid: one row per example, its input, then each labelled saliency map.

    Args:
        inputs: ``(n, C, H, W)`` images (or ``(n, T, F)`` series).
        maps: label -> ``(n, N)`` per-feature scores (or already ``(n, H, W)``), e.g.
            ``{"regular": ..., "SGT": ...}`` or one entry per method.
    """
    n = inputs.shape[0]
    spatial = inputs.shape[2:] if inputs.dim() == 4 else inputs.shape[1:]
    cols = 1 + len(maps)
    fig = Figure(figsize=(1.7 * cols, 1.7 * n), layout="constrained")
    axes = fig.subplots(n, cols, squeeze=False)
    for i in range(n):
        image = _as_image(inputs[i])
        axes[i, 0].imshow(image, cmap="gray" if image.dim() == 2 else None)
        for j, (label, m) in enumerate(maps.items(), start=1):
            axes[i, j].imshow(m[i].detach().float().cpu().reshape(spatial), cmap="hot")
            if i == 0:
                axes[i, j].set_title(label, fontsize=8)
    axes[0, 0].set_title("input", fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    return _save(fig, path)


def plot_gradient_distributions(
    gradients: Mapping[str, Tensor],
    path: str | Path,
    kind: str = "violin",
) -> Path:
    """Per example, the distribution of its signed gradient values, rescaled to [-1, 1] by
    the sample's largest magnitude (PAPER.md §3(e)); the labelled runs side by side.

    Args:
        gradients: label -> ``(n, N)`` signed input gradients of the same ``n`` examples.
        kind: ``violin`` or ``box``.
    """
    if kind not in ("violin", "box"):
        raise ValueError(f"kind must be 'violin' or 'box', got {kind!r}")
    labels = list(gradients)
    n = next(iter(gradients.values())).shape[0]
    width = 0.8 / len(labels)
    fig = Figure(figsize=(max(6.0, 0.9 * n * len(labels)), 3.5), layout="constrained")
    ax = fig.subplots()
    colors = [f"C{j}" for j in range(len(labels))]
    for j, label in enumerate(labels):
        g = gradients[label].detach().float().cpu().flatten(1)
        g = g / g.abs().amax(1, keepdim=True).clamp_min(1e-12)
        positions = [i + (j - (len(labels) - 1) / 2) * width for i in range(n)]
        data = list(g.numpy())
        if kind == "violin":
            parts = ax.violinplot(data, positions=positions, widths=width, showmedians=True)
            for body in parts["bodies"]:
                body.set_facecolor(colors[j])
                body.set_alpha(0.6)
            for lines in ("cbars", "cmins", "cmaxes", "cmedians"):
                parts[lines].set_color(colors[j])
        else:
            parts = ax.boxplot(data, positions=positions, widths=width * 0.9,
                               patch_artist=True, showfliers=False)
            for box in parts["boxes"]:
                box.set_facecolor(colors[j])
    ax.set_xticks(range(n), [str(i) for i in range(n)])
    ax.set(xlabel="example", ylabel="gradient / max |gradient|", ylim=(-1.05, 1.05))
    ax.legend(handles=[Patch(color=c, label=lab) for c, lab in zip(colors, labels, strict=True)],
              fontsize=8)
    return _save(fig, path)


def _number(value: Any) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(value) else value


def plot_metric_vs(
    rows: Sequence[Mapping[str, Any]],
    x: str,
    ys: Sequence[str],
    path: str | Path,
    group: str | None = None,
) -> Path:
    """Metrics against a hyperparameter (e.g. test accuracy and AUCs vs ``k``, one line per
    ``lam``): one panel per ``ys`` entry; rows missing a value are left out."""
    rows_, cols = _grid(len(ys), max_cols=3)
    fig = Figure(figsize=(3.8 * cols, 3.0 * rows_), layout="constrained")
    axes = fig.subplots(rows_, cols, squeeze=False).flatten()
    groups = sorted({r.get(group) for r in rows}, key=str) if group else [None]
    for ax, y in zip(axes, ys, strict=False):
        for g in groups:
            points = sorted(p for r in rows if group is None or r.get(group) == g
                            for p in [(_number(r.get(x)), _number(r.get(y)))]
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
    return _save(fig, path)


__all__ = [
    "plot_accuracy_drop",
    "plot_gradient_distributions",
    "plot_metric_vs",
    "plot_saliency_examples",
]
