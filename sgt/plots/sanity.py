"""The cascading-randomisation sanity check: correlation as layers are randomised."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from matplotlib.figure import Figure

from sgt.evaluation.sanity import SanityResult
from sgt.plots.common import FIGURES, save


def plot_sanity(results: Mapping[str, SanityResult], path: str | Path) -> Path:
    """Spearman ρ (original vs randomised maps) after each layer is re-initialised, from
    the output layer down: one panel per method, one line per run; ±1 std shaded."""
    methods = list(dict.fromkeys(r["method"] for res in results.values() for r in res.rows))
    fig = Figure(figsize=(4.2 * len(methods), 3.4), layout="constrained")
    axes = fig.subplots(1, len(methods), squeeze=False, sharey=True)[0]
    for ax, method in zip(axes, methods, strict=True):
        for label, result in results.items():
            rows = [r for r in result.rows if r["method"] == method]
            steps = [r["step"] for r in rows]
            mean = [r["spearman"] for r in rows]
            std = [r["spearman_std"] for r in rows]
            ax.plot(steps, mean, marker="o", ms=3, label=label)
            ax.fill_between(steps, [m - s for m, s in zip(mean, std, strict=True)],
                            [m + s for m, s in zip(mean, std, strict=True)], alpha=0.15)
            ax.set_xticks(steps, [r["layer"] for r in rows], rotation=60, fontsize=7)
        ax.set(title=method, xlabel="randomised down to layer", ylim=(-0.2, 1.05))
        ax.axhline(0.0, color="grey", lw=0.6)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("Spearman ρ with the trained model's map")
    return save(fig, path)


@FIGURES.register("sanity")
def sanity_figures(results: Mapping[str, SanityResult], stem: Path) -> dict[str, Path]:
    return {"curves": plot_sanity(results, f"{stem}_curves.png")}
