"""Accuracy drop when the most salient features are removed, without retraining.

The "modified ROAR" of the SGT paper (PAPER.md §3(a)): for 0, 10, …, 90 % of the
features, replace the *most* salient ones of every test input and measure the trained
classifier's accuracy. A faithful saliency method makes accuracy fall fast, so a lower
area under the curve is better. Each method's attributions are computed once per batch and
reused for every level; all levels of a batch go through the model as one forward.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence, Sized
from dataclasses import asdict, dataclass
from itertools import islice
from typing import Any, ClassVar

import torch
from rich.progress import Progress
from torch import Tensor, nn

from sgt.attribution import (
    Attribution,
    ModalityForward,
    explain,
    feature_scores,
    get_method,
    method_generator,
)
from sgt.features import ImageModality, Modality
from sgt.masking import Fill, get_fill, mask_features
from sgt.saliency import OUTPUTS, Output

LEVELS: tuple[float, ...] = tuple(i / 10 for i in range(10))


def area_under_curve(levels: Sequence[float], values: Sequence[float]) -> float:
    """Trapezoidal area of ``values`` over ``levels`` (``np.trapz``)."""
    return float(torch.trapezoid(torch.tensor(values, dtype=torch.float64),
                                 torch.tensor(levels, dtype=torch.float64)))


@dataclass
class AccuracyDropResult:
    """Plain data: accuracy per method and level, and the area under each curve."""

    levels: list[float]
    accuracy: dict[str, list[float]]  # method -> accuracy at each level
    auc: dict[str, float]  # method -> area under its curve (lower = more faithful)
    num_samples: int

    def table(self) -> tuple[list[str], list[list[Any]]]:
        """``(columns, rows)``: one row per method: name, AUC, then accuracy per level."""
        columns = ["method", "auc", *(f"{level:g}" for level in self.levels)]
        rows = [[m, self.auc[m], *acc] for m, acc in self.accuracy.items()]
        return columns, rows

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AccuracyDropResult:
        return cls(list(data["levels"]), dict(data["accuracy"]), dict(data["auc"]),
                   int(data["num_samples"]))


class AccuracyDrop:
    """Accuracy after removing the most salient ``levels`` of features (configured callable).

    Args:
        levels: fractions of features removed, each in ``[0, 1)``; 0 is plain accuracy.
        fill: replacement, a registered fill name (``background``: the image's own top-left
            pixel, the original's ``trueMask``; ``mean``, ``uniform``, ``constant``,
            ``baseline``) or a :class:`~sgt.masking.Fill`; ``fill_args`` are its arguments.
        seed: seeds each method's generator (baselines, noise, random ranking, fill).
        output: explain the target ``logit`` or its ``log_prob``.
        limit_batches: evaluate only the first batches of the loader.
        progress: show a rich progress bar over methods.
    """

    score_direction: ClassVar[str] = "lower"  # lower area = more faithful saliency

    def __init__(
        self,
        levels: Sequence[float] = LEVELS,
        fill: str | Fill = "background",
        fill_args: Mapping[str, Any] | None = None,
        seed: int = 0,
        output: Output = "logit",
        limit_batches: int | None = None,
        progress: bool = True,
    ) -> None:
        self.levels = [float(level) for level in levels]
        if not self.levels or any(not 0.0 <= level < 1.0 for level in self.levels):
            raise ValueError(f"levels must be fractions in [0, 1), got {list(levels)!r}")
        if limit_batches is not None and limit_batches <= 0:
            raise ValueError(f"limit_batches must be a positive integer, got {limit_batches!r}")
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {list(OUTPUTS)}, got {output!r}")
        self.fill = get_fill(fill, **(fill_args or {})) if isinstance(fill, str) else fill
        self.seed, self.output = seed, output
        self.limit_batches, self.progress = limit_batches, progress

    def perturb(self, modality: Modality, z: Tensor, scores: Tensor, valid: Tensor | None,
                generator: torch.Generator) -> Tensor:
        """``(levels, B, ...)``: ``z`` with its top-``level`` features (by ``scores``) filled."""
        features = modality.to_features(z)  # (B, N, C)
        return torch.stack([
            modality.from_features(
                mask_features(features, scores, level, lowest=False, fill=self.fill,
                              generator=generator, valid=valid)[0], z)
            for level in self.levels
        ])

    def evaluate_batch(self, forward: ModalityForward, method: Attribution, x: Tensor,
                       y: Tensor, generator: torch.Generator) -> Tensor:
        """``(levels,)`` number of correct predictions of the batch at each level."""
        m = forward.modality
        z, attribution = explain(method, forward, x, y, generator)
        valid = m.valid_features(x)
        perturbed = self.perturb(m, z, feature_scores(m, attribution), valid, generator)
        levels = len(self.levels)
        with torch.no_grad():
            # every level of the batch as one forward: (levels * B, ...)
            logits = forward(perturbed.flatten(0, 1),
                             None if valid is None else valid.repeat(levels, 1))
        return (logits.argmax(-1) == y.repeat(levels)).view(levels, -1).sum(1)

    def __call__(
        self,
        model: nn.Module,
        loader: Iterable[tuple[Tensor, Tensor]],
        methods: Sequence[str] | Mapping[str, Attribution],
        modality: Modality | None = None,
    ) -> AccuracyDropResult:
        """Evaluate ``methods`` (names or instances) on ``loader``'s ``(x, y)`` batches.

        ``model`` maps ``modality.embed`` output to logits (images: any classifier); it is
        evaluated in eval mode on its own device and left in the mode it was in.
        """
        if not isinstance(methods, Mapping):
            methods = {name: get_method(name) for name in methods}
        forward = ModalityForward(model, modality or ImageModality(), self.output)
        device = next(model.parameters()).device
        was_training = model.training
        model.eval()
        correct: dict[str, Tensor] = {}
        total = 0
        try:
            with Progress(disable=not self.progress, transient=True) as bar:
                for name, method in methods.items():
                    generator = method_generator(self.seed, name, device)
                    counts = torch.zeros(len(self.levels), dtype=torch.long, device=device)
                    batches = islice(loader, self.limit_batches)
                    task = bar.add_task(f"accuracy drop: {name}", total=self._num_batches(loader))
                    total = 0
                    for x, y in batches:
                        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                        counts += self.evaluate_batch(forward, method, x, y, generator)
                        total += y.shape[0]
                        bar.advance(task)
                    correct[name] = counts
        finally:
            model.train(was_training)
        if total == 0:
            raise ValueError("the loader yielded no batches")
        accuracy = {name: (c.double() / total).tolist() for name, c in correct.items()}
        auc = {name: area_under_curve(self.levels, acc) for name, acc in accuracy.items()}
        return AccuracyDropResult(list(self.levels), accuracy, auc, total)

    def _num_batches(self, loader: Iterable) -> int | None:
        """Batches per method, for the progress bar (``None``: unknown)."""
        n = len(loader) if isinstance(loader, Sized) else None
        if self.limit_batches is not None:
            n = self.limit_batches if n is None else min(n, self.limit_batches)
        return n
