"""Saliency maps of a few test examples, drawn the way their modality reads: images beside
their maps, time series beside their true box, reviews with their top tokens against the
human rationale. ``plot_examples`` picks the drawing by the modality's name."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from torch import Tensor

from sgt.plots.saliency import plot_saliency_examples
from sgt.plots.text import plot_token_highlights
from sgt.plots.timeseries import plot_box_saliency
from sgt.registry import Registry

# (examples, {label: (n, N) maps}, path) -> path; ``examples`` as the runs layer saves them:
# inputs, labels, extras (the batch's per-sample tensors), features, and text's tokens.
ExampleFigure = Callable[[Mapping[str, Any], Mapping[str, Tensor], Path], Path]
EXAMPLE_FIGURES: Registry[ExampleFigure] = Registry("example figure")


@EXAMPLE_FIGURES.register("image")
def image_examples(examples: Mapping[str, Any], maps: Mapping[str, Tensor], path: Path) -> Path:
    return plot_saliency_examples(examples["inputs"], maps, path, labels=examples["labels"])


@EXAMPLE_FIGURES.register("timeseries")
def series_examples(examples: Mapping[str, Any], maps: Mapping[str, Tensor], path: Path
                    ) -> Path:
    truth = examples["extras"][0]  # (n, T, F) bool: the test split's first extra
    return plot_box_saliency(maps, truth, path, inputs=examples["inputs"])


@EXAMPLE_FIGURES.register("text")
def text_examples(examples: Mapping[str, Any], maps: Mapping[str, Tensor], path: Path) -> Path:
    rationale = examples["extras"][0]  # (n, L) bool human rationale
    return plot_token_highlights(examples["tokens"], rationale, maps, path,
                                 features=examples["features"])


def plot_examples(modality: str, examples: Mapping[str, Any], maps: Mapping[str, Tensor],
                  path: str | Path) -> Path:
    """The example figure of ``modality`` (image, timeseries, text)."""
    return EXAMPLE_FIGURES.get(modality)(examples, maps, Path(path))
