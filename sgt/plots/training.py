"""Training curves: each logged quantity per epoch, train and validation, one or more runs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from matplotlib.figure import Figure

from sgt.plots.common import grid, save

# series name -> [(epoch, value), ...], e.g. {"train/loss": [(1, 0.9), (2, 0.4)]}
History = Mapping[str, Sequence[tuple[float, float]]]
SPLIT_STYLE = {"train": "--", "val": "-"}  # line style per split; colour per run
ORDER = ("loss", "acc", "acc_masked", "ce", "kl")  # panels first, in this order


def _quantities(runs: Mapping[str, History]) -> list[str]:
    names = {series.partition("/")[2] for history in runs.values() for series in history}
    return [q for q in ORDER if q in names] + sorted(names.difference(ORDER))


def plot_training_curves(runs: Mapping[str, History], path: str | Path) -> Path:
    """One panel per quantity (``loss``, ``acc``, …), against the epoch: a dashed line for
    training and a solid one for validation, a colour per run (``{label: history}``, series
    named ``<split>/<quantity>``). Accuracies are drawn in %."""
    quantities = _quantities(runs)
    rows, cols = grid(len(quantities), max_cols=3)
    fig = Figure(figsize=(3.8 * cols, 2.9 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).flatten()
    colors = {label: f"C{i}" for i, label in enumerate(runs)}
    for ax, quantity in zip(axes, quantities, strict=False):  # spare axes hidden below
        scale = 100.0 if quantity.startswith("acc") else 1.0
        for label, history in runs.items():
            for split, style in SPLIT_STYLE.items():
                points = history.get(f"{split}/{quantity}", [])
                if points:
                    name = split if len(runs) == 1 else f"{label} · {split}"
                    ax.plot([e for e, _ in points], [scale * v for _, v in points], style,
                            color=colors[label], marker="o", ms=3, label=name)
        ax.set(title=quantity, xlabel="epoch", ylabel="%" if scale != 1.0 else None)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in axes[len(quantities):]:
        ax.set_visible(False)
    return save(fig, path)
