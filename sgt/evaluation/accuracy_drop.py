"""Accuracy drop when the most salient features are removed, without retraining.

The "modified ROAR" of the SGT paper (docs/paper.md §3(a)): for 0, 10, …, 90 % of the
features, replace the *most* salient ones of every test input and measure the trained
classifier's accuracy. A faithful saliency method makes accuracy fall fast, so a lower
area under the curve is better. Features are ranked as the SGT code ranks them, by
|attribution mean over a pixel's channels| (``feature_score="abs_mean"``); exact ties are
broken by the method's seeded random keys (:mod:`sgt.saliency.ranking`), never by the sort's
own order, which removes whole rows. Each method's attributions are computed once per batch
and reused for every level; all levels of a batch go through the model as one forward.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from sgt.errors import SettingError
from sgt.evaluation.base import RESULTS, check_limit_batches, check_methods, sum_per_method
from sgt.features import ImageModality, Modality, check_feature_score
from sgt.masking import Fill, check_fraction, get_fill
from sgt.saliency import (
    Attribution,
    Explainer,
    ModalityForward,
    Output,
    check_output,
    feature_ranks,
    most_relevant,
)

LEVELS: tuple[float, ...] = tuple(i / 10 for i in range(10))


def area_under_curve(levels: Sequence[float], values: Sequence[float]) -> float:
    """Trapezoidal area of ``values`` over ``levels`` (``np.trapz``)."""
    return float(torch.trapezoid(torch.tensor(values, dtype=torch.float64),
                                 torch.tensor(levels, dtype=torch.float64)))


@RESULTS.register("accuracy_drop")
@dataclass
class AccuracyDropResult:
    """Plain data: accuracy per method and level, and the area under each curve."""

    kind: ClassVar[str] = "accuracy_drop"
    levels: list[float]
    accuracy: dict[str, list[float]]  # method -> accuracy at each level
    auc: dict[str, float]  # method -> area under its curve (lower = more faithful)
    num_samples: int

    def table(self) -> tuple[list[str], list[list[Any]]]:
        """``(columns, rows)``: one row per method: name, AUC, then accuracy per level."""
        columns = ["method", "auc", *(f"{level:g}" for level in self.levels)]
        rows = [[m, self.auc[m], *acc] for m, acc in self.accuracy.items()]
        return columns, rows

    def summary(self) -> dict[str, float]:
        """``auc/<method>``: what sweep reports and loggers compare."""
        return {f"auc/{m}": a for m, a in self.auc.items()}

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **asdict(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AccuracyDropResult:
        return cls(list(data["levels"]), dict(data["accuracy"]), dict(data["auc"]),
                   int(data["num_samples"]))


class AccuracyDrop:
    """Accuracy after removing the most salient ``levels`` of features (configured callable).

    Args:
        levels: fractions of features removed, each in ``[0, 1)``; 0 is plain accuracy.
        fill: replacement, a registered fill name (``background``: the image's own top-left
            pixel, the original's ``trueMask``; ``mean``, ``uniform``, ``constant``,
            ``baseline``) or a :class:`~sgt.masking.Fill`; ``fill_args`` are its arguments.
        feature_score: how a pixel's channel attributions reduce to its ranking score
            (:data:`sgt.features.FEATURE_SCORES`; ``abs_mean``, the SGT code's).
        seed: seeds each method's generator (baselines, noise, random ranking, fill).
        output: explain the target ``logit``, its ``log_prob`` or its ``prob``.
        limit_batches: evaluate only the first batches of the loader.
        progress: show a rich progress bar over methods.
    """

    score_direction: ClassVar[str] = "lower"  # lower area = more faithful saliency

    def __init__(
        self,
        levels: Sequence[float] = LEVELS,
        fill: str | Fill = "background",
        fill_args: Mapping[str, Any] | None = None,
        feature_score: str = "abs_mean",
        seed: int = 0,
        output: Output = "logit",
        limit_batches: int | None = None,
        progress: bool = True,
    ) -> None:
        if not levels:
            raise SettingError("levels must list at least one fraction in [0, 1), got none")
        self.levels = [check_fraction(level, "each of levels") for level in levels]
        check_output(output, "output")
        self.feature_score = check_feature_score(feature_score)
        self.fill = get_fill(fill, fill_args) if isinstance(fill, str) else fill
        self.seed, self.output = seed, output
        self.limit_batches, self.progress = check_limit_batches(limit_batches), progress

    def perturb(self, modality: Modality, z: Tensor, ranks: Tensor, valid: Tensor | None,
                generator: torch.Generator) -> Tensor:
        """``(levels, B, ...)``: ``z`` with its top-``level`` features (by ``ranks``, see
        :func:`sgt.saliency.feature_ranks`) filled."""
        features = modality.to_features(z)  # (B, N, C)
        perturbed = []
        for level in self.levels:
            selected = most_relevant(ranks, level, valid)
            values = self.fill(features, selected=selected, valid=valid, generator=generator,
                               grid=modality.grid(z)).expand_as(features)
            perturbed.append(modality.from_features(
                torch.where(selected.unsqueeze(-1), values, features), z))
        return torch.stack(perturbed)

    def evaluate_batch(self, explainer: Explainer, name: str, x: Tensor, y: Tensor) -> Tensor:
        """``(levels,)`` number of correct predictions of the batch at each level."""
        forward = explainer.forward
        m = forward.modality
        z, scores = explainer(name, x, y)
        valid = m.valid_features(x)
        ranks = feature_ranks(scores, explainer.tie_keys(name, scores.shape[1]), valid)
        perturbed = self.perturb(m, z, ranks, valid, explainer.generator(name))
        levels = len(self.levels)
        with torch.no_grad():
            # every level of the batch as one forward: (levels * B, ...)
            logits = forward(perturbed.flatten(0, 1),
                             None if valid is None else valid.repeat(levels, 1))
        return (logits.argmax(-1) == y.repeat(levels)).view(levels, -1).sum(1)

    def __call__(
        self,
        model: nn.Module,
        loader: Iterable[Sequence[Tensor]],
        methods: Sequence[str] | Mapping[str, Attribution],
        modality: Modality | None = None,
    ) -> AccuracyDropResult:
        """Evaluate ``methods`` (names or instances) on ``loader``'s ``(x, y, ...)`` batches.

        ``model`` maps ``modality.embed`` output to logits (images: any classifier); it is
        evaluated in eval mode on its own device and left in the mode it was in.
        """
        check_methods(methods)
        explainer = Explainer(ModalityForward(model, modality or ImageModality(), self.output),
                              methods, self.seed, self.feature_score)
        correct, total = sum_per_method(
            explainer, loader, lambda name, batch: self.evaluate_batch(explainer, name, *batch[:2]),
            "accuracy drop", self.limit_batches, self.progress)
        accuracy = {name: (c.double() / total).tolist() for name, c in correct.items()}
        auc = {name: area_under_curve(self.levels, acc) for name, acc in accuracy.items()}
        return AccuracyDropResult(list(self.levels), accuracy, auc, total)
