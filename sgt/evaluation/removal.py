"""What the removal evaluations share (accuracy drop, ROAD): levels of features removed, a
fill for them, a random ranking to compare with, and the areas under the curves.

A removal evaluation takes away a share of every input's features by a method's ranking and
reads the model's accuracy at each level; a lower area under that curve (when the most
relevant go first) means a more faithful ranking. Part of that area is the model's reaction
to *any* removal, which SGT training also changes; the area between the ``random`` curve and
a method's, of the same model, takes it out (:func:`relative_to`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch

from sgt.errors import SettingError
from sgt.evaluation.base import Evaluation, Methods, with_random
from sgt.masking import Fill, check_fraction, get_fill
from sgt.saliency import Output

LEVELS: tuple[float, ...] = tuple(i / 10 for i in range(10))


def area_under_curve(levels: Sequence[float], values: Sequence[float]) -> float:
    """Trapezoidal area of ``values`` over ``levels`` (``np.trapz``)."""
    return float(torch.trapezoid(torch.tensor(values, dtype=torch.float64),
                                 torch.tensor(levels, dtype=torch.float64)))


def relative_to(baseline: str, areas: Mapping[str, float]) -> dict[str, float]:
    """Per method, the area between ``baseline``'s curve and its own (``baseline``'s area
    minus its): how much faster than a random ranking its removal costs accuracy, with the
    model's reaction to any removal taken out. 0 for ``baseline`` itself; empty without it."""
    if baseline not in areas:
        return {}
    return {m: areas[baseline] - a for m, a in areas.items()}


class RemovalEvaluation(Evaluation):
    """An evaluation that removes ranked features at ``levels`` (configured callable).

    Args:
        levels: fractions of features removed, each in ``[0, 1)``; 0 is plain accuracy.
        fill: replacement, a registered fill name or a :class:`~sgt.masking.Fill`
            (default: the evaluation's ``default_fill``); ``fill_args`` are its arguments.
        feature_score: how a feature's attribution values reduce to its ranking score
            (:data:`sgt.features.FEATURE_SCORES`; default: the evaluation's
            ``default_feature_score``, its reference code's).
        random_baseline: also rank by ``random`` (added unless already among the methods).
        seed, output, limit_batches, progress: as every evaluation
            (:class:`~sgt.evaluation.base.Evaluation`).
    """

    default_fill: ClassVar[str]
    default_feature_score: ClassVar[str]

    def __init__(
        self,
        levels: Sequence[float] = LEVELS,
        fill: str | Fill | None = None,
        fill_args: Mapping[str, Any] | None = None,
        feature_score: str | None = None,
        random_baseline: bool = True,
        seed: int = 0,
        output: Output = "logit",
        limit_batches: int | None = None,
        progress: bool = True,
    ) -> None:
        super().__init__(seed=seed, output=output,
                         feature_score=feature_score or self.default_feature_score,
                         limit_batches=limit_batches, progress=progress)
        if not levels:
            raise SettingError("levels must list at least one fraction in [0, 1), got none")
        self.levels = [check_fraction(level, "each of levels") for level in levels]
        if not isinstance(random_baseline, bool):
            raise SettingError(f"random_baseline must be true or false, got {random_baseline!r}")
        self.random_baseline = random_baseline
        fill = self.default_fill if fill is None else fill
        if isinstance(fill, str):
            self.fill, self.fill_name = get_fill(fill, fill_args), fill
        else:
            self.fill, self.fill_name = fill, type(fill).__name__

    def methods_for(self, methods: Methods, device: Any) -> Methods:
        return with_random(methods) if self.random_baseline else methods


__all__ = ["LEVELS", "RemovalEvaluation", "area_under_curve", "relative_to"]
