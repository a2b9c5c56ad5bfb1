"""The synthetic time-series benchmark: layouts, processes, scaling, seeds, cache, DataModule."""

from __future__ import annotations

import math

import pytest
import torch

import sgt.data.timeseries_synth as synth
from sgt.data import TimeSeriesDataModule
from sgt.data.timeseries_synth import (
    LAYOUTS,
    PROCESSES,
    SyntheticSpec,
    background,
    box_mask,
    cached_dataset,
    generate,
    irregular_times,
    sample_boxes,
)
from sgt.errors import SettingError

SMALL = {"num_train": 200, "num_test": 40, "time_steps": 20, "num_features": 20}

# docs/paper.md §5's table at T = F = 50: (h, w, fixed (t0, f0) or None)
TABLE = {
    "Middle": (30, 30, (10, 10)),
    "SmallMiddle": (14, 14, (18, 18)),
    "Moving_Middle": (30, 30, None),
    "Moving_SmallMiddle": (15, 15, None),
    "RareTime": (6, 40, (22, 5)),
    "Moving_RareTime": (6, 40, None),
    "RareFeature": (40, 6, (5, 22)),
    "Moving_RareFeature": (40, 6, None),
}


def _boxes(layout: str, n: int = 400, size: int = 50) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(2, (n,), generator=g)
    return labels, sample_boxes(LAYOUTS[layout], labels, size, size, g)


@pytest.mark.parametrize("layout", list(TABLE))
def test_box_sizes_and_places_follow_the_table(layout: str) -> None:
    h, w, start = TABLE[layout]
    _, boxes = _boxes(layout)
    t0, t1, f0, f1 = boxes.unbind(1)
    assert torch.equal(t1 - t0, torch.full_like(t0, h))
    assert torch.equal(f1 - f0, torch.full_like(f0, w))
    if start is not None:
        assert set(t0.tolist()) == {start[0]} and set(f0.tolist()) == {start[1]}
    else:  # numpy randint(50 - h): every start in {0, …, 50 - h - 1} occurs, none beyond
        assert set(t0.tolist()) == set(range(50 - h))
        assert set(f0.tolist()) == set(range(50 - w))


@pytest.mark.parametrize(("layout", "class_axis"), [("PositionalTime", 2),
                                                    ("PositionalFeature", 0)])
def test_positional_layouts_put_the_box_where_the_label_says(layout: str,
                                                             class_axis: int) -> None:
    labels, boxes = _boxes(layout)
    class_start, free_start = boxes[:, class_axis], boxes[:, 2 - class_axis]
    assert torch.equal(class_start, torch.where(labels == 1, 1, 29))
    assert set(free_start.tolist()) == set(range(30))
    assert torch.equal(boxes[:, 1] - boxes[:, 0], torch.full((400,), 20))
    assert torch.equal(boxes[:, 3] - boxes[:, 2], torch.full((400,), 20))


def test_layouts_scale_with_the_series_size() -> None:
    _, boxes = _boxes("Middle", n=4, size=20)  # 30 × 30 at (10, 10) of 50 -> 12 × 12 at (4, 4)
    assert boxes[0].tolist() == [4, 16, 4, 16]
    labels, boxes = _boxes("PositionalTime", size=10)  # w = 4: class 1 at 1, class 0 at 5
    assert torch.equal(boxes[:, 2], torch.where(labels == 1, 1, 5))


def test_box_mask_marks_exactly_the_box() -> None:
    mask = box_mask(torch.tensor([[1, 3, 0, 2]]), 4, 3)
    assert mask[0].int().tolist() == [[0, 0, 0], [1, 1, 0], [1, 1, 0], [0, 0, 0]]


def test_shapes_scaling_and_class_balance() -> None:
    data = generate(SyntheticSpec("Moving_Middle", "Gaussian", **{**SMALL, "num_train": 400}))
    assert data.train.x.shape == (400, 20, 20) and data.train.x.dtype == torch.float32
    assert data.test.x.shape == (40, 20, 20) and data.background.shape == (20, 20)
    assert data.train.boxes.shape == (400, 4) and data.test.truth().shape == (40, 20, 20)
    assert set(data.train.y.tolist()) == {0, 1}
    assert 0.42 < data.train.y.float().mean() < 0.58  # a fair coin per sample
    # min-max per cell over the training split: every cell spans exactly [0, 1] there
    assert torch.allclose(data.train.x.amin(0), torch.zeros(20, 20))
    assert torch.allclose(data.train.x.amax(0), torch.ones(20, 20))
    assert not torch.equal(data.test.x.amin(0), torch.zeros(20, 20))  # test is not refit


@pytest.mark.parametrize("process", PROCESSES.names())
def test_the_box_shifts_with_the_class_and_nothing_else_does(process: str) -> None:
    data = generate(SyntheticSpec("Middle", process, **SMALL))
    x, y, truth = data.train.x, data.train.y, data.train.truth()
    inside = (x * truth).sum((1, 2)) / truth.sum((1, 2))  # (N,) mean of the box cells
    outside = (x * ~truth).sum((1, 2)) / (~truth).sum((1, 2))
    assert inside[y == 1].mean() - inside[y == 0].mean() > 0.1
    assert abs(outside[y == 1].mean() - outside[y == 0].mean()) < 0.03


def test_positional_boxes_are_raised_for_both_classes() -> None:
    data = generate(SyntheticSpec("PositionalFeature", "Gaussian", **SMALL))
    x, y, truth = data.train.x, data.train.y, data.train.truth()
    lift = (x * truth).sum((1, 2)) / truth.sum((1, 2)) - (x * ~truth).sum((1, 2)) / (
        ~truth).sum((1, 2))
    assert lift[y == 0].mean() > 0.1 and lift[y == 1].mean() > 0.1


def test_same_seed_same_tensors_other_seed_other_tensors() -> None:
    spec = SyntheticSpec("Moving_RareTime", "CAR", **SMALL, seed=3)
    a, b = generate(spec), generate(spec)
    assert all(torch.equal(s, t) for s, t in zip(a.tensors(), b.tensors(), strict=True))
    c = generate(SyntheticSpec("Moving_RareTime", "CAR", **SMALL, seed=4))
    assert not torch.equal(a.train.x, c.train.x) and not torch.equal(a.train.boxes, c.train.boxes)
    assert not torch.equal(a.background, c.background)


def test_cache_round_trip_gives_identical_tensors(tmp_path, monkeypatch) -> None:
    spec = SyntheticSpec("RareFeature", "GaussianProcess", **SMALL)
    first = cached_dataset(spec, tmp_path)
    files = list(tmp_path.glob("timeseries-RareFeature_GaussianProcess-*.pt"))
    assert len(files) == 1

    def no_generation(spec: SyntheticSpec) -> None:
        raise AssertionError("the cached dataset was generated again")

    monkeypatch.setattr(synth, "generate", no_generation)
    again = cached_dataset(spec, tmp_path)
    fresh = synth.SyntheticDataset.from_tensors(generate(spec).tensors())  # the real one
    for s, t, u in zip(first.tensors(), again.tensors(), fresh.tensors(), strict=True):
        assert torch.equal(s, t) and torch.equal(s, u)


# -- each process has its stated character ----------------------------------------------


def _signal(process: str, n: int = 200, steps: int = 50, features: int = 10,
            seed: int = 0) -> torch.Tensor:
    """The noiseless signal, and the same generator's time stamps drawn first."""
    return PROCESSES.get(process).signal(n, steps, features, torch.Generator().manual_seed(seed))


def _times(n: int = 200, steps: int = 50, seed: int = 0) -> torch.Tensor:
    return irregular_times(n, steps, torch.Generator().manual_seed(seed))


def test_irregular_grid_is_sorted_jittered_and_per_sample() -> None:
    t = _times()
    assert t.shape == (200, 50)
    assert bool((t.diff(dim=1) >= 0).all())
    assert not torch.equal(t[0], t[1])
    assert float(t.min()) > -1.5 and float(t.max()) < 21.5  # [0, 20] plus 0.2-std jitter
    assert 0.15 < float(t.diff(dim=1).mean()) < 0.45  # 50 of 100 points on [0, 20]


def test_gaussian_background_is_standard_normal() -> None:
    x = background("Gaussian", 200, 50, 10, torch.Generator().manual_seed(0))
    assert abs(float(x.mean())) < 0.02 and abs(float(x.std()) - 1.0) < 0.02


def test_harmonic_is_a_sine_of_frequency_2_at_the_sample_times() -> None:
    t = _times()
    assert torch.allclose(_signal("Harmonic"), torch.sin(4 * math.pi * t)[:, :, None].expand(
        200, 50, 10))
    noisy = background("Harmonic", 200, 50, 1, torch.Generator().manual_seed(0))[:, :, 0]
    frequencies = torch.arange(1, 9, dtype=torch.float64) / 2  # 0.5, 1, …, 4
    # periodogram at each sample's own time stamps, averaged over samples
    phase = 2 * math.pi * frequencies[:, None, None] * t[None]  # (8, N, T)
    power = ((noisy * phase.cos()).sum(2) ** 2 + (noisy * phase.sin()).sum(2) ** 2).mean(1)
    assert frequencies[power.argmax()] == 2.0


def test_gaussian_process_is_smooth_with_the_matern_covariance() -> None:
    x, t = _signal("GaussianProcess"), _times()
    assert abs(float(x.var()) - 1.0) < 0.1
    r = math.sqrt(3) * t.diff(dim=1)  # (N, T-1) neighbour gaps
    expected = 2 * (1 - (1 + r) * torch.exp(-r))  # E[(x_{i+1} - x_i)^2] for Matern 3/2
    observed = x.diff(dim=1).pow(2).mean(2)  # (N, T-1) over features
    assert abs(float(observed.mean() / expected.mean()) - 1) < 0.1
    assert float(observed.mean()) < 0.5  # white noise of the same variance would give 2


def test_pseudo_periodic_follows_sin_2t_on_average() -> None:
    x, t = _signal("PseudoPeriodic"), _times()
    wave = torch.sin(2 * t)[:, :, None].expand_as(x)
    slope = float((x * wave).sum() / (wave * wave).sum())  # amplitude ~ N(1, 0.5²)
    assert 0.95 < slope < 1.03


def test_auto_regressive_has_lag_one_correlation_0_9_and_ignores_time() -> None:
    x = _signal("AutoRegressive")
    late = x[:, 20:]  # past the start at 0
    phi = float((late[:, 1:] * late[:, :-1]).sum() / (late[:, :-1] ** 2).sum())
    assert abs(phi - 0.9) < 0.02
    innovations = x[:, 1:] - 0.9 * x[:, :-1]
    assert abs(float(innovations.std()) - 0.5) < 0.02
    assert abs(float(x[:, 0].std()) - 0.5) < 0.05  # x_0 = 0.9 · 0 + ε


def test_car_decays_with_the_time_gaps() -> None:
    x, t = _signal("CAR"), _times()
    assert torch.equal(x[:, 0], torch.full((200, 10), 0.01, dtype=torch.float64))
    decay = (0.9 ** t.diff(dim=1))[:, :, None]  # φ^Δt
    scaled = (x[:, 1:] - decay * x[:, :-1]) / (0.01 * (1 - decay).sqrt())
    assert abs(float(scaled.mean())) < 0.02 and abs(float(scaled.std()) - 1) < 0.02


def test_narma_is_one_fixed_signal_for_every_feature_sample_and_seed() -> None:
    a, b = _signal("NARMA", seed=0), _signal("NARMA", seed=1)
    assert torch.equal(a, b) and torch.equal(a, a[:1, :, :1].expand_as(a))
    u = 0.5 * torch.rand(60, dtype=torch.float64, generator=torch.Generator().manual_seed(42))
    # y(10) from zeros: a2 · u(0) · u(9) + a3; y(11) = a0 y + a1 y · y + a2 u(1) u(10) + a3
    y10 = 1.5 * u[0] * u[9] + 0.1
    assert float(a[0, 0, 0]) == pytest.approx(float(y10))
    assert float(a[0, 1, 0]) == pytest.approx(float(0.3 * y10 + 0.05 * y10 ** 2
                                                     + 1.5 * u[1] * u[10] + 0.1))
    assert float(a.min()) >= 0.1 and float(a.max()) < 1.0


# -- DataModule -------------------------------------------------------------------------


def test_datamodule_batches_carry_truth_and_background(tmp_path) -> None:
    dm = TimeSeriesDataModule("Moving_SmallMiddle", "Harmonic", **SMALL, val_size=20,
                              batch_size=16, eval_batch_size=32, cache_dir=tmp_path)
    dm.setup()
    assert dm.name == "Moving_SmallMiddle_Harmonic" and dm.modality == "timeseries"
    assert dm.model_kwargs() == {"num_classes": 2, "num_features": 20, "time_steps": 20}
    assert len(dm.splits["train"][1]) == 180 and len(dm.splits["val"][1]) == 20
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (16, 20, 20) and y.shape == (16,)
    x, y, truth, bg = next(iter(dm.test_dataloader()))
    assert x.shape == truth.shape == bg.shape == (32, 20, 20) and truth.dtype == torch.bool
    assert torch.equal(truth, dm.dataset.test.truth()[:32])
    assert torch.equal(bg, dm.dataset.background.expand(32, 20, 20))


@pytest.mark.parametrize(("kwargs", "allowed"), [
    ({"layout": "Centre"}, "PositionalFeature"),
    ({"process": "Box"}, "GaussianProcess"),
])
def test_bad_names_give_one_line_listing_the_allowed_ones(kwargs, allowed) -> None:
    with pytest.raises(SettingError) as err:
        TimeSeriesDataModule(**kwargs)
    message = str(err.value)
    key = next(iter(kwargs))
    assert f"dataset.{key} must be one of" in message and allowed in message
    assert repr(kwargs[key]) in message and "\n" not in message


def test_too_small_series_are_refused() -> None:
    with pytest.raises(SettingError, match=r"dataset.time_steps must be an integer >= 10"):
        SyntheticSpec(time_steps=8)
