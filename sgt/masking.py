"""Replace the lowest- (training) or highest- (evaluation) saliency features of a batch.

Everything works on the ``(B, N, C)`` feature layout of :mod:`sgt.features`: ``N``
features ranked by a ``(B, N)`` saliency, ``C`` values per feature masked together (an RGB
pixel's three channels). Selection is one ``torch.topk``; filling is one ``torch.where``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import torch
from torch import Tensor

from sgt.errors import SettingError
from sgt.registry import Registry


class Fill(Protocol):
    """Values to put in masked positions.

    Args:
        features: ``(B, N, C)`` original features.
        selected: ``(B, N)`` bool of the features being replaced (an imputing fill needs it).
        valid: ``(B, N)`` bool of real features (``None``: all), for per-sample statistics.
        generator: source of randomness for random fills.
        grid: the shape the ``N`` features lie on (images ``(H, W)``), for fills that use
            neighbours.
    Returns:
        ``(B, N, C)`` (or broadcastable) replacement values.
    """

    def __call__(self, features: Tensor, *, selected: Tensor, valid: Tensor | None,
                 generator: torch.Generator | None, grid: tuple[int, ...]) -> Tensor: ...


FILLS: Registry[Callable[..., Fill]] = Registry("fill")


def _masked_extrema(features: Tensor, valid: Tensor | None) -> tuple[Tensor, Tensor]:
    """Per-sample, per-channel min and max ``(B, 1, C)`` over the valid features."""
    if valid is None:
        return features.amin(dim=1, keepdim=True), features.amax(dim=1, keepdim=True)
    v = valid.unsqueeze(-1)
    lo = torch.where(v, features, torch.full_like(features, float("inf"))).amin(1, keepdim=True)
    hi = torch.where(v, features, torch.full_like(features, float("-inf"))).amax(1, keepdim=True)
    return lo, hi


@FILLS.register("uniform")
class UniformFill:
    """i.i.d. Uniform[min, max] of each sample's own values, per channel (the paper's default)."""

    def __call__(self, features, *, selected, valid, generator, grid):
        lo, hi = _masked_extrema(features, valid)
        u = torch.rand(features.shape, generator=generator, device=features.device,
                       dtype=features.dtype)
        return lo + (hi - lo) * u


@FILLS.register("mean")
class MeanFill:
    """Each sample's per-channel mean over its valid features."""

    def __call__(self, features, *, selected, valid, generator, grid):
        if valid is None:
            return features.mean(dim=1, keepdim=True)
        w = valid.unsqueeze(-1).to(features.dtype)
        return (features * w).sum(1, keepdim=True) / w.sum(1, keepdim=True).clamp_min(1)


@FILLS.register("constant")
class ConstantFill:
    """One constant everywhere (e.g. the normalised background value)."""

    def __init__(self, value: float = 0.0) -> None:
        self.value = float(value)

    def __call__(self, features, *, selected, valid, generator, grid):
        return torch.full_like(features[:, :1], self.value)


@FILLS.register("background")
class BackgroundFill:
    """Each sample's own first feature (an image's top-left pixel): the original's ``trueMask``."""

    def __call__(self, features, *, selected, valid, generator, grid):
        return features[:, :1]


@FILLS.register("baseline")
class BaselineFill:
    """Values of a given baseline, laid out as features ``(N, C)`` or ``(B, N, C)``."""

    def __init__(self, baseline: Tensor | list) -> None:
        self.baseline = torch.as_tensor(baseline)  # a list from YAML works too

    def __call__(self, features, *, selected, valid, generator, grid):
        return self.baseline.to(device=features.device, dtype=features.dtype).expand_as(features)


def check_fraction(fraction: object, key: str = "fraction") -> float:
    """The one check of a masked fraction: a number in ``[0, 1)`` (not a bool)."""
    if (isinstance(fraction, bool) or not isinstance(fraction, (int, float))
            or not 0.0 <= fraction < 1.0):
        raise SettingError(f"{key} must be a fraction in [0, 1), got {fraction!r}")
    return float(fraction)


def num_masked(fraction: float, num_features: Tensor | int) -> Tensor | int:
    """How many features a fraction means: ``int(fraction * N)``, rounded down as the
    original code did (docs/paper.md §1.2 item 5); per sample for text."""
    if isinstance(num_features, Tensor):
        return torch.floor(num_features.to(torch.float64) * fraction).long()
    return int(fraction * num_features)


def select_features(
    saliency: Tensor, fraction: float, lowest: bool = True, valid: Tensor | None = None
) -> Tensor:
    """``(B, N)`` bool: the ``int(fraction * N_valid)`` lowest (or highest) saliency features.

    Invalid positions (padding) are never selected. Ties break by ``torch.topk``'s order.
    """
    check_fraction(fraction)
    batch, n = saliency.shape
    # Rank so that the features to select come first: ascending for lowest.
    scores = saliency if lowest else -saliency
    if valid is None:
        count = num_masked(fraction, n)
        if count == 0:
            return torch.zeros_like(saliency, dtype=torch.bool)
        idx = torch.topk(scores, count, dim=1, largest=False).indices
        return torch.zeros_like(saliency, dtype=torch.bool).scatter_(1, idx, True)
    scores = scores.masked_fill(~valid, float("inf"))
    counts = num_masked(fraction, valid.sum(1))  # (B,)
    # int(fraction·N) bounds every row's count without reading ``counts`` back from the GPU.
    kmax = num_masked(fraction, n)
    if kmax == 0 or batch == 0:
        return torch.zeros_like(saliency, dtype=torch.bool)
    idx = torch.topk(scores, kmax, dim=1, largest=False).indices  # (B, kmax)
    take = torch.arange(kmax, device=saliency.device) < counts.unsqueeze(1)
    return torch.zeros_like(saliency, dtype=torch.bool).scatter_(1, idx, take)


def mask_features(
    features: Tensor,
    saliency: Tensor,
    fraction: float,
    fill: Fill,
    lowest: bool = True,
    generator: torch.Generator | None = None,
    valid: Tensor | None = None,
    grid: tuple[int, ...] | None = None,
) -> tuple[Tensor, Tensor]:
    """Replace the lowest-``fraction`` (or highest) saliency features with ``fill`` values.

    Args:
        features: ``(B, N, C)`` (see :meth:`sgt.features.Modality.to_features`).
        saliency: ``(B, N)`` per-feature saliency.
        fraction: share of (valid) features to replace, in ``[0, 1)``.
        fill: a :class:`Fill`, e.g. ``get_fill("uniform")`` (the paper's).
        lowest: ``True`` for SGT training (least salient), ``False`` for evaluation.
        generator: a ``torch.Generator`` on ``features.device`` for reproducible fills.
        valid: ``(B, N)`` bool of real features; padding is never selected.
        grid: the shape the ``N`` features lie on (default ``(N,)``), for imputing fills.
    Returns:
        ``(masked features (B, N, C), selected (B, N) bool)``.
    """
    selected = select_features(saliency, fraction, lowest, valid)
    values = fill(features, selected=selected, valid=valid, generator=generator,
                  grid=grid or (features.shape[1],)).expand_as(features)
    masked = torch.where(selected.unsqueeze(-1), values, features)
    return masked, selected


def get_fill(name: str, args: Mapping[str, Any] | None = None, key: str = "fill") -> Fill:
    """A fill by registered name, e.g. ``get_fill("constant", {"value": -0.42})``.

    The one check of fill names and arguments: either is refused naming what is allowed
    (``key`` is how the setting is called in the message, e.g. ``sgt.fill``).
    """
    if name not in FILLS:
        raise SettingError(f"unknown {key} {name!r}; allowed: {', '.join(FILLS.names())}")
    factory = FILLS.get(name)
    allowed = list(inspect.signature(factory).parameters)
    if not isinstance(args or {}, Mapping):
        raise SettingError(f"{key}_args must be a mapping of {name!r}'s arguments "
                           f"({allowed or 'none'}), got {args!r}")
    unknown = sorted(set(args or {}) - set(allowed))
    if unknown:
        raise SettingError(f"{key} {name!r} takes no argument {unknown[0]!r} in {key}_args; "
                           f"its arguments: {allowed or 'none'}")
    return factory(**(args or {}))
