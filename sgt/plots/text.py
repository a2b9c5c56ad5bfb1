"""Text figures: ERASER's AOPC scores per method and run, and highlighted reviews."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from matplotlib.figure import Figure
from torch import Tensor

from sgt.evaluation.eraser import EraserResult
from sgt.plots.common import FIGURES, save


def plot_eraser(runs: Mapping[str, EraserResult], path: str | Path,
                methods: Sequence[str] | None = None) -> Path:
    """Comprehensiveness (↑) and sufficiency (↓) AOPC as grouped bars: methods along x,
    one bar per run (e.g. ``{"regular": r0, "SGT": r1}``), as the poster's Table 1."""
    if methods is None:
        methods = list(dict.fromkeys(m for r in runs.values() for m in r.methods))
    fig = Figure(figsize=(max(6.0, 1.4 * len(methods) * 2), 3.2), layout="constrained")
    axes = fig.subplots(1, 2)
    width = 0.8 / max(1, len(runs))
    for ax, key, arrow in zip(axes, ("comprehensiveness_aopc", "sufficiency_aopc"), ("↑", "↓"),
                              strict=True):
        for i, (label, result) in enumerate(runs.items()):
            values = [getattr(result, key).get(m, float("nan")) for m in methods]
            bars = ax.bar([j + (i - (len(runs) - 1) / 2) * width for j in range(len(methods))],
                          values, width, label=label, color=f"C{i}")
            ax.bar_label(bars, fmt="%.3f", fontsize=6)
        ax.set_xticks(range(len(methods)), methods, fontsize=8)
        ax.set(title=f"{key.removesuffix('_aopc')} (AOPC) {arrow}", ylabel="p(ŷ|x) − p(ŷ|x')")
        ax.axhline(0.0, color="grey", lw=0.6)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7)
    return save(fig, path)


@FIGURES.register("eraser")
def eraser_figures(results: Mapping[str, EraserResult], stem: Path) -> dict[str, Path]:
    return {"aopc": plot_eraser(results, f"{stem}_aopc.png")}


def _wrap(tokens: Sequence[str], line_chars: int) -> list[tuple[int, int]]:
    """``(line, column)`` of each token, monospace, wrapped at ``line_chars``."""
    places, line, column = [], 0, 0
    for token in tokens:
        if column and column + len(token) > line_chars:
            line, column = line + 1, 0
        places.append((line, column))
        column += len(token) + 1
    return places


def plot_token_highlights(
    tokens: Sequence[Sequence[str]],
    rationale: Tensor | Sequence[Sequence[bool]],
    saliency: Mapping[str, Tensor | Sequence[Sequence[float]]],
    path: str | Path,
    features: Tensor | Sequence[Sequence[bool]] | None = None,
    top_k: int | None = None,
    max_tokens: int = 200,
    line_chars: int = 110,
) -> Path:
    """A few reviews with their most salient tokens shaded, per run, against the human
    rationale (underlined, bold).

    Args:
        tokens: each review's token strings (``datamodule.decode(ids)``), aligned with the
            columns of ``rationale`` and the saliency maps.
        rationale: ``(N, L)`` bool human rationale.
        saliency: ``{run label: (N, L) scores}`` (e.g. the grad scores of a regular and an
            SGT model).
        features: ``(N, L)`` bool of the tokens that may be highlighted (document tokens);
            ``None``: every token listed.
        top_k: tokens shaded per review; ``None``: the review's rationale length, so that
            the shading and the underlining have the same size (ERASER's token F1).
        max_tokens: show each review's first ``max_tokens`` tokens.
        line_chars: characters per line.
    """
    rationale = torch.as_tensor(rationale, dtype=torch.bool)
    n, length = len(tokens), rationale.shape[1]
    shown = [list(t)[:min(max_tokens, length)] for t in tokens]
    valid = (torch.ones_like(rationale) if features is None
             else torch.as_tensor(features, dtype=torch.bool))
    listed = torch.arange(length) < torch.tensor([len(t) for t in tokens])[:, None]
    valid = valid & listed
    panels = [(i, label) for i in range(n) for label in saliency]
    lines = [max(line for line, _ in _wrap(shown[i], line_chars)) + 1 if shown[i] else 1
             for i, _ in panels]
    fig = Figure(figsize=(0.06 * line_chars + 0.4, sum(0.16 * k + 0.45 for k in lines)),
                 layout="constrained")
    axes = fig.subplots(len(panels), 1, squeeze=False,
                        gridspec_kw={"height_ratios": [k + 2.8 for k in lines]})[:, 0]
    for ax, (i, label), rows in zip(axes, panels, lines, strict=True):
        scores = torch.as_tensor(saliency[label], dtype=torch.float64)[i]
        k = int(rationale[i].sum()) if top_k is None else top_k
        ranked = scores.masked_fill(~valid[i], float("-inf"))
        top = torch.zeros(length, dtype=torch.bool)
        top[ranked.argsort(descending=True, stable=True)[:k]] = True
        top &= valid[i]
        hits = int((top & rationale[i]).sum())
        for j, (line, column) in enumerate(_wrap(shown[i], line_chars)):
            ax.text(column / line_chars, 1 - (line + 0.5) / rows, shown[i][j],
                    family="monospace", fontsize=7, va="center",
                    fontweight="bold" if rationale[i, j] else "normal",
                    bbox={"facecolor": "#f4a259", "edgecolor": "none", "pad": 0.6}
                    if top[j] else None)
            if rationale[i, j]:
                ax.plot([column / line_chars, (column + len(shown[i][j])) / line_chars],
                        [1 - (line + 0.9) / rows] * 2, color="#1f5fa8", lw=1.0)
        more = " …" if len(tokens[i]) > len(shown[i]) else ""
        ax.set_title(f"review {i}: {label}: top {k} tokens shaded, {hits} of them in the human "
                     f"rationale (underlined){more}", fontsize=8, loc="left")
        ax.set(xlim=(0, 1), ylim=(0, 1))
        ax.axis("off")
    return save(fig, path)


__all__ = ["eraser_figures", "plot_eraser", "plot_token_highlights"]
