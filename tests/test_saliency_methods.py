"""Attribution methods: every registered one runs batched on the paper's CNN; seeds repeat."""

from __future__ import annotations

import captum.attr as ca
import numpy as np
import pytest
import torch
from torch import nn

from sgt.errors import SettingError
from sgt.features import ImageModality
from sgt.models import MNISTNet
from sgt.saliency import (
    METHODS,
    Explainer,
    ModalityForward,
    get_method,
    global_rng_from,
    method_generator,
)


def explain(method, forward, x, y, seed=0, name="m"):
    """One method's ``(z, attribution)`` through the Explainer, with a fresh seeded stream."""
    return Explainer(forward, {name: method}, seed).attribute(name, x, y)


@pytest.fixture(scope="module")
def cnn() -> ModalityForward:
    torch.manual_seed(0)
    return ModalityForward(MNISTNet().eval(), ImageModality(), "log_prob")


def _batch(n: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g)


@pytest.mark.parametrize("name", METHODS.names())
def test_method_is_batched_shaped_and_seeded(cnn: ModalityForward, name: str) -> None:
    x, y = _batch()
    options = {"n_steps": 8} if name == "integrated_gradients" else {}
    method = get_method(name, **options)
    z, a = explain(method, cnn, x, y)
    _, again = explain(method, cnn, x, y)
    assert a.shape == x.shape and torch.isfinite(a).all()
    assert torch.equal(a, again)  # same seed, same baselines and noise
    assert torch.equal(z, x) and not z.requires_grad
    assert all(p.grad is None for p in cnn.parameters())  # attributions leave params alone


def test_batched_grad_equals_per_sample_grad(cnn: ModalityForward) -> None:
    x, y = _batch()
    batched = explain(get_method("grad"), cnn, x, y)[1]
    single = [explain(get_method("grad"), cnn, x[i:i + 1], y[i:i + 1])[1] for i in range(3)]
    assert torch.allclose(batched, torch.cat(single), atol=1e-6)


@pytest.mark.filterwarnings("ignore:Setting forward, backward hooks")
def test_deeplift_is_captum_deeplift_on_the_mnist_cnn(cnn: ModalityForward) -> None:
    """The CNN's separate ReLU modules let captum's rescale rule hook every one of them."""
    x, y = _batch()
    baseline = torch.rand(x.shape, generator=method_generator(0, "deeplift", x.device))
    _, a = explain(get_method("deeplift"), cnn, x, y, name="deeplift")
    expected = ca.DeepLift(cnn).attribute(x.clone().requires_grad_(), baseline, target=y)
    assert torch.allclose(a, expected, atol=1e-6)


def test_deeplift_sums_to_the_output_difference() -> None:
    """Completeness: Σ attribution = f_y(x) − f_y(baseline) (exact for ReLU nets; captum's
    max-pool rule, as in the MNIST CNN, only approximates it)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 26 * 26, 10))
    forward = ModalityForward(net.eval(), ImageModality())
    x, y = _batch()
    baseline = torch.rand(x.shape, generator=method_generator(0, "deeplift", x.device))
    _, a = explain(get_method("deeplift"), forward, x, y, name="deeplift")
    with torch.no_grad():
        gap = (forward(x) - forward(baseline)).gather(1, y[:, None]).squeeze(1)
    assert torch.allclose(a.flatten(1).sum(1), gap, atol=1e-4)


def test_random_ranking_repeats_under_a_seed_and_changes_with_it(cnn: ModalityForward) -> None:
    x, y = _batch()
    method = get_method("random")
    first = explain(method, cnn, x, y, seed=3)[1]
    same = explain(method, cnn, x, y, seed=3)[1]
    other = explain(method, cnn, x, y, seed=4)[1]
    assert torch.equal(first, same) and not torch.equal(first, other)


def test_gradient_shap_estimates_what_captum_estimates() -> None:
    """On a linear model GradientSHAP → w ⊙ (x − E[baseline]) = w ⊙ (x − 0.5)."""
    w = torch.tensor([[1.0, -2.0, 3.0, 0.5]])
    linear = nn.Linear(4, 1, bias=False)
    linear.weight.data = w
    forward = ModalityForward(linear, ImageModality())
    x, y = torch.tensor([[2.0, 1.0, -1.0, 0.0]] * 2), torch.zeros(2, dtype=torch.long)
    ours = get_method("gradient_shap", n_samples=4000, n_baselines=2000)(
        forward, x, y, None, method_generator(0, "gradient_shap", x.device))
    torch.manual_seed(0)
    np.random.seed(0)  # captum's GradientShap samples with numpy's global RNG
    theirs = ca.GradientShap(forward).attribute(x, torch.rand(2000, 4), n_samples=4000,
                                                stdevs=0.09, target=y)
    expected = w * (x - 0.5)  # Monte-Carlo error ≈ 0.01 · |w|: 0.1 is about four σ
    assert torch.allclose(ours, expected, atol=0.1)
    assert torch.allclose(theirs, expected, atol=0.1)


def test_smoothgrad_draws_from_our_generator_not_the_global_one(cnn: ModalityForward) -> None:
    x, y = _batch(2)
    state = torch.get_rng_state()
    explainer = Explainer(cnn, ["smoothgrad"])
    a = explainer.attribute("smoothgrad", x, y)[1]
    b = explainer.attribute("smoothgrad", x, y)[1]
    assert torch.equal(torch.get_rng_state(), state)  # global RNG untouched
    assert not torch.equal(a, b)  # the generator advanced: fresh noise for the next batch


def test_global_rng_from_routes_draws_and_restores() -> None:
    g = torch.Generator().manual_seed(5)
    expected = torch.rand(3, generator=torch.Generator().manual_seed(5))
    before = torch.get_rng_state()
    with global_rng_from(g):
        drawn = torch.rand(3)
    assert torch.equal(drawn, expected)
    assert torch.equal(torch.get_rng_state(), before)
    assert torch.equal(torch.rand(3, generator=g),
                       torch.rand(6, generator=torch.Generator().manual_seed(5))[3:])


def test_feature_score_is_abs_of_channel_mean() -> None:
    attribution = torch.tensor([1.0, -3.0, 5.0]).view(1, 3, 1, 1).expand(1, 3, 2, 1)

    class Fixed:  # a method returning a fixed attribution (its sign flipped on request)
        def __init__(self, sign: float) -> None:
            self.sign = sign

        def __call__(self, forward, z, target, valid, generator):
            return self.sign * attribution

    net = nn.Sequential(nn.Flatten(), nn.Linear(6, 2))
    forward = ModalityForward(net, ImageModality())
    x, y = torch.zeros(1, 3, 2, 1), torch.zeros(1, dtype=torch.long)
    explainer = Explainer(forward, {"plus": Fixed(1.0), "minus": Fixed(-1.0)})
    _, scores = explainer("plus", x, y)
    assert scores.shape == (1, 2) and torch.allclose(scores, torch.tensor([[1.0, 1.0]]))
    assert torch.allclose(explainer("minus", x, y)[1], scores)


@pytest.mark.parametrize(("nt_type", "expected"), [
    ("smoothgrad", lambda w: w.abs()),  # the mean of |∂f/∂x|: captum's default
    ("smoothgrad_sq", lambda w: w**2),  # the mean of its square: the SGT code's
    ("vargrad", lambda w: torch.zeros_like(w)),  # its variance
])
def test_smoothgrad_mode_is_a_setting(nt_type: str, expected) -> None:
    """A linear model's gradient is the same at every noisy point: the modes differ only in
    what they average."""
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    w = net[1].weight[1].detach().view(1, 1, 2, 2)
    forward = ModalityForward(net, ImageModality())
    x, y = torch.randn(3, 1, 2, 2), torch.ones(3, dtype=torch.long)
    _, a = explain(get_method("smoothgrad", nt_type=nt_type), forward, x, y)
    assert torch.allclose(a, expected(w).expand_as(a), atol=1e-6)


def test_smoothgrad_mode_is_checked() -> None:
    with pytest.raises(SettingError, match=r"smoothgrad nt_type must be one of \['smoothgrad', "
                                           r"'smoothgrad_sq', 'vargrad'\], got 'sq'"):
        get_method("smoothgrad", nt_type="sq")


def test_the_probability_can_be_explained() -> None:
    forward = ModalityForward(nn.Sequential(nn.Flatten(), nn.Linear(4, 3)), ImageModality(),
                              "prob")
    out = forward(torch.randn(5, 1, 2, 2))
    assert torch.allclose(out.sum(1), torch.ones(5)) and bool((out > 0).all())


def test_unknown_method_lists_the_known_ones() -> None:
    with pytest.raises(KeyError, match="integrated_gradients"):
        get_method("ig")
