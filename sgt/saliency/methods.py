"""Attribution methods by name, for evaluation: captum's methods, batched, on the device.

The protocol of the paper's accuracy-drop evaluation (docs/paper.md §3(a)): the target is the
true label; Integrated Gradients and DeepLift take one U[0, 1) random baseline of the
input's shape, the SHAP variants five, GradientShap adds N(0, 0.09²) input noise. Every
random draw comes from a seeded ``torch.Generator`` on the device, so a run repeats exactly.

Attributions are taken w.r.t. ``z = modality.embed(net, x)`` through
``modality.classify`` (:class:`ModalityForward`), so images, time series and text share
these methods. A method maps ``(forward, z, target, valid, generator)`` to an attribution
shaped like ``z``; :class:`sgt.saliency.Explainer` runs them and ranks features.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Protocol

import torch
from torch import Tensor, nn

from sgt.checks import check_choice, check_int, check_number
from sgt.features import Modality
from sgt.registry import Registry
from sgt.saliency.gradient import Output, check_output, explained_output, input_gradient


class ModalityForward(nn.Module):
    """``net`` as a module from ``z`` to the explained output ``(B, classes)``.

    A module (not a closure) so captum's hooks (DeepLift's rescale rule) reach the layers
    of ``net``. ``output="log_prob"`` explains ``log p_y`` (the original MNIST network ended
    in ``log_softmax``), ``"logit"`` the raw logit.
    """

    def __init__(self, net: nn.Module, modality: Modality, output: Output = "logit") -> None:
        super().__init__()
        check_output(output, "output")
        self.net, self.modality, self.output = net, modality, output

    def forward(self, z: Tensor, valid: Tensor | None = None) -> Tensor:
        return explained_output(self.modality.classify(self.net, z, valid), self.output)


class Attribution(Protocol):
    """One attribution method, its options bound at construction.

    Args:
        forward: ``z -> (B, classes)`` (a :class:`ModalityForward`).
        z: ``(B, ...)`` the tensor attributions are taken w.r.t.
        target: ``(B,)`` the class to explain (the true label).
        valid: ``(B, N)`` real features (text padding) or ``None``; an extra forward argument.
        generator: seeded ``torch.Generator`` on ``z.device`` for baselines and noise.
    Returns:
        ``(B, ...)`` attributions, shaped like ``z``.
    """

    def __call__(self, forward: ModalityForward, z: Tensor, target: Tensor,
                 valid: Tensor | None, generator: torch.Generator) -> Tensor: ...


METHODS: Registry[Callable[..., Attribution]] = Registry("attribution method")


def _captum() -> ModuleType:
    """``captum.attr``, imported on first use: training never needs it (0.5–0.9 s)."""
    import captum.attr

    return captum.attr


def _extra(valid: Tensor | None) -> tuple[Tensor] | None:
    return None if valid is None else (valid,)


def _uniform(shape: tuple[int, ...], like: Tensor, generator: torch.Generator) -> Tensor:
    """U[0, 1) of ``shape`` on ``like``'s device: the paper's random baselines."""
    return torch.rand(shape, generator=generator, device=like.device, dtype=like.dtype)


def _default_generator(device: torch.device) -> torch.Generator:
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return torch.cuda.default_generators[index]
    return torch.default_generator


@contextmanager
def global_rng_from(generator: torch.Generator) -> Iterator[None]:
    """Make code that draws from torch's global RNG (captum's NoiseTunnel,
    ``reset_parameters``) draw from ``generator`` instead.

    ``generator``'s state goes into the device's default generator, the advanced state
    comes back out, and the global state is restored: no device value is read back.
    """
    device = generator.device
    devices = [_default_generator(device).device.index] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices, device_type=device.type):
        default = _default_generator(device)
        default.set_state(generator.get_state())
        yield
        generator.set_state(default.get_state())


@contextmanager
def _quiet_hooks() -> Iterator[None]:
    """DeepLift warns on every call that it hooks the non-linearities; that is intended."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Setting forward, backward hooks")
        yield


@METHODS.register("grad")
class Grad:
    """|∂ output_y / ∂ z| (Simonyan et al. 2013): captum ``Saliency`` with its default
    ``abs=True``, as the original evaluation used it."""

    def __call__(self, forward, z, target, valid, generator):
        return _captum().Saliency(forward).attribute(z, target=target,
                                              additional_forward_args=_extra(valid))


@METHODS.register("smoothgrad")
class SmoothGrad:
    """SmoothGrad (Smilkov et al. 2017, https://arxiv.org/abs/1706.03825): captum
    ``NoiseTunnel(Saliency)`` with captum's defaults (5 samples, σ = 1).

    ``nt_type`` is captum's: ``smoothgrad_sq`` (the mean of squared gradients, the SGT
    code's choice for its accuracy drop, and the default here), ``smoothgrad`` (captum's
    default, the time-series benchmark's) or ``vargrad``.
    """

    NT_TYPES = ("smoothgrad", "smoothgrad_sq", "vargrad")

    def __init__(self, nt_samples: int = 5, stdevs: float = 1.0,
                 nt_type: str = "smoothgrad_sq") -> None:
        self.nt_samples = check_int(nt_samples, "smoothgrad nt_samples")
        self.stdevs = check_number(stdevs, "smoothgrad stdevs")
        self.nt_type = check_choice(nt_type, "smoothgrad nt_type", self.NT_TYPES)

    def __call__(self, forward, z, target, valid, generator):
        # NoiseTunnel draws its noise from torch's global RNG: route it to ours.
        with global_rng_from(generator):
            ca = _captum()
            return ca.NoiseTunnel(ca.Saliency(forward)).attribute(
                z, nt_type=self.nt_type, nt_samples=self.nt_samples, stdevs=self.stdevs,
                target=target, additional_forward_args=_extra(valid))


@METHODS.register("integrated_gradients")
class IntegratedGradients:
    """Integrated Gradients (Sundararajan et al. 2017, https://arxiv.org/abs/1703.01365)
    from one U[0, 1) baseline per sample.

    ``internal_batch_size`` caps how many of the ``n_steps × B`` path points go through
    the model at once (memory), without changing the result.
    """

    def __init__(self, n_steps: int = 50, internal_batch_size: int | None = 10_000) -> None:
        self.n_steps = check_int(n_steps, "integrated_gradients n_steps")
        self.internal_batch_size = (None if internal_batch_size is None else check_int(
            internal_batch_size, "integrated_gradients internal_batch_size"))

    def __call__(self, forward, z, target, valid, generator):
        baseline = _uniform(tuple(z.shape), z, generator)
        return _captum().IntegratedGradients(forward).attribute(
            z, baseline, target=target, additional_forward_args=_extra(valid),
            n_steps=self.n_steps, internal_batch_size=self.internal_batch_size)


@METHODS.register("deeplift")
class DeepLift:
    """DeepLIFT rescale rule (Shrikumar et al. 2017, https://arxiv.org/abs/1704.02685)
    from one U[0, 1) baseline per sample. The net must not reuse activation modules."""

    def __call__(self, forward, z, target, valid, generator):
        baseline = _uniform(tuple(z.shape), z, generator)
        with _quiet_hooks():
            return _captum().DeepLift(forward).attribute(z, baseline, target=target,
                                                  additional_forward_args=_extra(valid))


@METHODS.register("deeplift_shap")
class DeepLiftShap:
    """DeepLIFT averaged over ``n_baselines`` U[0, 1) baselines shared by the batch
    (Lundberg & Lee 2017, https://arxiv.org/abs/1705.07874)."""

    def __init__(self, n_baselines: int = 5) -> None:
        self.n_baselines = check_int(n_baselines, "deeplift_shap n_baselines")

    def __call__(self, forward, z, target, valid, generator):
        baselines = _uniform((self.n_baselines, *z.shape[1:]), z, generator)
        with _quiet_hooks():
            return _captum().DeepLiftShap(forward).attribute(z, baselines, target=target,
                                                      additional_forward_args=_extra(valid))


@METHODS.register("gradient_shap")
class GradientShap:
    """GradientSHAP (Lundberg & Lee 2017): captum's estimator, sampled from our generator.

    captum's ``GradientShap`` picks baselines and path points with numpy's global RNG;
    this draws the same quantities on the device instead. Per sample, ``n_samples`` times:
    x̃ = z + N(0, stdevs²), a baseline b from ``n_baselines`` U[0, 1) baselines, α ~ U[0, 1);
    attribution = mean of (x̃ − b) · ∂f_y/∂z at b + α (x̃ − b).
    """

    def __init__(self, n_samples: int = 5, n_baselines: int = 5, stdevs: float = 0.09) -> None:
        self.n_samples = check_int(n_samples, "gradient_shap n_samples")
        self.n_baselines = check_int(n_baselines, "gradient_shap n_baselines")
        self.stdevs = check_number(stdevs, "gradient_shap stdevs")

    def __call__(self, forward, z, target, valid, generator):
        n, batch, dev = self.n_samples, z.shape[0], z.device
        baselines = _uniform((self.n_baselines, *z.shape[1:]), z, generator)
        # (B * n, ...): n noisy copies of every sample, each with its baseline and point
        noisy = z.repeat_interleave(n, dim=0)
        noisy = noisy + self.stdevs * torch.randn(noisy.shape, generator=generator,
                                                  device=dev, dtype=z.dtype)
        pick = torch.randint(self.n_baselines, (noisy.shape[0],), generator=generator,
                             device=dev)
        base = baselines[pick]
        alpha = _uniform((noisy.shape[0],) + (1,) * (z.dim() - 1), z, generator)
        extra = () if valid is None else (valid.repeat_interleave(n, dim=0),)
        grad = input_gradient(lambda p: forward(p, *extra), base + alpha * (noisy - base),
                              target.repeat_interleave(n))
        return ((noisy - base) * grad).view(batch, n, *z.shape[1:]).mean(dim=1)


@METHODS.register("random")
class RandomAttribution:
    """i.i.d. U[0, 1) scores: a random ranking, the baseline every method should beat."""

    def __call__(self, forward, z, target, valid, generator):
        return _uniform(tuple(z.shape), z, generator)


def get_method(name: str, **kwargs) -> Attribution:
    """An attribution method by registered name, e.g. ``get_method("integrated_gradients",
    n_steps=20)``."""
    return METHODS.get(name)(**kwargs)


__all__ = ["METHODS", "Attribution", "ModalityForward", "get_method", "global_rng_from"]
