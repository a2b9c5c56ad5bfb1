"""Every figure is written as a readable, non-blank PNG."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image as mpimg
import pytest
import torch

from sgt.evaluation import AccuracyDropResult
from sgt.plots import (
    plot_accuracy_drop,
    plot_gradient_distributions,
    plot_metric_vs,
    plot_saliency_examples,
)


def _readable(path: Path) -> None:
    image = mpimg.imread(path)
    assert image.ndim == 3 and image.shape[0] > 50 and image.shape[1] > 50
    assert image[..., :3].std() > 0.01  # something was drawn


def test_accuracy_drop_panels_per_method_runs_overlaid(tmp_path: Path) -> None:
    levels = [0.0, 0.5]
    runs = {"regular": AccuracyDropResult(levels, {"grad": [1.0, 0.6], "random": [1.0, 0.9]},
                                          {"grad": 0.4, "random": 0.48}, 10),
            "SGT": AccuracyDropResult(levels, {"grad": [1.0, 0.2]}, {"grad": 0.3}, 10)}
    path = plot_accuracy_drop(runs, tmp_path / "sub" / "curves.png")
    assert path == tmp_path / "sub" / "curves.png"
    _readable(path)


@pytest.mark.parametrize("shape", [(3, 1, 28, 28), (2, 3, 32, 32)])
def test_saliency_examples_grid(tmp_path: Path, shape: tuple[int, ...]) -> None:
    n, pixels = shape[0], shape[2] * shape[3]
    maps = {"regular": torch.rand(n, pixels), "SGT": torch.rand(n, pixels)}
    _readable(plot_saliency_examples(torch.randn(shape), maps, tmp_path / "examples.png"))


@pytest.mark.parametrize("kind", ["violin", "box"])
def test_gradient_distributions(tmp_path: Path, kind: str) -> None:
    grads = {"regular": torch.randn(3, 784), "SGT": 3 * torch.randn(3, 784)}
    _readable(plot_gradient_distributions(grads, tmp_path / f"{kind}.png", kind=kind))
    with pytest.raises(ValueError, match="kind must be"):
        plot_gradient_distributions(grads, tmp_path / "x.png", kind="bars")


def test_metric_vs_hyperparameter_skips_missing_values(tmp_path: Path) -> None:
    rows = [{"k": k, "lam": lam, "test/acc": 0.9 + k / 10, "auc/grad": None if k else 0.3}
            for k in (0.0, 0.25, 0.5) for lam in (0.5, 1.0)]
    _readable(plot_metric_vs(rows, "k", ["test/acc", "auc/grad"], tmp_path / "k.png",
                             group="lam"))
