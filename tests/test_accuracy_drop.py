"""Accuracy drop on a model whose answer is known: only three pixels decide the class."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from sgt.errors import SettingError
from sgt.evaluation import (
    LEVELS,
    AccuracyDrop,
    AccuracyDropResult,
    area_under_curve,
    measure,
)
from sgt.features import ImageModality
from sgt.saliency import ModalityForward, feature_ranks

INFORMATIVE = [5, 10, 13]  # of the 16 pixels of a 4 × 4 image; the top-left (0) is not one


class ThreePixels(nn.Module):
    """logits = (s, −s) with s = the sum of the informative pixels: class 0 iff s > 0."""

    def __init__(self) -> None:
        super().__init__()
        w = torch.zeros(16)
        w[INFORMATIVE] = 1.0
        self.w = nn.Parameter(w)

    def forward(self, x: Tensor) -> Tensor:
        s = x.flatten(1) @ self.w
        return torch.stack([s, -s], dim=1)


def _data(n: int = 96, flip: int = 0, seed: int = 0) -> list[tuple[Tensor, Tensor]]:
    """Noise everywhere, ±2 on the informative pixels; ``flip`` labels made wrong."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    x = torch.randn(n, 16, generator=g)
    x[:, INFORMATIVE] = torch.where(y == 0, 2.0, -2.0)[:, None]
    y[:flip] = 1 - y[:flip]
    x = x.view(n, 1, 4, 4)
    return [(x[i:i + 32], y[i:i + 32]) for i in range(0, n, 32)]


def test_removing_by_gradient_drops_accuracy_faster_than_random() -> None:
    loader = _data()
    result = AccuracyDrop(fill="constant", fill_args={"value": 0.0}, progress=False)(
        ThreePixels(), loader, ["grad", "random"])
    grad, random = result.accuracy["grad"], result.accuracy["random"]
    share_of_class_0 = float(torch.cat([y for _, y in loader]).eq(0).double().mean())
    assert grad[:2] == [1.0, 1.0]  # 0 and int(1.6) = 1 of 3 informative pixels removed
    # from 20 % (3 pixels) on every informative pixel is gone: s = 0, argmax picks class 0
    assert grad[2:] == pytest.approx([share_of_class_0] * 8)
    assert result.auc["grad"] < result.auc["random"]
    assert random[0] == 1.0 and random[-1] < random[1]


def test_level_zero_is_plain_accuracy() -> None:
    model, loader = ThreePixels(), _data(flip=20)
    plain = sum(int((model(x).argmax(1) == y).sum()) for x, y in loader) / 96
    result = AccuracyDrop(levels=(0.0, 0.5), progress=False)(
        model, loader, ["grad", "random", "integrated_gradients"])
    assert plain == pytest.approx(76 / 96)
    assert all(acc[0] == pytest.approx(plain) for acc in result.accuracy.values())
    assert result.num_samples == 96


@pytest.mark.parametrize("channels", [1, 3])
def test_each_level_replaces_exactly_the_stated_fraction_of_top_features(channels: int) -> None:
    """10 × 10 = 100 features: level p changes int(100 p) pixels, all channels, the top ones."""
    metric = AccuracyDrop(fill="constant", fill_args={"value": 99.0}, progress=False)
    z = torch.randn(4, channels, 10, 10)
    scores = torch.rand(4, 100)
    perturbed = metric.perturb(ImageModality(), z, feature_ranks(scores), None,
                               torch.Generator())
    assert perturbed.shape == (len(LEVELS), *z.shape)
    changed = (perturbed == 99.0).flatten(3)  # (levels, B, C, N)
    assert changed.all(2).eq(changed.any(2)).all()  # a pixel's channels go together
    for level, mask in zip(LEVELS, changed.any(2), strict=True):
        count = int(100 * level)
        assert mask.sum(1).tolist() == [count] * 4
        top = scores.topk(count, dim=1).indices if count else torch.empty(4, 0).long()
        assert mask.gather(1, top).all()


def test_a_constant_map_removes_scattered_pixels_not_rows() -> None:
    """Every score tied: the method's random keys decide, the same in every batch."""
    def constant(forward, z, target, valid, generator):
        return torch.ones_like(z)

    removed = []

    class Recording(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = nn.Parameter(torch.ones(()))  # a device to explain on

        def forward(self, x: Tensor) -> Tensor:
            removed.append((x == 99.0).flatten(1))
            return self.scale * torch.zeros(x.shape[0], 2)

    x = torch.randn(6, 1, 16, 16)
    AccuracyDrop(levels=(0.5,), fill="constant", fill_args={"value": 99.0},
                 random_baseline=False, progress=False)(
        Recording(), [(x[:3], torch.zeros(3).long()), (x[3:], torch.zeros(3).long())],
        {"constant": constant})
    masks = torch.cat(removed).view(-1, 16, 16)
    assert masks.sum((1, 2)).tolist() == [128] * 6
    assert all(torch.equal(m, masks[0]) for m in masks)
    assert int(masks[0].sum(1).min()) >= 2 and int(masks[0].sum(1).max()) <= 14


def test_attributions_are_computed_once_per_batch_and_method() -> None:
    calls = []

    def counting(forward, z, target, valid, generator):
        calls.append(z.shape[0])
        return torch.rand(z.shape, generator=generator)

    AccuracyDrop(progress=False)(ThreePixels(), _data(), {"counting": counting})
    assert calls == [32, 32, 32]  # three batches, ten levels each, one attribution per batch


def test_seeded_and_independent_of_the_other_methods() -> None:
    loader = _data()
    run = AccuracyDrop(seed=7, fill="uniform", progress=False)
    alone = run(ThreePixels(), loader, ["random"])
    with_grad = run(ThreePixels(), loader, ["grad", "random"])
    assert alone.accuracy["random"] == with_grad.accuracy["random"]
    other = AccuracyDrop(seed=8, fill="uniform", progress=False)(ThreePixels(), loader, ["random"])
    assert other.accuracy["random"] != alone.accuracy["random"]


def test_limit_batches_eval_mode_and_mode_restored() -> None:
    model = ThreePixels().train()
    seen = []
    model.register_forward_pre_hook(lambda m, args: seen.append(m.training))
    result = AccuracyDrop(levels=(0.0,), limit_batches=2, progress=False)(
        model, _data(), ["grad"])
    assert result.num_samples == 64
    assert seen and not any(seen) and model.training


def test_result_round_trips_and_tabulates() -> None:
    result = AccuracyDropResult([0.0, 0.5], {"grad": [1.0, 0.4]}, {"grad": 0.35}, 10)
    assert AccuracyDropResult.from_dict(result.to_dict()) == result
    assert result.table() == (["method", "auc", "relative_auc", "0", "0.5"],
                              [["grad", 0.35, None, 1.0, 0.4]])
    assert result.summary() == {"auc/grad": 0.35}  # no random: no relative area
    assert area_under_curve([0.0, 0.5], [1.0, 0.4]) == pytest.approx(0.35)


def test_each_method_is_also_scored_relative_to_random() -> None:
    """The area between the random curve and the method's: the model's reaction to any
    removal taken out. Random is added unless asked not to; its own relative area is 0."""
    result = AccuracyDrop(fill="constant", fill_args={"value": 0.0}, progress=False)(
        ThreePixels(), _data(), ["grad"])
    assert list(result.accuracy) == ["grad", "random"]
    relative = result.relative_auc
    assert relative["random"] == 0.0
    assert relative["grad"] == pytest.approx(result.auc["random"] - result.auc["grad"])
    assert relative["grad"] > 0.3  # grad removes the three pixels that decide, random not
    assert result.summary()["relative_auc/grad"] == relative["grad"]
    assert measure("relative_auc/grad").higher_is_better
    assert not measure("auc/grad").higher_is_better
    assert not measure("accuracy_drop/auc/grad").higher_is_better  # under its eval's name
    assert measure("loss") is None  # not an evaluation's


def test_every_evaluation_is_the_template_with_its_verb() -> None:
    from sgt.evaluation import (
        CascadingRandomization,
        EraserMetrics,
        Evaluation,
        Road,
        TimeSeriesMetrics,
    )

    for cls in (AccuracyDrop, Road, CascadingRandomization, TimeSeriesMetrics, EraserMetrics):
        assert issubclass(cls, Evaluation) and "__call__" not in vars(cls)
        assert "evaluate_batch" in vars(cls)
    with pytest.raises(SettingError, match="ERASER metrics applies to text data, not image"):
        EraserMetrics(progress=False)(ThreePixels(), _data(), ["grad"], ImageModality())


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"levels": (0.0, 1.0)}, r"each of levels must be a fraction in \[0, 1\)"),
    ({"levels": ()}, "levels must list at least one fraction"),
    ({"fill": "nope"}, "unknown fill 'nope'"),
    ({"output": "probability"}, "output must be one of"),
    ({"limit_batches": 0}, "limit_batches must be a positive integer"),
    ({"limit_batches": True}, "limit_batches must be a positive integer"),
])
def test_bad_settings_name_the_value(kwargs: dict, match: str) -> None:
    with pytest.raises(SettingError, match=match):
        AccuracyDrop(**kwargs)


def test_no_methods_is_refused_before_any_work() -> None:
    with pytest.raises(SettingError, match="no attribution methods"):
        AccuracyDrop(progress=False)(ThreePixels(), _data(), [])


def test_explains_log_prob_when_asked() -> None:
    forward = ModalityForward(ThreePixels(), ImageModality(), "log_prob")
    x = _data()[0][0]
    assert torch.allclose(forward(x).exp().sum(1), torch.ones(32))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_every_method_on_the_gpu_is_seeded_and_leaves_the_global_rng() -> None:
    from sgt.models import MNISTNet
    from sgt.saliency import METHODS

    torch.manual_seed(0)
    net = MNISTNet().cuda()
    g = torch.Generator().manual_seed(0)
    loader = [(torch.randn(256, 1, 28, 28, generator=g), torch.randint(0, 10, (256,), generator=g))
              for _ in range(2)]
    cuda_state = torch.cuda.get_rng_state()
    run = AccuracyDrop(seed=3, fill="uniform", progress=False)
    first, second = (run(net, loader, METHODS.names()) for _ in range(2))
    assert torch.equal(torch.cuda.get_rng_state(), cuda_state)
    with torch.no_grad():
        plain = sum(int((net.eval()(x.cuda()).argmax(1).cpu() == y).sum()) for x, y in loader)
    plain /= 512
    for name in METHODS.names():
        assert first.accuracy[name][0] == pytest.approx(plain)
        # one flipped prediction is 1/512: GPU kernels may reorder float sums
        assert first.accuracy[name] == pytest.approx(second.accuracy[name], abs=2 / 512)
