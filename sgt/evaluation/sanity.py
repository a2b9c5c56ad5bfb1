"""Model parameter randomisation test (Adebayo et al. 2018, https://arxiv.org/abs/1810.03292).

Cascading randomisation: re-initialise the model's layers one by one from the top (output
layer first), keeping the earlier ones random, and after each step compare every sample's
saliency map with the trained model's by Spearman rank correlation. A method whose maps
stay similar while the weights are destroyed does not explain the model.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from sgt.errors import SettingError
from sgt.evaluation.base import RESULTS, check_methods
from sgt.features import ImageModality, Modality
from sgt.saliency import (
    Attribution,
    Explainer,
    ModalityForward,
    Output,
    check_output,
    global_rng_from,
)


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


@RESULTS.register("sanity")
@dataclass
class SanityResult:
    """Rows ``{method, step, layer, spearman, spearman_std}``; step 0 is the trained model."""

    kind: ClassVar[str] = "sanity"
    rows: list[dict[str, Any]]
    num_samples: int

    def table(self) -> tuple[list[str], list[list[Any]]]:
        columns = ["method", "step", "layer", "spearman", "spearman_std"]
        return columns, [[row[c] for c in columns] for row in self.rows]

    def summary(self) -> dict[str, float]:
        """``spearman_final/<method>``: correlation once every layer is random (lower =
        the maps depend on the weights, as they should)."""
        last = {row["method"]: row["spearman"] for row in self.rows}
        return {f"spearman_final/{m}": v for m, v in last.items()}

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **asdict(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SanityResult:
        return cls(list(data["rows"]), int(data["num_samples"]))


class CascadingRandomization:
    """Spearman correlation between original and cascading-randomised saliency maps.

    Args:
        num_samples: test inputs compared (the first ones the loader yields).
        seed: seeds the re-initialisation and each method's generator; a method's random
            draws are the same at every step, so only the weights differ.
        output: explain the target ``logit``, its ``log_prob`` or its ``prob``.
    """

    def __init__(self, num_samples: int = 500, seed: int = 0, output: Output = "logit") -> None:
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
            raise SettingError(f"num_samples must be a positive integer, got {num_samples!r}")
        check_output(output, "output")
        self.num_samples, self.seed, self.output = num_samples, seed, output

    def _first_samples(self, loader: Iterable[Sequence[Tensor]]) -> tuple[Tensor, Tensor]:
        xs, ys, n = [], [], 0
        for x, y, *_ in loader:
            xs.append(x)
            ys.append(y)
            n += len(y)
            if n >= self.num_samples:
                break
        if not xs:
            raise ValueError("the loader yielded no batches")
        return torch.cat(xs)[: self.num_samples], torch.cat(ys)[: self.num_samples]

    def __call__(
        self,
        model: nn.Module,
        loader: Iterable[Sequence[Tensor]],
        methods: Sequence[str] | Mapping[str, Attribution] = ("grad",),
        modality: Modality | None = None,
    ) -> SanityResult:
        """Compare the maps of the loader's first ``num_samples`` inputs, layer by layer.

        ``model`` is copied (the caller's weights are never touched) and run in eval mode on
        its device.
        """
        check_methods(methods)
        modality = modality or ImageModality()
        randomized = copy.deepcopy(model).eval()
        explainer = Explainer(ModalityForward(randomized, modality, self.output), methods,
                              self.seed)
        device = explainer.device
        x, y = (t.to(device) for t in self._first_samples(loader))

        def scores() -> dict[str, Tensor]:
            explainer.reset()  # the same random draws at every step: only the weights differ
            return {name: explainer(name, x, y)[1] for name in explainer.methods}

        original = scores()
        rows = [{"method": name, "step": 0, "layer": "original", "spearman": 1.0,
                 "spearman_std": 0.0} for name in original]
        init = torch.Generator(device=device).manual_seed(self.seed)
        layers = randomizable_layers(randomized)[::-1]  # output layer first
        for step, (layer, module) in enumerate(layers, start=1):
            with torch.no_grad(), global_rng_from(init):
                module.reset_parameters()
            for name, randomized_scores in scores().items():
                rho = spearman(original[name], randomized_scores)
                rows.append({"method": name, "step": step, "layer": layer,
                             "spearman": rho.mean().item(),
                             "spearman_std": rho.std(correction=0).item()})
        return SanityResult(rows, len(y))
