"""The NaN guard of the SGT step: ``stop`` ends the run naming the step and the quantity;
``skip`` drops the batch without touching the weights and counts it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from experiments.train import train
from sgt.errors import NonFiniteError, SGTError
from tests.conftest import needs_mnist

pytestmark = needs_mnist


class PoisonBatches(pl.Callback):
    """Makes the network return NaN logits on the chosen training batches, and writes to
    ``record`` whether each batch's optimizer step changed any weight."""

    def __init__(self, batches: list[int], record: str) -> None:
        self.batches, self.record = set(batches), Path(record)
        self.updated: dict[int, bool] = {}
        self._hook: torch.utils.hooks.RemovableHandle | None = None

    def on_train_batch_start(self, trainer: pl.Trainer, module: pl.LightningModule,
                             batch: object, batch_idx: int) -> None:
        self._before = [p.detach().clone() for p in module.parameters()]
        if batch_idx in self.batches:
            self._hook = module.net.register_forward_hook(lambda m, args, out: out * torch.nan)

    def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule,
                           outputs: object, batch: object, batch_idx: int) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        self.updated[batch_idx] = any(not torch.equal(before, p) for before, p
                                      in zip(self._before, module.parameters(), strict=True))

    def on_train_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.record.write_text(json.dumps(self.updated))


def poison(batch: int, record: Path) -> list[str]:
    """Overrides adding :class:`PoisonBatches` for one batch (three batches are trained)."""
    return [f"+callbacks.poison._target_={__name__}.PoisonBatches",
            f"+callbacks.poison.batches=[{batch}]", f"+callbacks.poison.record={record}"]


def test_stop_names_the_step_and_the_quantity(train_cfg, tmp_path: Path) -> None:
    cfg = train_cfg("sgt.nan_policy=stop", *poison(1, tmp_path / "updated.json"))
    with pytest.raises(NonFiniteError) as err:
        train(cfg)
    assert str(err.value).startswith("non-finite loss at train step 1 (epoch 0, batch 1): "
                                     "loss=nan")
    assert "set sgt.nan_policy=skip" in str(err.value)
    assert isinstance(err.value, SGTError)  # so the CLI prints it as one line
    assert not (Path(cfg.paths.output_dir) / "metrics.json").exists()


def test_skip_drops_the_batch_without_an_update_and_counts_it(train_cfg, tmp_path: Path) -> None:
    record = tmp_path / "updated.json"
    cfg = train_cfg("sgt.nan_policy=skip", *poison(1, record))
    metrics = train(cfg)
    # Returning None from training_step skips backward; the optimizer still steps but every
    # gradient is None, so no weight moves (Adadelta, the default, skips grad-less params).
    assert json.loads(record.read_text()) == {"0": True, "1": False, "2": True}
    assert metrics["train/skipped_batches"] == 1.0
    saved = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    assert saved["skipped_batches"] == 1
