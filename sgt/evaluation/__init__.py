"""Faithfulness evaluations: each returns plain data and never prints (plots: sgt.plots)."""

from sgt.evaluation.accuracy_drop import (
    LEVELS,
    AccuracyDrop,
    AccuracyDropResult,
    area_under_curve,
)
from sgt.evaluation.base import RESULTS, Evaluation, EvaluationResult, result_from_dict
from sgt.evaluation.eraser import (
    EraserMetrics,
    EraserResult,
    eraser_instances,
    write_eraser_results,
)
from sgt.evaluation.road import ORDERS, Road, RoadResult
from sgt.evaluation.sanity import CascadingRandomization, SanityResult, rank, spearman
from sgt.evaluation.timeseries import TimeSeriesMetrics, TimeSeriesResult, difference_from_random

__all__ = [
    "LEVELS",
    "ORDERS",
    "RESULTS",
    "AccuracyDrop",
    "AccuracyDropResult",
    "CascadingRandomization",
    "EraserMetrics",
    "EraserResult",
    "Evaluation",
    "EvaluationResult",
    "Road",
    "RoadResult",
    "SanityResult",
    "TimeSeriesMetrics",
    "TimeSeriesResult",
    "area_under_curve",
    "difference_from_random",
    "eraser_instances",
    "rank",
    "result_from_dict",
    "spearman",
    "write_eraser_results",
]
