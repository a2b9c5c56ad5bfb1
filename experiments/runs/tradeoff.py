"""Accuracy against faithfulness: what a user sweeps k for, and the runs no other beats.

Each run is a point per attribution method: its test accuracy and the method's faithfulness
relative to a random ranking (the evaluation's own measure, e.g. the accuracy drop's area
between the random curve and the method's: the model's reaction to any removal taken out).
A run is on the method's *Pareto front* when no other run is at least as accurate and at
least as faithful, and better in one: the front, not accuracy alone, is what "best" means.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from experiments.runs.collect import Record
from sgt.errors import SettingError


@dataclass(frozen=True)
class Point:
    """One run's place for one method."""

    run: str
    label: str
    accuracy: float
    faithfulness: float
    on_front: bool = False


def pareto_front(points: Sequence[tuple[float, float]]) -> list[bool]:
    """For each ``(x, y)`` (higher is better in both), whether no other point is at least as
    good in both and better in one."""
    return [not any(a >= x and b >= y and (a > x or b > y) for a, b in points)
            for x, y in points]


def faithfulness(record: Record, name: str) -> dict[str, float]:
    """Method -> its faithfulness relative to random in the run's evaluation ``name`` (higher
    is better; empty when the evaluation is absent or has no such measure)."""
    result = record.evaluation(name)
    key = None if result is None else result.faithfulness
    if key is None:
        return {}
    direction = 1.0 if result.measures[key].higher_is_better else -1.0
    return {k.split("/", 1)[1]: direction * v for k, v in result.summary().items()
            if k.startswith(f"{key}/") and not k.endswith("/random")}


def tradeoff(records: Sequence[Record], name: str) -> dict[str, list[Point]]:
    """Method -> the points of every run with a test accuracy and that method evaluated,
    its front marked."""
    by_method: dict[str, list[Point]] = {}
    for record in records:
        accuracy = record.metrics.get("test/acc")
        if accuracy is None:
            continue
        for method, value in faithfulness(record, name).items():
            by_method.setdefault(method, []).append(
                Point(record.name, record.label, float(accuracy), float(value)))
    if not by_method:
        raise SettingError(f"none of the {len(records)} runs has a test accuracy and an "
                           f"evaluation eval/{name}.json with a faithfulness relative to "
                           "random (accuracy_drop, road or timeseries)")
    out = {}
    for method, points in by_method.items():
        front = pareto_front([(p.accuracy, p.faithfulness) for p in points])
        out[method] = [Point(p.run, p.label, p.accuracy, p.faithfulness, on) for p, on in
                       zip(points, front, strict=True)]
    return out


def front_of(points: dict[str, list[Point]]) -> dict[str, list[str]]:
    """Run -> the methods whose front it is on."""
    fronts: dict[str, list[str]] = {}
    for method, method_points in points.items():
        for p in method_points:
            fronts.setdefault(p.run, [])
            if p.on_front:
                fronts[p.run].append(method)
    return fronts


__all__ = ["Point", "faithfulness", "front_of", "pareto_front", "tradeoff"]
