"""Saliency scored against the known box of the synthetic time-series benchmark.

The metrics of Ismail et al. 2020 (docs/paper.md §3(d)), every one batched on the device:

- a method's map is |attribution|, min-max rescaled to [0, 1] per sample;
- masks by saliency *mass*: at p = 10 … 90 % the fewest top cells holding ≥ p of the
  sample's total saliency;
- saliency-weighted precision and recall of those masks against the box (cells), and the
  same for time rows and feature columns (top-h / top-w weighting), with AUP, AUR, AUPR;
- masked accuracy: the mask's cells replaced by the dataset's no-box background sample, at
  p = 0, 10, …, 100 %, and the area under that curve (lower = more faithful).

Batches are ``(x (B, T, F), y, truth (B, T, F) bool, background (B, T, F))`` as
:class:`sgt.data.TimeSeriesDataModule`'s test loader yields them.

**Random baseline.** ``random`` is, by default, the benchmark's (``createMasks.py``): the map
of another evaluated method, picked uniformly at random, with its feature axis permuted by
one permutation shared by every sample and time step, so it keeps that method's time profile
(:class:`PermutedMap`; the result records the method and the permutation). The attribution
registry's i.i.d. U[0, 1) map is then evaluated too, as ``random_iid``
(``random_baseline="iid"`` makes it the ``random`` row instead). The two are not
interchangeable: on LSTMs they move Diff by 0.1–0.2 (docs/paper.md §3(d)).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from sgt.checks import check_choice
from sgt.errors import SettingError
from sgt.evaluation.base import Evaluation, Measure, Methods, Result
from sgt.evaluation.removal import area_under_curve, relative_to
from sgt.saliency import Attribution, Explainer, Output, get_method, method_generator

MASS_LEVELS: tuple[float, ...] = tuple(i / 10 for i in range(1, 10))  # 10 … 90 %
MASKED_LEVELS: tuple[float, ...] = tuple(i / 10 for i in range(11))  # 0, 10, …, 100 %
# Precision/recall curves of a result: cells, time rows, feature columns.
CURVES: tuple[str, ...] = ("precision", "recall", "time_precision", "time_recall",
                           "feature_precision", "feature_recall")
AREAS: tuple[str, ...] = ("aup", "aur", "aupr", "time_aup", "time_aur", "time_aupr",
                          "feature_aup", "feature_aur", "feature_aupr", "masked_auc")
_AREA_TITLES = {"aup": "area under the precision curve", "aur": "area under the recall curve",
                "aupr": "area under the precision-recall curve"}
RANDOM_BASELINES = ("permuted", "iid")


# -- the metrics on one batch (pure functions of tensors) -------------------------------


def rescale_saliency(scores: Tensor) -> Tensor:
    """``(B, N)`` scores -> per-sample min-max to [0, 1]; a constant map becomes 0
    (sklearn ``minmax_scale``, as the benchmark)."""
    low, high = scores.amin(1, keepdim=True), scores.amax(1, keepdim=True)
    span = high - low
    return torch.where(span > 0, (scores - low) / span.clamp_min(torch.finfo(span.dtype).tiny),
                       torch.zeros_like(scores))


def mass_masks(saliency: Tensor, levels: Sequence[float]) -> Tensor:
    """``(L, B, N)`` bool: per level p, the fewest most salient cells whose saliency sums to
    at least p of the sample's total (sort + cumsum). p = 0 selects nothing and p = 1 every
    cell (the benchmark's 0 % and 100 % masked-accuracy points); a map summing to 0 gives one
    cell for 0 < p < 1. Ties keep index order (a stable sort), so masks repeat exactly.

    Args:
        saliency: ``(B, N)`` non-negative per-cell saliency.
    """
    batch, n = saliency.shape
    ordered, order = saliency.double().sort(dim=1, descending=True, stable=True)
    mass = ordered.cumsum(1)  # (B, N): saliency of the top 1, 2, … cells
    p = torch.tensor(levels, dtype=torch.float64, device=saliency.device)[:, None]  # (L, 1)
    count = (mass[None] < p[:, :, None] * mass[None, :, -1:]).sum(2) + 1  # (L, B)
    count = torch.where(p <= 0, 0, torch.where(p >= 1, n, count))
    positions = torch.arange(n, device=saliency.device).expand(batch, n)
    rank = torch.empty_like(order).scatter_(1, order, positions)  # (B, N): place in the order
    return rank[None] < count[:, :, None]


def weighted_precision_recall(weights: Tensor, predicted: Tensor, truth: Tensor
                              ) -> tuple[Tensor, Tensor]:
    """Saliency-weighted precision and recall per sample, NaN where undefined.

    TP, FP, FN are the summed ``weights`` of predicted-and-true, predicted-only and
    true-only positions; precision = TP / (TP + FP), recall = TP / (TP + FN).

    Args:
        weights: ``(B, N)`` non-negative weights (the rescaled saliency).
        predicted: ``(L, B, N)`` bool, one mask per level. truth: ``(B, N)`` bool.
    Returns:
        ``(L, B)`` precision and ``(L, B)`` recall.
    """
    tp = (weights * (predicted & truth)).sum(-1)
    fp = (weights * (predicted & ~truth)).sum(-1)
    fn = (weights * (~predicted & truth)).sum(-1)
    nan = torch.full_like(tp, float("nan"))
    precision = torch.where(tp + fp > 0, tp / (tp + fp).clamp_min(1e-30), nan)
    recall = torch.where(tp + fn > 0, tp / (tp + fn).clamp_min(1e-30), nan)
    return precision, recall


def top_mean(values: Tensor, k: Tensor, dim: int) -> Tensor:
    """Mean of the ``k`` largest entries along ``dim`` of ``(B, …)`` ``values``, with
    ``k (B,)`` per sample (clamped to [1, size]); the result drops ``dim``."""
    k = k.clamp(1, values.shape[dim])
    per_sample = (-1, *[1] * (values.dim() - 1))  # k broadcast over a (B, …) tensor
    top_sums = values.sort(dim=dim, descending=True).values.cumsum(dim)
    index = (k - 1).view(per_sample).expand(*values.shape[:dim], 1, *values.shape[dim + 1:])
    return (top_sums.gather(dim, index) / k.view(per_sample).to(values.dtype)).squeeze(dim)


def axis_precision_recall(saliency: Tensor, predicted: Tensor, truth: Tensor, axis: int
                          ) -> tuple[Tensor, Tensor]:
    """Time-level (``axis=1``) or feature-level (``axis=2``) weighted precision and recall.

    A time row is predicted when any of its cells is in the mask and true when it meets the
    box; its weight is the mean of its top-h saliencies, h = the box's length in time.
    Feature columns likewise, with the box's width w (docs/paper.md §3(d), as the code).

    Args:
        saliency: ``(B, T, F)`` rescaled saliency. predicted: ``(L, B, T, F)`` bool.
        truth: ``(B, T, F)`` bool.
    """
    other = 3 - axis  # the axis a row (column) runs along
    true_lines = truth.any(other)  # (B, T) rows or (B, F) columns meeting the box
    extent = true_lines.sum(1)  # (B,) box length in time (rows) or width (columns)
    weights = top_mean(saliency, extent, other)  # (B, T) or (B, F)
    return weighted_precision_recall(weights, predicted.any(other + 1), true_lines)


def masked_inputs(x: Tensor, background: Tensor, masks: Tensor) -> Tensor:
    """``(L, B, T, F)``: ``x`` with each level's masked cells taken from ``background``."""
    return torch.where(masks.view(masks.shape[0], *x.shape), background[None], x[None])


# -- the result -------------------------------------------------------------------------


@dataclass
class TimeSeriesResult(Result):
    """Plain data: precision/recall curves per method at each saliency-mass level, and
    masked accuracy per method at each masked level.

    ``curves[c][method]`` for ``c`` in :data:`CURVES`; NaN where no sample had a defined
    value. Areas (:data:`AREAS`) are computed from the curves.
    """

    kind: ClassVar[str] = "timeseries"
    faithfulness: ClassVar[str | None] = "relative_masked_auc"
    title: ClassVar[str] = "time-series metrics"
    measures: ClassVar[dict[str, Measure]] = {
        **{f"{level}{area}": Measure(f"{what} ({level.rstrip('_') or 'cells'})", True)
           for level in ("", "time_", "feature_") for area, what in _AREA_TITLES.items()},
        "masked_auc": Measure("area under the masked-accuracy curve", higher_is_better=False),
        "relative_masked_auc": Measure("area between the random masked-accuracy curve and "
                                       "the method's", higher_is_better=True),
    }
    levels: list[float]
    curves: dict[str, dict[str, list[float]]]
    masked_levels: list[float]
    masked_accuracy: dict[str, list[float]]
    num_samples: int
    random_baseline: str = "iid"  # what the ``random`` row is (see the module docstring)
    random_source: str | None = None  # permuted: the method whose map was permuted
    random_permutation: list[int] | None = None  # permuted: new feature f is old perm[f]

    @property
    def methods(self) -> list[str]:
        return list(self.masked_accuracy)

    def areas(self, method: str) -> dict[str, float]:
        """AUP, AUR (trapezoid over the mass levels), AUPR (precision over recall, sorted by
        recall) for cells, time rows and feature columns, and the masked-accuracy AUC."""
        out: dict[str, float] = {}
        for prefix in ("", "time_", "feature_"):
            precision = torch.tensor(self.curves[f"{prefix}precision"][method],
                                     dtype=torch.float64)
            recall = torch.tensor(self.curves[f"{prefix}recall"][method], dtype=torch.float64)
            order = recall.argsort(stable=True)
            out[f"{prefix}aup"] = area_under_curve(self.levels, precision.tolist())
            out[f"{prefix}aur"] = area_under_curve(self.levels, recall.tolist())
            out[f"{prefix}aupr"] = area_under_curve(recall[order].tolist(),
                                                    precision[order].tolist())
        out["masked_auc"] = area_under_curve(self.masked_levels, self.masked_accuracy[method])
        return out

    @property
    def relative_masked_auc(self) -> dict[str, float]:
        """The area between the ``random`` masked-accuracy curve and each method's (higher =
        more faithful; empty without ``random``)."""
        return relative_to("random", {m: self.areas(m)["masked_auc"] for m in self.methods})

    def table(self) -> tuple[list[str], list[list[Any]]]:
        """``(columns, rows)``: one row per method with its areas."""
        relative = self.relative_masked_auc
        rows = [[m, *self.areas(m).values(), relative.get(m)] for m in self.methods]
        return ["method", *AREAS, "relative_masked_auc"], rows

    def summary(self) -> dict[str, float]:
        """``<area>/<method>`` (``aup/grad``, ``masked_auc/random``, …) and
        ``relative_masked_auc/<method>``."""
        return {**{f"{area}/{m}": value for m in self.methods
                   for area, value in self.areas(m).items()},
                **{f"relative_masked_auc/{m}": v for m, v in self.relative_masked_auc.items()}}


def difference_from_random(results: TimeSeriesResult | Sequence[TimeSeriesResult],
                           baseline: str = "random") -> dict[str, dict[str, float]]:
    """Poster Table 2's Diff(AUP) and Diff(AUR), as defined here: per method,
    AUP(method) − AUP(baseline) and AUR(method) − AUR(baseline) within each result (one per
    dataset and model), averaged over ``results``.

    The poster does not define Diff; a difference to the random baseline is what explains its
    negative entries (docs/paper.md §3(d), last bullet). ``random`` is the benchmark's
    permuted map unless the result says otherwise (``random_baseline``).

    Returns:
        ``{method: {"aup": …, "aur": …}}`` for every method but the baselines
        (``baseline``, ``random``, ``random_iid``).
    """
    results = [results] if isinstance(results, TimeSeriesResult) else list(results)
    if not results:
        raise SettingError("difference_from_random needs at least one time-series result")
    missing = [i for i, r in enumerate(results) if baseline not in r.methods]
    if missing:
        raise SettingError(f"result {missing[0]} has no {baseline!r} method to compare with; "
                           f"evaluate with methods [..., {baseline}]")
    diffs: dict[str, dict[str, list[float]]] = {}
    for result in results:
        base = result.areas(baseline)
        for method in result.methods:
            if method not in (baseline, "random", "random_iid"):
                areas = result.areas(method)
                for key in ("aup", "aur"):
                    diffs.setdefault(method, {}).setdefault(key, []).append(
                        areas[key] - base[key])
    return {m: {k: sum(v) / len(v) for k, v in d.items()} for m, d in diffs.items()}


# -- the evaluation ---------------------------------------------------------------------


class PermutedMap:
    """The benchmark's Random: ``source``'s map with its feature axis permuted.

    ``source`` runs on its own stream (``generator``, started afresh as the source's own
    evaluation starts), so on the same batches in the same order it returns the very maps
    that method was scored on. The permutation is drawn from ``chooser`` (a CPU generator:
    the same on every device) on the first batch, when the feature count is known.
    """

    def __init__(self, name: str, source: Attribution, generator: torch.Generator,
                 chooser: torch.Generator) -> None:
        self.name, self.source, self.generator, self.chooser = name, source, generator, chooser
        self.permutation: Tensor | None = None

    def __call__(self, forward, z, target, valid, generator):
        if self.permutation is None:
            self.permutation = torch.randperm(z.shape[-1], generator=self.chooser)
        attribution = self.source(forward, z, target, valid, self.generator)
        return attribution[..., self.permutation.to(z.device)]


def _check_levels(levels: Sequence[float], key: str, low: float, high: float) -> list[float]:
    values = list(levels)
    if not values or any(isinstance(v, bool) or not isinstance(v, (int, float))
                         or not low <= v <= high for v in values):
        raise SettingError(f"{key} must list fractions in [{low:g}, {high:g}], got {values!r}")
    if values != sorted(set(values)):
        raise SettingError(f"{key} must be increasing without repeats, got {values!r}")
    return [float(v) for v in values]


class TimeSeriesMetrics(Evaluation):
    """The benchmark's saliency metrics against the true box (configured callable).

    Args:
        levels: saliency-mass fractions of the precision/recall masks, in (0, 1); AUP and
            AUR are trapezoids over them (the benchmark: 0.1 … 0.9).
        masked_levels: saliency-mass fractions of the masked-accuracy curve, in [0, 1]
            (0: the plain input, 1: all background).
        random_baseline: what the ``random`` method is: ``permuted``, the benchmark's
            (another evaluated method's map, feature axis permuted; the i.i.d. map is added
            as ``random_iid``), or ``iid``, the registry's U[0, 1) map.
        random_key: keys the seeded draw of the permuted method and permutation. The
            benchmark draws afresh for every dataset and model, so give each its own key
            (the runs layer uses ``<dataset>/<model>``); the same key and seed repeat it.
        seed, output, limit_batches, progress: as every evaluation
            (:class:`~sgt.evaluation.base.Evaluation`).
    """

    name = "timeseries"
    title = "time-series metrics"
    modalities = ("timeseries",)
    batch_fields = ("inputs", "labels", "truth", "background")

    def __init__(
        self,
        levels: Sequence[float] = MASS_LEVELS,
        masked_levels: Sequence[float] = MASKED_LEVELS,
        random_baseline: str = "permuted",
        random_key: str | None = None,
        seed: int = 0,
        output: Output = "logit",
        limit_batches: int | None = None,
        progress: bool = True,
    ) -> None:
        super().__init__(seed=seed, output=output, limit_batches=limit_batches,
                         progress=progress)
        self.levels = _check_levels(levels, "levels", 0.0, 1.0)
        if self.levels[0] == 0.0 or self.levels[-1] == 1.0:
            raise SettingError(f"levels must lie strictly between 0 and 1 (0 and 1 are "
                               f"masked-accuracy points only), got {self.levels}")
        self.masked_levels = _check_levels(masked_levels, "masked_levels", 0.0, 1.0)
        self.random_baseline = check_choice(random_baseline, "random_baseline",
                                            RANDOM_BASELINES)
        if random_key is not None and not isinstance(random_key, str):
            raise SettingError(f"random_key must be a string or null, got {random_key!r}")
        self.random_key = random_key or ""
        self.permuted: PermutedMap | None = None  # this call's benchmark Random

    def evaluate_batch(self, explainer: Explainer, name: str, batch: Sequence[Tensor]
                       ) -> dict[str, Tensor]:
        """Sums over a ``(x, y, truth, background)`` batch: ``<curve>`` ``(L,)`` of the
        defined per-sample values, ``<curve>_count`` ``(L,)`` how many were defined,
        ``correct`` ``(M,)``."""
        x, y, truth, background = self._unpack(batch)
        _, scores = explainer(name, x, y)  # (B, N): |attribution| per cell
        saliency = rescale_saliency(scores.double())  # the benchmark's maps are float64
        truth_flat = truth.flatten(1)  # (B, T, F) -> (B, N)
        masks = mass_masks(saliency, self.levels)  # (L, B, N)
        grid = saliency.view_as(x)
        masks_grid = masks.view(len(self.levels), *x.shape)
        values = dict(zip(CURVES, (
            *weighted_precision_recall(saliency, masks, truth_flat),
            *axis_precision_recall(grid, masks_grid, truth, axis=1),
            *axis_precision_recall(grid, masks_grid, truth, axis=2),
        ), strict=True))
        sums = {}
        for curve, per_sample in values.items():  # (L, B), NaN where undefined
            defined = ~per_sample.isnan()
            sums[curve] = per_sample.nan_to_num().sum(1)
            sums[f"{curve}_count"] = defined.sum(1)
        levels = len(self.masked_levels)
        inputs = masked_inputs(x, background, mass_masks(saliency, self.masked_levels))
        with torch.no_grad():  # every level of the batch as one forward: (M * B, T, F)
            logits = explainer.forward(inputs.flatten(0, 1))
        sums["correct"] = (logits.argmax(-1) == y.repeat(levels)).view(levels, -1).sum(1)
        return sums

    def result(self, sums: dict[str, dict[str, Tensor]], total: int) -> TimeSeriesResult:
        curves = {curve: {name: (s[curve].double() / s[f"{curve}_count"]).tolist()
                          for name, s in sums.items()} for curve in CURVES}
        accuracy = {name: _stay_at_zero((s["correct"].double() / total).tolist())
                    for name, s in sums.items()}
        permuted = self.permuted
        return TimeSeriesResult(
            self.levels, curves, self.masked_levels, accuracy, total,
            "permuted" if permuted else "iid", permuted and permuted.name,
            None if not permuted or permuted.permutation is None
            else permuted.permutation.tolist())

    def methods_for(self, methods: Methods, device: Any) -> Methods:
        named, self.permuted = self.with_random(methods, device)
        return named

    def with_random(self, methods: Sequence[str] | Mapping[str, Attribution],
                    device: torch.device) -> tuple[dict[str, Attribution], PermutedMap | None]:
        """``methods`` as instances, with ``random`` the benchmark's :class:`PermutedMap`
        (and the i.i.d. map as ``random_iid``) when ``random_baseline`` is ``permuted``.

        As the benchmark, the permuted method is drawn uniformly from the others, once per
        evaluation (a CPU draw seeded by ``seed`` and ``random_key``: the same on every
        device).
        """
        named = (dict(methods) if isinstance(methods, Mapping)
                 else {name: get_method(name) for name in methods})
        if self.random_baseline == "iid" or "random" not in named:
            return named, None
        sources = [name for name in named if name not in ("random", "random_iid")]
        if not sources:
            raise SettingError("the benchmark's random baseline permutes another method's map; "
                               "list at least one other method, or set random_baseline=iid")
        chooser = method_generator(self.seed, f"random/permuted/{self.random_key}",
                                   torch.device("cpu"))
        source = sources[int(torch.randint(len(sources), (1,), generator=chooser))]
        permuted = PermutedMap(source, named[source],
                               method_generator(self.seed, source, device), chooser)
        return {**named, "random": permuted, "random_iid": get_method("random")}, permuted

    @staticmethod
    def _unpack(batch: Sequence[Tensor]) -> tuple[Tensor, ...]:
        if len(batch) < 4:
            raise SettingError(
                f"time-series metrics need batches (x, y, truth, background), got "
                f"{len(batch)} entries; evaluate on TimeSeriesDataModule's test loader")
        x, y, truth, background = batch[:4]
        return x, y, truth.bool(), background.to(x.dtype)


def _stay_at_zero(accuracy: list[float]) -> list[float]:
    """Once accuracy reaches 0 it stays 0 at higher levels (the benchmark stops there)."""
    out, hit = [], False
    for value in accuracy:
        hit = hit or value == 0.0
        out.append(0.0 if hit else value)
    return out


__all__ = [
    "AREAS",
    "CURVES",
    "MASKED_LEVELS",
    "MASS_LEVELS",
    "RANDOM_BASELINES",
    "PermutedMap",
    "TimeSeriesMetrics",
    "TimeSeriesResult",
    "axis_precision_recall",
    "difference_from_random",
    "mass_masks",
    "masked_inputs",
    "rescale_saliency",
    "top_mean",
    "weighted_precision_recall",
]
