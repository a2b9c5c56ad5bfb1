"""Explain a batch with named attribution methods and rank its features: written once here.

Every evaluation (accuracy drop, sanity check, ROAD, time-series and ERASER metrics,
example figures) does the same three things: give each method its own seeded generator,
attribute the batch w.r.t. ``z = modality.embed(net, x)``, and turn the attribution into a
per-feature score (:data:`sgt.features.FEATURE_SCORES`, which each evaluation chooses as its
reference does). :class:`Explainer` owns that sequence, and each method's random tie-break
keys (:mod:`sgt.saliency.ranking`).
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from sgt.features import check_feature_score, feature_scores
from sgt.saliency.methods import Attribution, ModalityForward, get_method
from sgt.saliency.ranking import tie_keys


def method_generator(seed: int, name: str, device: torch.device) -> torch.Generator:
    """A generator per (seed, method): a method's draws do not depend on which other
    methods run, or in which order (``crc32``, unlike ``hash``, is stable across runs)."""
    return torch.Generator(device=device).manual_seed(seed * 1_000_003 + zlib.crc32(name.encode()))


class Explainer:
    """Named attribution methods on one model output, each drawing from its own stream.

    Args:
        forward: the explained model output (:class:`ModalityForward`).
        methods: names (built with their defaults) or ``{name: method}``.
        seed: seeds every method's generator (see :func:`method_generator`).
        feature_score: how an attribution's values reduce to one score per feature
            (:data:`sgt.features.FEATURE_SCORES`; ``abs_mean``: |mean|, the SGT code's).
    """

    def __init__(self, forward: ModalityForward,
                 methods: Sequence[str] | Mapping[str, Attribution], seed: int = 0,
                 feature_score: str = "abs_mean") -> None:
        self.forward, self.seed = forward, seed
        self.feature_score = check_feature_score(feature_score)
        self.methods: dict[str, Attribution] = (
            dict(methods) if isinstance(methods, Mapping)
            else {name: get_method(name) for name in methods})
        self._generators: dict[str, torch.Generator] = {}
        self._tie_keys: dict[tuple[str, int], Tensor] = {}

    @property
    def device(self) -> torch.device:
        return next(self.forward.net.parameters()).device

    def generator(self, name: str) -> torch.Generator:
        """Method ``name``'s generator; draws that belong to it (a random fill) use it too."""
        if name not in self._generators:
            self._generators[name] = method_generator(self.seed, name, self.device)
        return self._generators[name]

    def tie_keys(self, name: str, num_features: int) -> Tensor:
        """Method ``name``'s ``(N,)`` random keys that break exact ties in its rankings (one
        field for every batch, as ROAD's reference draws one per dataset), drawn on the CPU:
        the same on every device."""
        if (name, num_features) not in self._tie_keys:
            cpu = method_generator(self.seed, f"{name}/ties", torch.device("cpu"))
            self._tie_keys[name, num_features] = tie_keys(cpu, num_features, self.device)
        return self._tie_keys[name, num_features]

    def reset(self) -> None:
        """Start every method's stream afresh: the next calls repeat the same draws."""
        self._generators.clear()

    def attribute(self, name: str, x: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        """Method ``name``'s attribution of a raw batch ``x`` for class ``target``.

        Returns:
            ``z`` (detached, ``modality.embed(net, x)``) and the attribution, shaped like ``z``.
        """
        m, net = self.forward.modality, self.forward.net
        with torch.no_grad():
            z = m.embed(net, x)
        z = z.detach().requires_grad_(True)
        attribution = self.methods[name](self.forward, z, target, m.valid_features(x),
                                         self.generator(name))
        return z.detach(), attribution.detach()

    def __call__(self, name: str, x: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        """``z`` and the ``(B, N)`` ranking score of each feature: the attribution reduced
        over the values masked together (an RGB pixel's channels, a token's embedding) as
        ``feature_score`` says."""
        z, attribution = self.attribute(name, x, target)
        return z, feature_scores(self.forward.modality, attribution, self.feature_score)


__all__ = ["Explainer", "method_generator"]
