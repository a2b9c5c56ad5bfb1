"""ROAD: remove and debias (Rong et al., ICML 2022, arXiv 2202.00449; docs/paper.md §3(f)).

The accuracy drop (docs/paper.md §3(a)) partly measures how a model copes with the mask
rather than how faithful the saliency is: a constant or mean fill leaves a hole whose shape
leaks where the salient pixels were, and out-of-distribution holes cost accuracy whichever
pixels they cover. ROAD fills removed pixels by noisy linear imputation from their
neighbours (:class:`sgt.imputation.NoisyLinearFill`) and removes in both orders: most
relevant first (MoRF: accuracy should fall fast) and least relevant first (LeRF: it should
hold). The gap ``LeRF AUC - MoRF AUC`` is then larger for a more faithful method, and about
0 for random rankings, which remove pixels alike in both orders.

By default every step is the reference code's (``road/imputed_dataset.py``):

- a pixel's score is the *signed sum* of its channel attributions, min–max scaled
  (``(s - min) / (max - min + 1e-5)``), plus ``1e-4`` times a fixed standard-normal field
  that breaks ties (the method's :meth:`~sgt.saliency.Explainer.tie_keys`; the reference
  draws one per dataset with numpy), highest first;
- at level ``p`` MoRF removes the top ``int(p · N)`` pixels; LeRF at ``p`` removes every
  pixel but the top ``int((1 - p) · N)``: the reference's LeRF at ``1 - p`` (which keeps its
  level's share), so both curves share the x-axis "fraction removed";
- the imputation noise is ``0.01`` in ``[0, 1]`` pixel units whatever the normalisation
  (``fill_args.input_std``).

Each method's attributions are computed once per batch and reused for both orders and every
level; the fill imputes all levels of an order at once, and they go through the model as
one forward.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

import sgt.imputation  # noqa: F401  (registers the default fill, noisy_linear)
from sgt.errors import SettingError
from sgt.evaluation.base import Measure, Result
from sgt.evaluation.removal import RemovalEvaluation, area_under_curve
from sgt.features import Modality
from sgt.saliency import Explainer, feature_ranks, least_relevant, most_relevant

ORDERS: tuple[str, ...] = ("morf", "lerf")
TIE_NOISE = 1e-4  # the reference's ``random_v`` scale, on min-max scaled scores


def reference_scores(scores: Tensor, keys: Tensor, tie_noise: float = TIE_NOISE,
                     valid: Tensor | None = None) -> Tensor:
    """ROAD's ranking values: ``scores (B, N)`` min-max scaled per row as the reference's
    ``normalize_map`` (``+ 1e-5`` in the denominator), plus ``tie_noise · keys (N,)``, added
    in float64 and rounded back to the scores' dtype as the reference's in-place numpy sum.
    """
    low = scores if valid is None else scores.masked_fill(~valid, float("inf"))
    high = scores if valid is None else scores.masked_fill(~valid, float("-inf"))
    low, high = low.amin(1, keepdim=True), high.amax(1, keepdim=True)
    scaled = (scores - low) / (high - low + 1e-5)
    return (scaled.double() + tie_noise * keys).to(scores.dtype)


def lerf_kept(level: float) -> float:
    """The share LeRF keeps when ``level`` is removed: ``1 - level`` rounded to 12 digits, so
    ``int(kept · N)`` counts as the reference does at that share (``1 - 0.9`` is
    ``0.09999999999999998`` in floating point)."""
    return round(1.0 - level, 12)


@dataclass
class RoadResult(Result):
    """Plain data: accuracy per method, order and level, and the area under each curve."""

    kind: ClassVar[str] = "road"
    faithfulness: ClassVar[str | None] = "gap"
    title: ClassVar[str] = "ROAD"
    measures: ClassVar[dict[str, Measure]] = {
        "morf_auc": Measure("area under the MoRF accuracy curve", higher_is_better=False),
        "lerf_auc": Measure("area under the LeRF accuracy curve", higher_is_better=True),
        "gap": Measure("LeRF AUC − MoRF AUC", higher_is_better=True),
    }
    levels: list[float]
    morf: dict[str, list[float]]  # method -> accuracy, most relevant removed first
    lerf: dict[str, list[float]]  # method -> accuracy, least relevant removed first
    morf_auc: dict[str, float]  # lower = more faithful
    lerf_auc: dict[str, float]  # higher = more faithful
    num_samples: int
    fill: str
    feature_score: str = "signed_sum"
    tie_noise: float = TIE_NOISE

    @property
    def gap(self) -> dict[str, float]:
        """``LeRF AUC - MoRF AUC`` per method: larger = more faithful, ≈ 0 for random."""
        return {m: self.lerf_auc[m] - self.morf_auc[m] for m in self.morf_auc}

    def table(self) -> tuple[list[str], list[list[Any]]]:
        """``(columns, rows)``: per method a MoRF and a LeRF row: name, order, AUC, gap,
        then accuracy per level."""
        columns = ["method", "order", "auc", "gap", *(f"{level:g}" for level in self.levels)]
        gap = self.gap
        rows = [row for m in self.morf for row in (
            [m, "MoRF", self.morf_auc[m], gap[m], *self.morf[m]],
            [m, "LeRF", self.lerf_auc[m], gap[m], *self.lerf[m]])]
        return columns, rows

    def summary(self) -> dict[str, float]:
        """``morf_auc/<method>``, ``lerf_auc/<method>``, ``gap/<method>``."""
        return {**{f"morf_auc/{m}": a for m, a in self.morf_auc.items()},
                **{f"lerf_auc/{m}": a for m, a in self.lerf_auc.items()},
                **{f"gap/{m}": g for m, g in self.gap.items()}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RoadResult:
        # files written before these fields existed ranked by |mean| with no tie field
        return super().from_dict({"feature_score": "abs_mean", "tie_noise": 0.0, **data})


class Road(RemovalEvaluation):
    """Accuracy after removing features in MoRF and LeRF order (configured callable).

    Args: as every removal evaluation (:class:`~sgt.evaluation.removal.RemovalEvaluation`),
    with these defaults, plus ``tie_noise``:
        levels: 0, 0.1, …, 0.9, which hold the reference's no-retraining levels (0.1–0.5,
            0.7, 0.9).
        fill: ``noisy_linear``, ROAD's; its ``fill_args`` are ``noise`` (in ``[0, 1]`` pixel
            units) and ``input_std``, the per-channel std the inputs were normalised with
            (give it for normalised inputs, e.g. ``(0.3081,)`` on MNIST).
        feature_score: ``signed_sum``, the reference's (``abs_mean`` ranks by |mean| as the
            accuracy drop does).
        random_baseline: ``True``: its gap is the one a ranking with no information gets.
        tie_noise: scale of the fixed random field added to the min-max scaled scores
            (the reference's ``1e-4``); 0 ranks the scores as they are, exact ties still by
            the random keys.
    """

    name = "road"
    title = "ROAD"
    modalities = ("image", "timeseries")  # a 2-D grid of features to impute from
    default_fill = "noisy_linear"
    default_feature_score = "signed_sum"

    def __init__(self, tie_noise: float = TIE_NOISE, **settings: Any) -> None:
        super().__init__(**settings)
        if (isinstance(tie_noise, bool) or not isinstance(tie_noise, (int, float))
                or not 0 <= tie_noise < float("inf")):
            raise SettingError(f"tie_noise must be a finite number >= 0, got {tie_noise!r}")
        self.tie_noise = float(tie_noise)

    def ranks(self, explainer: Explainer, name: str, scores: Tensor,
              valid: Tensor | None) -> Tensor:
        """``(B, N)`` place of each feature by descending ROAD score (see the module
        docstring); exact ties by the method's random keys."""
        keys = explainer.tie_keys(name, scores.shape[1])
        if self.tie_noise:
            scores = reference_scores(scores, keys, self.tie_noise, valid)
        return feature_ranks(scores, keys, valid)

    def removed(self, ranks: Tensor, valid: Tensor | None, order: str) -> Tensor:
        """``(levels * B, N)`` bool: the features each level of ``order`` removes."""
        if order == "morf":
            return torch.cat([most_relevant(ranks, level, valid) for level in self.levels])
        return torch.cat([least_relevant(ranks, lerf_kept(level), valid)
                          for level in self.levels])

    def perturb(self, modality: Modality, z: Tensor, selected: Tensor, valid: Tensor | None,
                generator: torch.Generator) -> Tensor:
        """``(levels, B, ...)``: ``z`` with each level's ``selected (levels * B, N)``
        features filled; one fill call imputes every level."""
        levels = len(self.levels)
        stacked = z.repeat(levels, *(1,) * (z.dim() - 1))  # (levels * B, ...)
        features = modality.to_features(stacked)  # (levels * B, N, C)
        values = self.fill(features, selected=selected,
                           valid=None if valid is None else valid.repeat(levels, 1),
                           generator=generator, grid=modality.grid(z)).expand_as(features)
        masked = torch.where(selected.unsqueeze(-1), values, features)
        return modality.from_features(masked, stacked).view(levels, *z.shape)

    def evaluate_batch(self, explainer: Explainer, name: str, batch: Sequence[Tensor]
                       ) -> Tensor:
        """``(orders, levels)`` correct predictions of the batch: MoRF row, then LeRF."""
        x, y = batch[:2]
        forward = explainer.forward
        m = forward.modality
        z, scores = explainer(name, x, y)
        valid = m.valid_features(x)
        ranks = self.ranks(explainer, name, scores, valid)
        levels = len(self.levels)
        counts = []
        for order in ORDERS:
            perturbed = self.perturb(m, z, self.removed(ranks, valid, order), valid,
                                     explainer.generator(name))
            with torch.no_grad():
                # every level of the batch as one forward: (levels * B, ...)
                logits = forward(perturbed.flatten(0, 1),
                                 None if valid is None else valid.repeat(levels, 1))
            counts.append((logits.argmax(-1) == y.repeat(levels)).view(levels, -1).sum(1))
        return torch.stack(counts)

    def result(self, sums: dict[str, Tensor], total: int) -> RoadResult:
        """``sums``: method -> ``(orders, levels)`` correct counts."""
        accuracy = {order: {name: (c[i].double() / total).tolist() for name, c in sums.items()}
                    for i, order in enumerate(ORDERS)}
        auc = {order: {name: area_under_curve(self.levels, acc) for name, acc in curves.items()}
               for order, curves in accuracy.items()}
        return RoadResult(list(self.levels), accuracy["morf"], accuracy["lerf"], auc["morf"],
                          auc["lerf"], total, self.fill_name, self.feature_score,
                          self.tie_noise)


__all__ = ["ORDERS", "TIE_NOISE", "Road", "RoadResult", "lerf_kept", "reference_scores"]
