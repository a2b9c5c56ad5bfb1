"""Faithfulness evaluations: each returns plain data and never prints (plots: sgt.plots)."""

from sgt.evaluation.accuracy_drop import (
    LEVELS,
    AccuracyDrop,
    AccuracyDropResult,
    area_under_curve,
)
from sgt.evaluation.sanity import CascadingRandomization, rank, spearman

__all__ = [
    "LEVELS",
    "AccuracyDrop",
    "AccuracyDropResult",
    "CascadingRandomization",
    "area_under_curve",
    "rank",
    "spearman",
]
