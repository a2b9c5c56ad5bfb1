"""Saliency maps of example inputs, and the distribution of their gradients."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.patches import Patch
from torch import Tensor

from sgt.plots.common import save


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
    labels: Tensor | None = None,
) -> Path:
    """A grid: one row per example, its input (with its class), then each saliency map.

    Each map is scaled to its own example's largest score, so one colour bar (relative
    saliency, 0 to 1) reads every panel.

    Args:
        inputs: ``(n, C, H, W)`` images (or ``(n, T, F)`` series).
        maps: label -> ``(n, N)`` per-feature scores (or already ``(n, H, W)``), e.g.
            ``{"regular": ..., "SGT": ...}`` or one entry per method.
        labels: ``(n,)`` true classes, written beside each input.
    """
    n = inputs.shape[0]
    spatial = inputs.shape[2:] if inputs.dim() == 4 else inputs.shape[1:]
    cols = 1 + len(maps)
    fig = Figure(figsize=(1.7 * cols + 0.8, 1.7 * n), layout="constrained")
    axes = fig.subplots(n, cols, squeeze=False)
    shown = None
    for i in range(n):
        image = _as_image(inputs[i])
        axes[i, 0].imshow(image, cmap="gray" if image.dim() == 2 else None)
        if labels is not None:
            axes[i, 0].set_ylabel(f"class {int(labels[i])}", fontsize=8)
        for j, (label, m) in enumerate(maps.items(), start=1):
            scores = m[i].detach().float().cpu().abs().reshape(spatial)
            shown = axes[i, j].imshow(scores / scores.max().clamp_min(1e-12), cmap="hot",
                                      vmin=0.0, vmax=1.0)
            if i == 0:
                axes[i, j].set_title(label, fontsize=8)
    axes[0, 0].set_title("input", fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    if shown is not None:
        fig.colorbar(shown, ax=axes[:, 1:], shrink=0.8,
                     label="saliency / the example's largest")
    return save(fig, path)


def plot_gradient_distributions(
    gradients: Mapping[str, Tensor],
    path: str | Path,
    kind: str = "violin",
) -> Path:
    """Per example, the distribution of its signed gradient values, rescaled to [-1, 1] by
    the sample's largest magnitude (docs/paper.md §3(e)); the labelled runs side by side.

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
    return save(fig, path)
