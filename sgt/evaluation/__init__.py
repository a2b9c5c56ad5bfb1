"""Faithfulness evaluations: each returns plain data and never prints (plots: sgt.plots)."""

from sgt.evaluation.accuracy_drop import (
    LEVELS,
    AccuracyDrop,
    AccuracyDropResult,
    area_under_curve,
)
from sgt.evaluation.base import RESULTS, Evaluation, EvaluationResult, result_from_dict
from sgt.evaluation.sanity import CascadingRandomization, SanityResult, rank, spearman

__all__ = [
    "LEVELS",
    "RESULTS",
    "AccuracyDrop",
    "AccuracyDropResult",
    "CascadingRandomization",
    "Evaluation",
    "EvaluationResult",
    "SanityResult",
    "area_under_curve",
    "rank",
    "result_from_dict",
    "spearman",
]
