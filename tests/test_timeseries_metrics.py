"""Time-series saliency metrics against hand-computed values on tiny examples."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import Tensor, nn

from sgt.data.timeseries_synth import box_mask
from sgt.errors import SettingError
from sgt.evaluation import (
    TimeSeriesMetrics,
    TimeSeriesResult,
    difference_from_random,
    result_from_dict,
)
from sgt.evaluation.timeseries import (
    MASS_LEVELS,
    mass_masks,
    rescale_saliency,
    top_mean,
    weighted_precision_recall,
)
from sgt.plots import plot_box_saliency, result_figures

T, F = 10, 10
BOX = [2, 9, 4, 5]  # 7 time steps × 1 feature: p · 7 never an integer, so no ties at p
COUNTS = [math.ceil(7 * p) for p in MASS_LEVELS]  # cells the mass masks take: 1,2,3,3,4,5,5,6,7


def identity(forward, z, target, valid, generator) -> Tensor:
    """An 'attribution' that is the input itself: saliency = |x|."""
    return z


class BoxSum(nn.Module):
    """logits (−s, s), s = the sum of the box cells: class 1 iff s > 0 (ties go to class 0)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(box_mask(torch.tensor([BOX]), T, F)[0].float())

    def forward(self, x: Tensor) -> Tensor:
        s = (x * self.w).sum((1, 2))
        return torch.stack([-s, s], dim=1)


def _loader(y: list[int], saliency_on_box: bool = True) -> list[tuple[Tensor, ...]]:
    """Zeros with ±1 on the box (sign = class) or, off the box, +1 on feature 0 only."""
    labels = torch.tensor(y)
    truth = box_mask(torch.tensor([BOX] * len(y)), T, F)
    if saliency_on_box:
        x = truth.float() * (2.0 * labels - 1)[:, None, None]
    else:
        x = torch.zeros(len(y), T, F)
        x[:, :, 0] = 1.0
    return [(x, labels, truth, torch.zeros_like(x))]


def test_rescaling_is_per_sample_min_max() -> None:
    scores = torch.tensor([[1.0, 3.0, 5.0], [2.0, 2.0, 2.0]])
    assert rescale_saliency(scores).tolist() == [[0.0, 0.5, 1.0], [0.0, 0.0, 0.0]]


def test_mass_masks_take_the_fewest_cells_holding_the_mass() -> None:
    saliency = torch.tensor([[4.0, 1.0, 3.0, 2.0]])  # total 10; order 0, 2, 3, 1
    masks = mass_masks(saliency, [0.0, 0.35, 0.65, 0.75, 0.95, 1.0])[:, 0]
    assert masks.int().tolist() == [[0, 0, 0, 0],  # 0: nothing
                                     [1, 0, 0, 0],  # 4 ≥ 3.5
                                     [1, 0, 1, 0],  # 4 < 6.5 ≤ 7
                                     [1, 0, 1, 1],  # 7 < 7.5 ≤ 9
                                     [1, 1, 1, 1],  # 9 < 9.5
                                     [1, 1, 1, 1]]  # 1: everything


def test_weighted_precision_and_recall_by_hand() -> None:
    weights = torch.tensor([[0.4, 0.1, 0.3, 0.2], [0.0, 0.0, 0.0, 0.0]])
    truth = torch.tensor([[True, True, False, False]] * 2)
    predicted = torch.tensor([[[True, False, True, False]] * 2])  # (1 level, 2, 4)
    precision, recall = weighted_precision_recall(weights, predicted, truth)
    # TP = 0.4, FP = 0.3, FN = 0.1; the all-zero map has neither
    assert precision[0, 0].item() == pytest.approx(4 / 7)
    assert recall[0, 0].item() == pytest.approx(0.8)
    assert precision[0, 1].isnan() and recall[0, 1].isnan()


def test_top_mean_uses_each_samples_own_k() -> None:
    values = torch.tensor([[[1.0, 5.0, 3.0], [2.0, 0.0, 4.0]],
                           [[1.0, 5.0, 3.0], [2.0, 0.0, 4.0]]])  # (2, 2, 3)
    assert top_mean(values, torch.tensor([1, 2]), dim=2).tolist() == [[5.0, 4.0], [4.0, 3.0]]
    assert top_mean(values, torch.tensor([1, 5]), dim=1).tolist() == [[2.0, 5.0, 4.0],
                                                                     [1.5, 2.5, 3.5]]


def test_saliency_on_the_box_is_precise_and_recalls_the_mass_taken() -> None:
    loader = _loader([1, 0, 1, 1])
    result = TimeSeriesMetrics(progress=False)(BoxSum(), loader, {"exact": identity})
    recall = [c / 7 for c in COUNTS]
    assert result.curves["precision"]["exact"] == [1.0] * 9
    assert result.curves["recall"]["exact"] == pytest.approx(recall)
    # time rows: the first COUNTS box rows are predicted; every box row weighs 1/7
    assert result.curves["time_precision"]["exact"] == [1.0] * 9
    assert result.curves["time_recall"]["exact"] == pytest.approx(recall)
    # feature columns: the one box column is hit from the first cell on
    assert result.curves["feature_precision"]["exact"] == [1.0] * 9
    assert result.curves["feature_recall"]["exact"] == [1.0] * 9
    areas = result.areas("exact")
    assert areas["aup"] == pytest.approx(0.8) and areas["feature_aur"] == pytest.approx(0.8)
    assert areas["aur"] == pytest.approx(sum((a + b) / 2 * 0.1 for a, b in zip(
        recall, recall[1:], strict=False)))


def test_saliency_off_the_box_has_precision_zero_and_no_recall() -> None:
    result = TimeSeriesMetrics(progress=False)(BoxSum(), _loader([1, 0], False),
                                               {"off": identity})
    assert result.curves["precision"]["off"] == [0.0] * 9
    # no saliency on the box: TP + FN = 0, so no sample defines recall
    assert all(math.isnan(r) for r in result.curves["recall"]["off"])
    assert result.curves["feature_precision"]["off"] == [0.0] * 9


def test_masked_accuracy_of_a_model_whose_answer_is_known() -> None:
    y = [1, 0, 1, 1, 0, 1, 1, 1]  # class 0 share 2/8
    result = TimeSeriesMetrics(progress=False)(BoxSum(), _loader(y), ["grad"])
    # |∂ logit_y / ∂x| is the box: masking k of its 7 cells with 0 keeps the sign of s
    # until all 7 are gone (90 %: ceil(6.3) = 7, and 100 %), then s = 0 -> class 0
    assert result.masked_accuracy["grad"] == [1.0] * 9 + [0.25, 0.25]
    assert result.areas("grad")["masked_auc"] == pytest.approx(0.8 + 0.1 * (1 + 0.25) / 2
                                                               + 0.1 * 0.25)
    assert result.curves["precision"]["grad"] == [1.0] * 9


class BoxPlusTotal(BoxSum):
    """s = box sum + the sum of every cell: the box counts twice as much."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x + x.sum((1, 2), keepdim=True) / self.w.sum())


def test_masked_accuracy_stays_at_zero_once_it_reaches_zero() -> None:
    x, y, truth, _ = _loader([1, 1])[0]
    background = torch.where(truth, 0.0, 5.0)
    # |grad| is 2 on the box and 1 elsewhere, so the rescaled map is the box: at 90 % every
    # box cell is 0 and so is s (accuracy 0); at 100 % the input is all background, s > 0 and
    # the model is right again, but the curve stays at 0
    result = TimeSeriesMetrics(progress=False)(BoxPlusTotal(), [(x, y, truth, background)],
                                               ["grad"])
    assert result.masked_accuracy["grad"] == [1.0] * 9 + [0.0, 0.0]
    assert BoxPlusTotal()(background[:1]).argmax(1).item() == 1


def test_iid_random_baseline_precision_is_the_box_share() -> None:
    loader = _loader([1, 0] * 32)
    result = TimeSeriesMetrics(progress=False, seed=1, random_baseline="iid")(
        BoxSum(), loader, ["random"])
    assert result.random_baseline == "iid" and result.random_source is None
    assert all(abs(p - 7 / 100) < 0.03 for p in result.curves["precision"]["random"][4:])


def test_benchmark_random_is_another_methods_map_with_its_features_permuted() -> None:
    """Saliency = |x| = 1 on the box (7 time steps of feature 4). Its permuted map keeps the
    time profile and moves feature 4 to the column ``j`` with ``perm[j] = 4``: precision 1 at
    every level if ``j = 4``, else 0."""
    loader = _loader([1, 0] * 8)
    result = TimeSeriesMetrics(progress=False, seed=3)(
        BoxSum(), loader, {"identity": identity, "random": identity})
    assert result.random_baseline == "permuted" and result.random_source == "identity"
    perm = result.random_permutation
    assert sorted(perm) == list(range(F))
    column = perm.index(BOX[2])
    expected = [1.0 if column == BOX[2] else 0.0] * len(MASS_LEVELS)
    assert result.curves["precision"]["random"] == expected
    assert result.areas("random")["aup"] == pytest.approx(0.8 * expected[0])
    # the time rows are the identity map's: its time-level scores, and not its feature ones
    for curve in ("time_precision", "time_recall"):
        assert result.curves[curve]["random"] == result.curves[curve]["identity"]
    # the i.i.d. map comes as an extra row; Diff leaves both baselines out
    assert {"random", "random_iid"} <= set(result.methods)
    assert set(difference_from_random(result)) == {"identity"}


def test_the_permuted_method_and_permutation_repeat_per_key_and_vary_across_keys() -> None:
    loader = _loader([1, 0] * 4)
    methods = {"a": identity, "b": identity, "c": identity, "random": identity}

    def draw(key: str, seed: int = 0) -> tuple[str | None, list[int] | None]:
        result = TimeSeriesMetrics(progress=False, seed=seed, random_key=key)(
            BoxSum(), loader, methods)
        return result.random_source, result.random_permutation

    assert draw("Middle_Gaussian/TCN") == draw("Middle_Gaussian/TCN")
    draws = {str(draw(f"dataset{i}/LSTM")) for i in range(6)}
    assert len(draws) == 6  # each dataset and model its own draw, as the benchmark
    assert {draw(f"d{i}")[0] for i in range(12)} == {"a", "b", "c"}


def test_the_benchmark_random_needs_another_method() -> None:
    with pytest.raises(SettingError, match="permutes another method's map"):
        TimeSeriesMetrics(progress=False)(BoxSum(), _loader([1, 0]), ["random"])


def _result(aup: dict[str, float], aur: dict[str, float]) -> TimeSeriesResult:
    curves = {c: {m: [aup[m] / 0.8] * 9 if "precision" in c else [aur[m] / 0.8] * 9
                  for m in aup} for c in ("precision", "recall", "time_precision",
                                          "time_recall", "feature_precision", "feature_recall")}
    return TimeSeriesResult(list(MASS_LEVELS), curves, [0.0, 1.0],
                            {m: [1.0, 0.5] for m in aup}, 10)


def test_difference_from_random_averages_over_results() -> None:
    first = _result({"grad": 0.4, "random": 0.2}, {"grad": 0.3, "random": 0.3})
    second = _result({"grad": 0.1, "random": 0.2}, {"grad": 0.5, "random": 0.1})
    diff = difference_from_random([first, second])
    assert diff == {"grad": {"aup": pytest.approx(0.05), "aur": pytest.approx(0.2)}}
    assert difference_from_random(first)["grad"]["aup"] == pytest.approx(0.2)
    with pytest.raises(SettingError, match="no 'random' method"):
        difference_from_random(_result({"grad": 0.4}, {"grad": 0.3}))


def test_result_round_trip_summary_and_figures(tmp_path) -> None:
    result = TimeSeriesMetrics(progress=False)(BoxSum(), _loader([1, 0, 1]),
                                               ["grad", "random"])
    again = result_from_dict(json.loads(json.dumps(result.to_dict())))
    assert json.dumps(again.to_dict()) == json.dumps(result.to_dict())  # NaN: undefined
    summary = result.summary()
    assert {"aup/grad", "aur/random", "aupr/grad", "masked_auc/random",
            "time_aup/grad", "feature_aur/random"} <= set(summary)
    columns, rows = result.table()
    assert columns[0] == "method" and [r[0] for r in rows] == ["grad", "random", "random_iid"]
    paths = result_figures({"regular": result, "SGT": again}, tmp_path / "ts")
    assert set(paths) == {"precision_recall", "masked_accuracy"}
    x, y, truth, _ = _loader([1, 0])[0]
    boxes = plot_box_saliency({"regular": x, "SGT": x.abs()}, truth, tmp_path / "boxes.png",
                              inputs=x)
    assert all(p.stat().st_size > 0 for p in [*paths.values(), boxes])


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"levels": [0.0, 0.5]}, "levels must lie strictly between 0 and 1"),
    ({"levels": [0.5, 0.2]}, "levels must be increasing"),
    ({"masked_levels": [0.0, 1.5]}, r"masked_levels must list fractions in \[0, 1\]"),
    ({"limit_batches": 0}, "limit_batches must be a positive integer"),
    ({"random_baseline": "shuffled"}, r"random_baseline must be one of \['permuted', 'iid'\]"),
    ({"random_key": 3}, "random_key must be a string or null, got 3"),
])
def test_bad_options_are_refused(kwargs, message) -> None:
    with pytest.raises(SettingError, match=message):
        TimeSeriesMetrics(**kwargs)


def test_batches_without_the_truth_are_refused() -> None:
    x, y, _, _ = _loader([1])[0]
    with pytest.raises(SettingError, match=r"need batches \(x, y, truth, background\)"):
        TimeSeriesMetrics(progress=False)(BoxSum(), [(x, y)], ["grad"])
