"""Epoch wall times of a run: what ``metrics.json`` reports and the benchmark's ``epochs``
section measures, from one callback."""

from __future__ import annotations

import time
from typing import Any

import pytorch_lightning as pl
import torch


class EpochTimer(pl.Callback):
    """Wall time of each training epoch (validation excluded), for metrics.json; kept in
    the checkpoint, so a resumed run reports every epoch's time. An epoch's training ends
    where its validation starts: the time is taken there, before that validation's
    checkpoint is saved."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._start: float | None = None

    def on_train_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self._start = time.perf_counter()

    def _stop(self) -> None:
        if self._start is not None:
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.times.append(time.perf_counter() - self._start)
            self._start = None

    def on_validation_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self._stop()

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self._stop()

    def state_dict(self) -> dict[str, Any]:
        return {"times": list(self.times)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.times = list(state.get("times", []))


__all__ = ["EpochTimer"]
