"""The evaluation configs compose to each benchmark's reference settings, and the settings
they leave to the run are filled from it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from experiments.runs.evaluation import make_evaluation, make_methods, run_settings
from sgt.data import MNISTDataModule, TimeSeriesDataModule
from sgt.models import TCN, MNISTNet
from tests.conftest import compose_config


def _eval(name: str, tmp_path: Path, *overrides: str):
    cfg = compose_config("evaluate.yaml", ["ckpt_path=x", f"eval={name}", *overrides], tmp_path)
    return cfg.eval


def test_road_ranks_and_imputes_as_the_reference_in_pixel_units(tmp_path: Path) -> None:
    cfg = _eval("road", tmp_path)
    road = make_evaluation(cfg, "logit", run_settings(MNISTDataModule(), MNISTNet()))
    assert (road.feature_score, road.tie_noise) == ("signed_sum", 1e-4)
    # the reference's 0.01 of a [0, 1] pixel, in MNIST's normalised units
    std = road.fill.noise_std(1, torch.zeros(1))
    assert std.tolist() == pytest.approx([0.01 / 0.3081])
    # without a run (the checks before any work), the noise stays in input units
    assert make_evaluation(cfg).fill.input_std is None


def test_accuracy_drop_keeps_the_sgt_codes_ranking(tmp_path: Path) -> None:
    drop = make_evaluation(_eval("accuracy_drop", tmp_path))
    assert drop.feature_score == "abs_mean"
    methods = make_methods(_eval("accuracy_drop", tmp_path))
    assert methods["smoothgrad"].nt_type == "smoothgrad_sq"  # as the SGT code


def test_the_time_series_benchmarks_settings(tmp_path: Path) -> None:
    cfg = _eval("timeseries", tmp_path)
    data = TimeSeriesDataModule("SmallMiddle", "NARMA")
    metric = make_evaluation(cfg, "logit", run_settings(data, TCN()))
    assert metric.output == "prob"  # the benchmark's networks end in a softmax
    assert metric.random_baseline == "permuted"
    assert metric.random_key == "SmallMiddle_NARMA/TCN"  # a draw per dataset and model
    assert make_methods(cfg)["smoothgrad"].nt_type == "smoothgrad"  # captum's default


def test_eraser_scores_whole_documents(tmp_path: Path) -> None:
    metric = make_evaluation(_eval("eraser", tmp_path))
    assert metric.bins_of == "document" and metric.bins == [0.01, 0.05, 0.1, 0.2, 0.5]


def test_a_setting_given_on_the_command_line_is_not_replaced(tmp_path: Path) -> None:
    cfg = _eval("road", tmp_path, "eval.metric.fill_args.input_std=[1.0]")
    road = make_evaluation(cfg, "logit", run_settings(MNISTDataModule(), MNISTNet()))
    assert road.fill.input_std == (1.0,)
    cfg = _eval("timeseries", tmp_path, "eval.metric.random_key=fixed")
    metric = make_evaluation(cfg, "logit", run_settings(TimeSeriesDataModule(), TCN()))
    assert metric.random_key == "fixed"
