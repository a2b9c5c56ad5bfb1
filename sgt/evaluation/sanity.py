"""Model parameter randomisation test (Adebayo et al. 2018, https://arxiv.org/abs/1810.03292).

Cascading randomisation: re-initialise the model's layers one by one from the top (output
layer first), keeping the earlier ones random, and after each step compare every sample's
saliency map with the trained model's by Spearman rank correlation. A method whose maps
stay similar while the weights are destroyed does not explain the model.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from sgt.attribution import (
    Attribution,
    ModalityForward,
    explain,
    feature_scores,
    get_method,
    global_rng_from,
    method_generator,
)
from sgt.features import ImageModality, Modality
from sgt.saliency import Output


def rank(x: Tensor) -> Tensor:
    """Ranks ``0 … N-1`` along the last axis of ``(B, N)``; ties share their mean rank."""
    batch, n = x.shape
    sorted_x, order = x.sort(dim=1)
    # group id of each sorted value: a new group starts wherever the value changes
    starts = torch.ones_like(sorted_x, dtype=torch.bool)
    starts[:, 1:] = sorted_x[:, 1:] != sorted_x[:, :-1]
    group = starts.long().cumsum(1) - 1 + n * torch.arange(batch, device=x.device)[:, None]
    position = torch.arange(n, device=x.device, dtype=torch.float64).expand(batch, n)
    flat = group.flatten()
    total = torch.zeros(batch * n, dtype=torch.float64, device=x.device).index_add_(
        0, flat, position.flatten())
    count = torch.zeros(batch * n, dtype=torch.float64, device=x.device).index_add_(
        0, flat, torch.ones_like(position).flatten())
    mean_rank = (total / count.clamp_min(1))[flat].view(batch, n)
    return torch.empty_like(mean_rank).scatter_(1, order, mean_rank)


def spearman(a: Tensor, b: Tensor) -> Tensor:
    """Per-row Spearman rank correlation of ``(B, N)`` tensors: ``(B,)``.

    Pearson correlation of the (tie-averaged) ranks; a constant row gives 0.
    """
    ra, rb = rank(a), rank(b)
    ra, rb = ra - ra.mean(1, keepdim=True), rb - rb.mean(1, keepdim=True)
    denom = (ra.square().sum(1) * rb.square().sum(1)).sqrt()
    return torch.where(denom > 0, (ra * rb).sum(1) / denom.clamp_min(1e-30),
                       torch.zeros_like(denom)).float()


def randomizable_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Modules owning parameters and a ``reset_parameters``, input to output order."""
    return [(name, m) for name, m in model.named_modules()
            if hasattr(m, "reset_parameters")
            and next(m.parameters(recurse=False), None) is not None]


class CascadingRandomization:
    """Spearman correlation between original and cascading-randomised saliency maps.

    Args:
        seed: seeds the re-initialisation and each method's generator; a method's random
            draws are the same at every step, so only the weights differ.
        output: explain the target ``logit`` or its ``log_prob``.
    """

    def __init__(self, seed: int = 0, output: Output = "logit") -> None:
        self.seed, self.output = seed, output

    def _scores(self, model: nn.Module, modality: Modality, method: Attribution, name: str,
                x: Tensor, y: Tensor) -> Tensor:
        forward = ModalityForward(model, modality, self.output)
        generator = method_generator(self.seed, name, x.device)
        _, attribution = explain(method, forward, x, y, generator)
        return feature_scores(modality, attribution)

    def __call__(
        self,
        model: nn.Module,
        x: Tensor,
        y: Tensor,
        methods: Sequence[str] | Mapping[str, Attribution] = ("grad",),
        modality: Modality | None = None,
    ) -> list[dict[str, Any]]:
        """Rows ``{method, step, layer, spearman, spearman_std}``; step 0 is the trained model.

        ``model`` is copied (the caller's weights are never touched) and run in eval mode on
        its device; ``x``, ``y`` are one batch of inputs and true labels.
        """
        if not isinstance(methods, Mapping):
            methods = {name: get_method(name) for name in methods}
        modality = modality or ImageModality()
        device = next(model.parameters()).device
        x, y = x.to(device), y.to(device)
        randomized = copy.deepcopy(model).eval()
        original = {name: self._scores(randomized, modality, m, name, x, y)
                    for name, m in methods.items()}
        rows = [{"method": name, "step": 0, "layer": "original", "spearman": 1.0,
                 "spearman_std": 0.0} for name in methods]
        init = torch.Generator(device=device).manual_seed(self.seed)
        layers = randomizable_layers(randomized)[::-1]  # output layer first
        for step, (layer, module) in enumerate(layers, start=1):
            with torch.no_grad(), global_rng_from(init):
                module.reset_parameters()
            for name, method in methods.items():
                rho = spearman(original[name], self._scores(randomized, modality, method,
                                                            name, x, y))
                rows.append({"method": name, "step": step, "layer": layer,
                             "spearman": rho.mean().item(),
                             "spearman_std": rho.std(correction=0).item()})
        return rows
