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

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from sgt.evaluation.base import Measure, Result
from sgt.evaluation.removal import RemovalEvaluation, area_under_curve, relative_to
from sgt.features import Modality
from sgt.saliency import Explainer, feature_ranks, most_relevant


@dataclass
class AccuracyDropResult(Result):
    """Plain data: accuracy per method and level, and the area under each curve."""

    kind: ClassVar[str] = "accuracy_drop"
    faithfulness: ClassVar[str | None] = "relative_auc"
    title: ClassVar[str] = "accuracy drop"
    measures: ClassVar[dict[str, Measure]] = {
        "auc": Measure("area under the accuracy curve", higher_is_better=False),
        "relative_auc": Measure("area between the random curve and the method's",
                                higher_is_better=True),
    }
    levels: list[float]
    accuracy: dict[str, list[float]]  # method -> accuracy at each level
    auc: dict[str, float]  # method -> area under its curve (lower = more faithful)
    num_samples: int

    @property
    def relative_auc(self) -> dict[str, float]:
        """The area between the ``random`` curve and each method's (higher = more
        faithful): the raw area also falls when a model reacts to any removal."""
        return relative_to("random", self.auc)

    def table(self) -> tuple[list[str], list[list[Any]]]:
        """``(columns, rows)``: one row per method: name, AUC, relative AUC, then accuracy
        per level."""
        columns = ["method", "auc", "relative_auc", *(f"{level:g}" for level in self.levels)]
        relative = self.relative_auc
        rows = [[m, self.auc[m], relative.get(m), *acc] for m, acc in self.accuracy.items()]
        return columns, rows

    def summary(self) -> dict[str, float]:
        """``relative_auc/<method>`` (when ``random`` was evaluated) and ``auc/<method>``."""
        return {**{f"relative_auc/{m}": a for m, a in self.relative_auc.items()},
                **{f"auc/{m}": a for m, a in self.auc.items()}}


class AccuracyDrop(RemovalEvaluation):
    """Accuracy after removing the most salient ``levels`` of features (configured callable).

    Args: as every removal evaluation (:class:`~sgt.evaluation.removal.RemovalEvaluation`),
    with these defaults:
        fill: ``background``, the image's own top-left pixel (the original's ``trueMask``);
            also ``mean``, ``uniform``, ``constant``, ``baseline`` or a
            :class:`~sgt.masking.Fill`.
        feature_score: ``abs_mean``, |attribution mean over a pixel's channels| (the SGT
            code's).
        random_baseline: ``True``: the areas relative to ``random`` take out the model's
            reaction to any removal.
    """

    name = "accuracy_drop"
    title = "accuracy drop"
    modalities = ("image", "timeseries", "text")
    default_fill = "background"
    default_feature_score = "abs_mean"

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

    def evaluate_batch(self, explainer: Explainer, name: str, batch: Sequence[Tensor]
                       ) -> Tensor:
        """``(levels,)`` number of correct predictions of the batch at each level."""
        x, y = batch[:2]
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

    def result(self, sums: dict[str, Tensor], total: int) -> AccuracyDropResult:
        accuracy = {name: (c.double() / total).tolist() for name, c in sums.items()}
        auc = {name: area_under_curve(self.levels, acc) for name, acc in accuracy.items()}
        return AccuracyDropResult(list(self.levels), accuracy, auc, total)
