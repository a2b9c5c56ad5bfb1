"""ROAD: the noisy linear imputation against the reference's linear system, and the MoRF/LeRF
evaluation on a model whose answer is known (only three pixels decide the class)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image as mpimg
import pytest
import torch
from torch import Tensor, nn

import sgt
from sgt.errors import SettingError
from sgt.evaluation import (
    LEVELS,
    AccuracyDrop,
    Road,
    RoadResult,
    area_under_curve,
    result_from_dict,
)
from sgt.evaluation.road import reference_scores
from sgt.features import ImageModality
from sgt.imputation import NoisyLinearFill, linear_imputation
from sgt.masking import get_fill, mask_features
from sgt.plots import plot_road, result_figures
from tests.test_accuracy_drop import INFORMATIVE, ThreePixels, _data

# The reference's neighbour weights, (row offset, column offset) -> weight
# (``neighbors_weights``, docs/paper.md §3(f)).
NEIGHBOUR_WEIGHTS = {(1, 1): 1 / 12, (0, 1): 1 / 6, (-1, 1): 1 / 12, (1, -1): 1 / 12,
                     (0, -1): 1 / 6, (-1, -1): 1 / 12, (1, 0): 1 / 6, (-1, 0): 1 / 6}


def reference_imputation(image: Tensor, missing: Tensor) -> Tensor:
    """One image ``(C, H, W)``, ``missing (H, W)``: the reference's system, built as its
    ``setup_sparse_system`` does (one unknown per missing pixel; a kept neighbour goes to
    the right-hand side, an out-of-image one lowers the diagonal), solved directly."""
    channels, height, width = image.shape
    flat, miss = image.reshape(channels, -1).double(), missing.flatten()
    unknowns = miss.nonzero().flatten().tolist()
    variable = {pixel: i for i, pixel in enumerate(unknowns)}
    a = torch.zeros(len(unknowns), len(unknowns), dtype=torch.float64)
    b = torch.zeros(len(unknowns), channels, dtype=torch.float64)
    for i, pixel in enumerate(unknowns):
        row, col = divmod(pixel, width)
        diagonal = 1.0
        for (dr, dc), w in NEIGHBOUR_WEIGHTS.items():
            r, c = row + dr, col + dc
            if not (0 <= r < height and 0 <= c < width):
                diagonal -= w
            elif miss[r * width + c]:
                a[i, variable[r * width + c]] = w
            else:
                b[i] -= w * flat[:, r * width + c]
        a[i, i] = -diagonal
    out = flat.clone()
    out[:, unknowns] = torch.linalg.solve(a, b).T
    return out.view(channels, height, width)


def _impute(images: Tensor, missing: Tensor, generator: torch.Generator | None = None,
            **fill_args) -> Tensor:
    """The registered fill on images ``(B, C, H, W)`` and ``missing (B, H, W)``."""
    features = ImageModality().to_features(images)
    values = get_fill("noisy_linear", fill_args)(
        features, selected=missing.flatten(1), valid=None, generator=generator,
        grid=tuple(images.shape[2:]))
    return ImageModality().from_features(values, images)


@pytest.mark.parametrize(("shape", "removed"), [
    ((3, 5, 5), 0.3), ((3, 4, 7), 0.7), ((2, 6, 6), 0.95), ((1, 1, 8), 0.6), ((3, 7, 3), 0.5)])
def test_batched_imputation_equals_the_reference_system(shape: tuple, removed: float) -> None:
    g = torch.Generator().manual_seed(0)
    images = torch.randn(4, *shape, generator=g, dtype=torch.float64)
    missing = torch.rand(4, *shape[1:], generator=g) < removed
    missing[:, 0, 0] = False  # at least one kept pixel: the reference's system is regular
    expected = torch.stack([reference_imputation(i, m) for i, m in zip(images, missing,
                                                                        strict=True)])
    assert torch.allclose(_impute(images, missing, noise=0.0, tol=1e-13), expected,
                          rtol=0, atol=1e-11)
    # the default tolerance is far below a float32 pixel's resolution
    assert torch.allclose(_impute(images, missing, noise=0.0), expected, rtol=0, atol=1e-6)


def test_one_removed_pixel_is_the_weighted_mean_of_its_neighbours() -> None:
    image = torch.tensor([[0.0, 0.0, 12.0], [0.0, 99.0, 0.0], [0.0, 6.0, 0.0]])
    missing = torch.zeros(3, 3, dtype=torch.bool)
    missing[1, 1] = True
    out = _impute(image[None, None], missing[None], noise=0.0)[0, 0]
    assert out[1, 1].item() == pytest.approx(12 / 12 + 6 / 6)  # a diagonal 1/12, a side 1/6
    assert torch.equal(out[~missing], image[~missing])


def test_constant_image_stays_constant_whatever_is_removed() -> None:
    g = torch.Generator().manual_seed(1)
    images = torch.full((3, 2, 8, 8), -0.42)
    missing = torch.rand(3, 8, 8, generator=g) < 0.8
    missing[:, 3, 3] = False
    assert torch.allclose(_impute(images, missing, noise=0.0), images, atol=1e-6)


def test_plane_is_reproduced_inside_but_not_at_the_border() -> None:
    """Symmetric weights average a plane back to itself where all eight neighbours exist; at
    the border only the in-image ones count, which biases a ramp."""
    rows, cols = torch.meshgrid(torch.arange(9.0), torch.arange(9.0), indexing="ij")
    plane = (0.5 * rows - 0.25 * cols + 3)[None, None].double()
    g = torch.Generator().manual_seed(2)
    missing = torch.zeros(4, 9, 9, dtype=torch.bool)
    missing[:, 1:-1, 1:-1] = torch.rand(4, 7, 7, generator=g) < 0.7
    assert torch.allclose(_impute(plane.expand(4, 1, 9, 9), missing, noise=0.0, tol=1e-13),
                          plane.expand(4, 1, 9, 9), rtol=0, atol=1e-9)
    ramp = cols[None, None]  # value = column index
    corner = torch.zeros(1, 9, 9, dtype=torch.bool)
    corner[0, 0, 0] = True
    # in-image neighbours of (0, 0): (0, 1) = 1 and (1, 0) = 0 at 1/6, (1, 1) = 1 at 1/12
    assert _impute(ramp, corner, noise=0.0)[0, 0, 0, 0].item() == pytest.approx(
        (1 / 6 + 1 / 12) / (1 / 6 + 1 / 6 + 1 / 12))


def test_noise_has_the_configured_std_comes_from_the_generator_and_spares_kept_pixels() -> None:
    g = torch.Generator().manual_seed(3)
    images = torch.randn(8, 3, 16, 16, generator=g)
    missing = torch.rand(8, 16, 16, generator=g) < 0.5
    clean = _impute(images, missing, noise=0.0)

    def noisy(seed: int) -> Tensor:
        return _impute(images, missing, noise=0.2,
                       generator=torch.Generator().manual_seed(seed))

    first = noisy(0)
    removed = missing[:, None].expand_as(images)
    assert torch.equal(first[~removed], images[~removed])  # kept pixels untouched, bit for bit
    deviation = (first - clean)[removed]  # 3 channels × ~1000 removed pixels
    assert deviation.std().item() == pytest.approx(0.2, rel=0.05)
    assert abs(deviation.mean().item()) < 0.02
    assert torch.equal(noisy(0), first)
    assert not torch.equal(noisy(1), first)


def test_fill_works_through_mask_features_on_the_most_salient_pixels() -> None:
    images = torch.randn(2, 3, 6, 6)
    features = ImageModality().to_features(images)
    saliency = torch.rand(2, 36)
    masked, selected = mask_features(features, saliency, 0.5, get_fill("noisy_linear"),
                                     lowest=False, generator=torch.Generator(), grid=(6, 6))
    assert selected.sum(1).tolist() == [18, 18]
    assert torch.equal(masked[~selected], features[~selected])
    assert not torch.equal(masked[selected], features[selected])


def test_import_sgt_registers_the_fill() -> None:
    assert "noisy_linear" in sgt.FILLS
    assert isinstance(get_fill("noisy_linear", {"noise": 0.05}), NoisyLinearFill)


def test_too_few_iterations_is_an_error_not_a_silent_guess() -> None:
    g = torch.Generator().manual_seed(4)
    images = torch.randn(2, 3, 12, 12, generator=g, dtype=torch.float64)
    missing = torch.rand(2, 12, 12, generator=g) < 0.5  # scattered: conjugate gradients
    with pytest.raises(RuntimeError, match="did not reach tol=1e-08 in 2 iterations"):
        linear_imputation(images, missing, max_iter=2)


@pytest.mark.parametrize(("args", "match"), [
    ({"noise": -0.1}, r"noise must be a finite standard deviation >= 0, got -0.1"),
    ({"noise": True}, r"noise must be a finite standard deviation >= 0, got True"),
    ({"noise": float("nan")}, r"noise must be a finite standard deviation >= 0, got nan"),
    ({"tol": 0}, r"tol must be a number in \(0, 1\), got 0"),
    ({"tol": 1.0}, r"tol must be a number in \(0, 1\), got 1.0"),
    ({"max_iter": 0}, r"max_iter must be a positive integer or null, got 0"),
    ({"sigma": 0.1}, r"takes no argument 'sigma'"),
])
def test_bad_fill_settings_name_the_value(args: dict, match: str) -> None:
    with pytest.raises(SettingError, match=match):
        get_fill("noisy_linear", args)


def test_fill_refuses_features_without_a_2d_grid() -> None:
    fill = get_fill("noisy_linear")
    features = torch.randn(2, 12, 4)
    selected = torch.zeros(2, 12, dtype=torch.bool)
    with pytest.raises(SettingError, match=r"2-D grid of the 12 features .* got grid \(12,\)"):
        fill(features, selected=selected, valid=None, generator=None, grid=(12,))
    with pytest.raises(SettingError, match="cannot skip padding"):
        fill(features, selected=selected, valid=torch.ones(2, 12, dtype=torch.bool),
             generator=None, grid=(3, 4))


def test_morf_by_gradient_falls_lerf_holds_and_random_has_no_gap() -> None:
    loader = _data(n=960)
    result = Road(progress=False)(ThreePixels(), loader, ["grad"])
    assert list(result.morf) == ["grad", "random"]  # the random baseline is added
    morf, lerf = result.morf["grad"], result.lerf["grad"]
    # MoRF: 0 and int(1.6) = 1 of 3 informative pixels removed, then all three: the imputed
    # ones are averages of label-free noise, so the answer is a coin flip
    assert morf[:2] == [1.0, 1.0]
    assert all(0.4 < a < 0.6 for a in morf[2:])
    # LeRF: up to 80 % only ignored pixels go; at 90 % the two kept informative pixels (both
    # ±2) are the only known values, and a constant is imputed as itself
    assert lerf == [1.0] * len(LEVELS)
    assert result.gap["grad"] == pytest.approx(result.lerf_auc["grad"] - result.morf_auc["grad"])
    assert result.gap["grad"] > 0.3
    assert abs(result.gap["random"]) < 0.04  # same removal distribution in both orders
    assert result.num_samples == 960 and result.fill == "noisy_linear"


@pytest.mark.parametrize("order", ["morf", "lerf"])
def test_each_order_replaces_the_references_count_from_its_end(order: str) -> None:
    """MoRF at p removes the top ``int(p N)``; LeRF at p all but the top ``int((1 - p) N)``,
    the reference's LeRF at 1 - p (its 0.1 of 1000 pixels keeps 100, not 99)."""
    metric = Road(fill="constant", fill_args={"value": 99.0}, progress=False)
    n = 1000
    z = torch.randn(4, 3, 20, 50)
    ranks = torch.rand(4, n).argsort(1).argsort(1)  # a random ranking: place of each feature
    perturbed = metric.perturb(ImageModality(), z, metric.removed(ranks, None, order), None,
                               torch.Generator())
    assert perturbed.shape == (len(LEVELS), *z.shape)
    changed = (perturbed == 99.0).flatten(3)  # (levels, B, C, N)
    assert changed.all(2).eq(changed.any(2)).all()  # a pixel's channels go together
    for level, mask in zip(LEVELS, changed.any(2), strict=True):
        if order == "morf":
            count = int(n * level)
            assert mask.eq(ranks < count).all()
        else:
            kept = {0.0: 1000, 0.1: 900, 0.2: 800, 0.3: 700, 0.4: 600, 0.5: 500, 0.6: 400,
                    0.7: 300, 0.8: 200, 0.9: 100}[level]
            assert mask.eq(ranks >= kept).all()


def test_the_ranking_is_the_references_signed_channel_sum() -> None:
    """Pixel A's channels are (1, 1, 1), B's (−3, −3, −3): the signed sum ranks A first
    (3 > −9), |mean| ranks B first (3 > 1). The model reads pixel B only."""
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 2, (64,), generator=g)
    x = torch.randn(64, 3, 2, 2, generator=g)
    x[:, :, 0, 1] = torch.where(y == 0, 2.0, -2.0)[:, None]  # pixel B decides

    class PixelB(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = nn.Parameter(torch.ones(()))  # a device to explain on

        def forward(self, x: Tensor) -> Tensor:
            s = self.scale * x[:, :, 0, 1].sum(1)
            return torch.stack([s, -s], 1)

    def fixed(forward, z, target, valid, generator):
        a = torch.tensor([[1.0, -3.0, 0.1, 0.0]] * 3).view(1, 3, 2, 2)
        return a.expand_as(z)

    def accuracy_at_one_pixel(feature_score: str | None) -> float:
        kwargs = {} if feature_score is None else {"feature_score": feature_score}
        result = Road(levels=(0.25,), fill="constant", fill_args={"value": 0.0},
                      random_baseline=False, progress=False, **kwargs)(
            PixelB(), [(x, y)], {"fixed": fixed})
        return result.morf["fixed"][0]

    share_of_class_0 = float(y.eq(0).double().mean())
    assert accuracy_at_one_pixel(None) == 1.0  # A removed: B still decides
    assert accuracy_at_one_pixel("abs_mean") == pytest.approx(share_of_class_0)  # B removed
    drop = AccuracyDrop(levels=(0.25,), fill="constant", fill_args={"value": 0.0},
                        progress=False)(PixelB(), [(x, y)], {"fixed": fixed})
    assert drop.accuracy["fixed"][0] == pytest.approx(share_of_class_0)  # |mean| by default


def test_ranking_values_are_the_references_scaled_scores_plus_its_tie_field() -> None:
    g = torch.Generator().manual_seed(1)
    scores = torch.randn(3, 16, generator=g)
    keys = torch.randn(16, generator=g, dtype=torch.float64)
    expected = []
    for row in scores.tolist():  # normalize_map, then + 1e-4 · the field (float32 at the end)
        low, high = min(row), max(row)
        expected.append([(v - low) / (high - low + 1e-5) + 1e-4 * float(k)
                         for v, k in zip(row, keys.tolist(), strict=True)])
    assert reference_scores(scores, keys).flatten().tolist() == pytest.approx(
        [v for row in expected for v in row], abs=1e-6)
    assert reference_scores(scores, keys).dtype == torch.float32
    # a constant map ranks by the field alone: no band from the sort
    flat = reference_scores(torch.zeros(1, 16), keys)
    assert flat.argsort(descending=True).tolist() == [keys.argsort(descending=True).tolist()]


def test_noise_is_in_pixel_units_whatever_the_normalisation() -> None:
    features = torch.zeros(2000, 4, 2)  # 2000 images of 2 × 2 pixels, 2 channels
    selected = torch.zeros(2000, 4, dtype=torch.bool)
    selected[:, 1] = True
    fill = get_fill("noisy_linear", {"noise": 0.01, "input_std": [0.5, 0.25]})
    out = fill(features, selected=selected, valid=None, generator=torch.Generator(),
               grid=(2, 2))
    noise = out[:, 1]  # the imputed value of a zero image is 0: what remains is noise
    assert noise[:, 0].std().item() == pytest.approx(0.02, rel=0.05)  # 0.01 / 0.5
    assert noise[:, 1].std().item() == pytest.approx(0.04, rel=0.05)  # 0.01 / 0.25
    with pytest.raises(SettingError, match=r"input_std has 2 value\(s\) but the inputs have "
                                           r"3 channel\(s\)"):
        fill(torch.zeros(1, 4, 3), selected=selected[:1], valid=None, generator=None,
             grid=(2, 2))


def test_attributions_once_per_batch_for_both_orders_and_seeded() -> None:
    calls = []

    def counting(forward, z, target, valid, generator):
        calls.append(z.shape[0])
        return torch.rand(z.shape, generator=generator)

    run = Road(random_baseline=False, seed=5, progress=False)
    first = run(ThreePixels(), _data(), {"counting": counting})
    assert calls == [32, 32, 32]  # three batches: one attribution each, reused 2 × 10 times
    assert list(first.morf) == ["counting"]
    assert run(ThreePixels(), _data(), {"counting": counting}) == first


def test_limit_batches_eval_mode_and_mode_restored() -> None:
    model = ThreePixels().train()
    seen = []
    model.register_forward_pre_hook(lambda m, args: seen.append(m.training))
    result = Road(levels=(0.0,), limit_batches=2, progress=False)(model, _data(), ["grad"])
    assert result.num_samples == 64
    assert seen and not any(seen) and model.training


def test_a_failing_method_leaves_the_model_in_its_mode_and_the_error_unchanged() -> None:
    def failing(forward, z, target, valid, generator):
        raise ArithmeticError("attribution failed")

    for training in (True, False):
        model = ThreePixels().train(training)
        with pytest.raises(ArithmeticError, match="attribution failed"):
            Road(progress=False)(model, _data(), {"failing": failing})
        assert model.training is training


def test_empty_loader_is_an_error() -> None:
    with pytest.raises(ValueError, match="the loader yielded no batches"):
        Road(progress=False)(ThreePixels(), [], ["grad"])


def test_result_round_trips_tabulates_and_summarises() -> None:
    result = RoadResult([0.0, 0.5], {"grad": [1.0, 0.4]}, {"grad": [1.0, 0.8]},
                        {"grad": 0.35}, {"grad": 0.45}, 10, "noisy_linear")
    assert RoadResult.from_dict(result.to_dict()) == result
    assert (result.feature_score, result.tie_noise) == ("signed_sum", 1e-4)
    old = {k: v for k, v in result.to_dict().items() if k not in ("feature_score", "tie_noise")}
    earlier = RoadResult.from_dict(old)  # written before the reference's ranking
    assert (earlier.feature_score, earlier.tie_noise) == ("abs_mean", 0.0)
    assert result_from_dict(result.to_dict()) == result
    assert result.table() == (
        ["method", "order", "auc", "gap", "0", "0.5"],
        [["grad", "MoRF", 0.35, pytest.approx(0.1), 1.0, 0.4],
         ["grad", "LeRF", 0.45, pytest.approx(0.1), 1.0, 0.8]])
    assert result.summary() == {"morf_auc/grad": 0.35, "lerf_auc/grad": 0.45,
                                "gap/grad": pytest.approx(0.1)}
    assert area_under_curve([0.0, 0.5], [1.0, 0.8]) == pytest.approx(0.45)


def test_figure_has_both_orders_per_run(tmp_path: Path) -> None:
    levels = [0.0, 0.5]
    runs = {"regular": RoadResult(levels, {"grad": [1.0, 0.5], "random": [1.0, 0.7]},
                                  {"grad": [1.0, 0.9], "random": [1.0, 0.7]},
                                  {"grad": 0.375, "random": 0.425},
                                  {"grad": 0.475, "random": 0.425}, 10, "noisy_linear"),
            "SGT": RoadResult(levels, {"grad": [1.0, 0.3]}, {"grad": [1.0, 0.95]},
                              {"grad": 0.325}, {"grad": 0.4875}, 10, "noisy_linear")}
    path = plot_road(runs, tmp_path / "sub" / "road.png")
    image = mpimg.imread(path)
    assert image.ndim == 3 and image[..., :3].std() > 0.01
    assert result_figures(runs, tmp_path / "run") == {"curves": tmp_path / "run_curves.png"}


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"levels": (0.0, 1.0)}, r"each of levels must be a fraction in \[0, 1\), got 1.0"),
    ({"levels": ()}, "levels must list at least one fraction"),
    ({"fill": "nope"}, "unknown fill 'nope'"),
    ({"fill_args": {"noise": -1}}, "noise must be a finite standard deviation >= 0, got -1"),
    ({"output": "probability"}, "output must be one of"),
    ({"feature_score": "sum"}, "feature_score must be one of"),
    ({"tie_noise": -1}, "tie_noise must be a finite number >= 0, got -1"),
    ({"fill_args": {"input_std": [0.0]}}, "input_std must list one positive std per channel"),
    ({"limit_batches": 0}, "limit_batches must be a positive integer or null, got 0"),
    ({"random_baseline": "yes"}, "random_baseline must be true or false, got 'yes'"),
])
def test_bad_settings_name_the_value(kwargs: dict, match: str) -> None:
    with pytest.raises(SettingError, match=match):
        Road(**kwargs)


def test_no_methods_is_refused_before_any_work() -> None:
    with pytest.raises(SettingError, match="no attribution methods"):
        Road(progress=False)(ThreePixels(), _data(), [])


def test_informative_pixels_are_what_the_model_reads() -> None:
    """The premise of the ThreePixels expectations above."""
    x = torch.zeros(1, 1, 4, 4)
    x.view(-1)[INFORMATIVE] = torch.tensor([1.0, 2.0, 3.0])
    assert ThreePixels()(x).tolist() == [[6.0, -6.0]]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_the_gpu_the_imputation_matches_the_cpu_and_the_noise_is_seeded() -> None:
    g = torch.Generator().manual_seed(6)
    images = torch.randn(64, 3, 32, 32, generator=g)
    missing = torch.rand(64, 32, 32, generator=g) < 0.9
    cpu = _impute(images.double(), missing, noise=0.0, tol=1e-13)
    gpu = _impute(images.double().cuda(), missing.cuda(), noise=0.0, tol=1e-13)
    assert torch.allclose(gpu.cpu(), cpu, rtol=0, atol=1e-9)
    seeded = [_impute(images.cuda(), missing.cuda(),
                      generator=torch.Generator("cuda").manual_seed(0)) for _ in range(2)]
    assert torch.equal(*seeded)
    result = Road(levels=(0.0, 0.5), progress=False)(
        ThreePixels().cuda(), [(x.cuda(), y.cuda()) for x, y in _data()], ["grad"])
    assert result.morf["grad"][0] == result.lerf["grad"][0] == 1.0
