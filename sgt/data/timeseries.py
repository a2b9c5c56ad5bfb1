"""The synthetic time-series benchmark (docs/paper.md §5) as a DataModule.

Batches are ``(x (B, T, F), y)`` for training; the test split adds the ground truth an
interpretability evaluation needs: ``(x, y, truth (B, T, F) bool, background (B, T, F))``,
the background being the dataset's one no-box sample (the same in every row).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sgt.checks import check_finite
from sgt.data.in_memory import InMemoryDataModule, Split
from sgt.data.timeseries_synth import SyntheticDataset, SyntheticSpec, cached_dataset


class TimeSeriesDataModule(InMemoryDataModule):
    """One of the benchmark's 70 datasets, generated (or read from ``cache_dir``) on setup.

    Args:
        layout: where the informative box lies (``sgt.data.timeseries_synth.LAYOUTS``).
        process: the background (``Gaussian``, ``Harmonic``, ``GaussianProcess``,
            ``PseudoPeriodic``, ``AutoRegressive``, ``CAR``, ``NARMA``).
        num_train, num_test: generated samples; ``val_size`` of the training ones are held
            out for model selection.
        time_steps, num_features: T and F of every sample.
        data_seed: the generator's seed, independent of the run's ``seed``.
        cache_dir: where generated tensors are kept; ``None`` generates every time.
        *args, **kwargs: :class:`InMemoryDataModule`'s (batch sizes, ``val_size``, …).
    """

    name = "timeseries"
    modality = "timeseries"
    num_classes = 2

    def __init__(
        self,
        layout: str = "Middle",
        process: str = "Gaussian",
        num_train: int = 1000,
        num_test: int = 100,
        time_steps: int = 50,
        num_features: int = 50,
        data_seed: int = 0,
        cache_dir: str | Path | None = None,
        batch_size: int = 50,
        eval_batch_size: int = 100,
        val_size: int = 100,
        **kwargs: Any,
    ) -> None:
        self.spec = SyntheticSpec(layout, process, num_train, num_test, time_steps,
                                  num_features, data_seed)  # checks every setting
        super().__init__(batch_size=batch_size, eval_batch_size=eval_batch_size,
                         val_size=val_size, **kwargs)
        self.name = self.spec.name
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self._dataset: SyntheticDataset | None = None

    @property
    def dataset(self) -> SyntheticDataset:
        """The generated dataset (drawn or read once)."""
        if self._dataset is None:
            self._dataset = cached_dataset(self.spec, self.cache_dir)
        return self._dataset

    def load_split(self, train: bool) -> Split:
        if train:
            split = self.dataset.train
            return split.x, split.y
        split = self.dataset.test
        # masked accuracy reads it; InMemoryDataModule checks only the inputs
        check_finite(self.dataset.background, f"{self.name}'s background sample",
                     f"delete its cache (timeseries-{self.name}-*.pt in dataset.cache_dir="
                     f"{self.cache_dir}) to generate it again")
        # (T, F) -> (N, T, F): the same background sample beside every test row
        background = self.dataset.background.expand_as(split.x).contiguous()
        return split.x, split.y, split.truth(), background

    def model_kwargs(self) -> dict[str, Any]:
        return {**super().model_kwargs(), "num_features": self.spec.num_features,
                "time_steps": self.spec.time_steps}


__all__ = ["TimeSeriesDataModule"]
