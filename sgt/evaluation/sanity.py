"""Model parameter randomisation test (Adebayo et al. 2018, https://arxiv.org/abs/1810.03292).

Cascading randomisation: re-initialise the model's layers one by one from the top (output
layer first), keeping the earlier ones random, and after each step compare every sample's
saliency map with the trained model's by Spearman rank correlation. A method whose maps
stay similar while the weights are destroyed does not explain the model.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torchmetrics.functional import spearman_corrcoef

from sgt.errors import SettingError
from sgt.evaluation.base import Evaluation, Measure, Result
from sgt.saliency import Explainer, Output, global_rng_from


def spearman(a: Tensor, b: Tensor) -> Tensor:
    """Per-row Spearman rank correlation of ``(B, N)`` tensors: ``(B,)`` (torchmetrics':
    tied values share their mean rank, a constant row gives 0)."""
    return spearman_corrcoef(a.T.double(), b.T.double()).float()


def randomizable_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Modules owning parameters and a ``reset_parameters``, input to output order."""
    return [(name, m) for name, m in model.named_modules()
            if hasattr(m, "reset_parameters")
            and next(m.parameters(recurse=False), None) is not None]


@dataclass
class SanityResult(Result):
    """Rows ``{method, step, layer, spearman, spearman_std}``; step 0 is the trained model."""

    kind: ClassVar[str] = "sanity"
    title: ClassVar[str] = "sanity check"
    measures: ClassVar[dict[str, Measure]] = {
        "spearman_final": Measure("Spearman ρ with every layer random",
                                  higher_is_better=False)}
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


class CascadingRandomization(Evaluation):
    """Spearman correlation between original and cascading-randomised saliency maps.

    The model is copied (the caller's weights are never touched) and run in eval mode.

    Args:
        num_samples: test inputs compared (the first ones the loader yields).
        seed: seeds the re-initialisation and each method's generator; a method's random
            draws are the same at every step, so only the weights differ.
        output: explain the target ``logit``, its ``log_prob`` or its ``prob``.
    """

    name = "sanity"
    title = "sanity check"
    modalities = ("image", "timeseries", "text")

    def __init__(self, num_samples: int = 500, seed: int = 0, output: Output = "logit") -> None:
        super().__init__(seed=seed, output=output, progress=False)
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
            raise SettingError(f"num_samples must be a positive integer, got {num_samples!r}")
        self.num_samples = num_samples

    def explained(self, model: nn.Module) -> nn.Module:
        return copy.deepcopy(model).eval()

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

    def evaluate_batch(self, explainer: Explainer, name: str, batch: Sequence[Tensor]
                       ) -> Tensor:
        """``(B, N)`` method ``name``'s scores of the batch for the model as it is now, from
        its stream started afresh (the same draws at every step: only the weights differ)."""
        explainer.reset()
        x, y = batch[:2]
        return explainer(name, x, y)[1]

    def run(self, explainer: Explainer, loader: Iterable[Sequence[Tensor]]) -> SanityResult:
        """Compare the maps of the loader's first ``num_samples`` inputs, layer by layer
        from the output layer down."""
        device = explainer.device
        batch = [t.to(device) for t in self._first_samples(loader)]
        original = {name: self.evaluate_batch(explainer, name, batch)
                    for name in explainer.methods}
        rows = [{"method": name, "step": 0, "layer": "original", "spearman": 1.0,
                 "spearman_std": 0.0} for name in original]
        init = torch.Generator(device=device).manual_seed(self.seed)
        layers = randomizable_layers(explainer.forward.net)[::-1]  # output layer first
        for step, (layer, module) in enumerate(layers, start=1):
            with torch.no_grad(), global_rng_from(init):
                module.reset_parameters()
            for name in explainer.methods:
                rho = spearman(original[name], self.evaluate_batch(explainer, name, batch))
                rows.append({"method": name, "step": step, "layer": layer,
                             "spearman": rho.mean().item(),
                             "spearman_std": rho.std(correction=0).item()})
        return SanityResult(rows, len(batch[1]))
