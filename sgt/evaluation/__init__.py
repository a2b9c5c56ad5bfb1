"""Faithfulness evaluations: each returns plain data and never prints (plots: sgt.plots)."""

from sgt.evaluation.accuracy_drop import AccuracyDrop, AccuracyDropResult
from sgt.evaluation.base import (
    RESULTS,
    Evaluation,
    EvaluationResult,
    Measure,
    Result,
    measure,
    result_from_dict,
)
from sgt.evaluation.eraser import (
    EraserMetrics,
    EraserResult,
    eraser_instances,
    write_eraser_results,
)
from sgt.evaluation.removal import LEVELS, RemovalEvaluation, area_under_curve
from sgt.evaluation.road import ORDERS, Road, RoadResult
from sgt.evaluation.sanity import CascadingRandomization, SanityResult, spearman
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
    "Measure",
    "RemovalEvaluation",
    "Result",
    "Road",
    "RoadResult",
    "SanityResult",
    "TimeSeriesMetrics",
    "TimeSeriesResult",
    "area_under_curve",
    "difference_from_random",
    "eraser_instances",
    "measure",
    "result_from_dict",
    "spearman",
    "write_eraser_results",
]
