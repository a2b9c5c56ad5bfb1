"""The NaN guard of the SGT step: ``stop`` ends the run naming the step and the quantity;
``skip`` drops the batch without touching the weights and counts it."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import pytorch_lightning as pl
import torch
from torch import nn

from experiments.train import train
from sgt.data import TensorLoader
from sgt.errors import NonFiniteError, SGTError
from sgt.module import SaliencyGuidedModule
from tests.conftest import needs_mnist


class NaNLogits(pl.Callback):
    """Makes the network return NaN logits on the chosen training batches."""

    def __init__(self, batches: set[int]) -> None:
        self.batches = batches
        self._hook: torch.utils.hooks.RemovableHandle | None = None

    def on_train_batch_start(self, trainer: pl.Trainer, module: pl.LightningModule,
                             batch: object, batch_idx: int) -> None:
        if batch_idx in self.batches:
            self._hook = module.net.register_forward_hook(lambda m, args, out: out * torch.nan)

    def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule,
                           outputs: object, batch: object, batch_idx: int) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None


class PoisonBatches(NaNLogits):
    """:class:`NaNLogits` from the CLI; writes to ``record`` whether each batch's optimizer
    step changed any weight."""

    def __init__(self, batches: list[int], record: str) -> None:
        super().__init__(set(batches))
        self.record = Path(record)
        self.updated: dict[int, bool] = {}

    def on_train_batch_start(self, trainer: pl.Trainer, module: pl.LightningModule,
                             batch: object, batch_idx: int) -> None:
        self._before = [p.detach().clone() for p in module.parameters()]
        super().on_train_batch_start(trainer, module, batch, batch_idx)

    def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule,
                           outputs: object, batch: object, batch_idx: int) -> None:
        super().on_train_batch_end(trainer, module, outputs, batch, batch_idx)
        self.updated[batch_idx] = any(not torch.equal(before, p) for before, p
                                      in zip(self._before, module.parameters(), strict=True))

    def on_train_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.record.write_text(json.dumps(self.updated))


def poison(batch: int, record: Path) -> list[str]:
    """Overrides adding :class:`PoisonBatches` for one batch (three batches are trained)."""
    return [f"+callbacks.poison._target_={__name__}.PoisonBatches",
            f"+callbacks.poison.batches=[{batch}]", f"+callbacks.poison.record={record}"]


@needs_mnist
def test_stop_names_the_step_and_the_quantity(train_cfg, tmp_path: Path) -> None:
    cfg = train_cfg("sgt.nan_policy=stop", *poison(1, tmp_path / "updated.json"))
    with pytest.raises(NonFiniteError) as err:
        train(cfg)
    assert str(err.value).startswith("non-finite loss at train step 1 (epoch 0, batch 1): "
                                     "loss=nan")
    assert "set sgt.nan_policy=skip" in str(err.value)
    assert isinstance(err.value, SGTError)  # so the CLI prints it as one line
    assert not (Path(cfg.paths.output_dir) / "metrics.json").exists()


@needs_mnist
def test_skip_drops_the_batch_without_an_update_and_counts_it(train_cfg, tmp_path: Path) -> None:
    record = tmp_path / "updated.json"
    cfg = train_cfg("sgt.nan_policy=skip", *poison(1, record))
    metrics = train(cfg)
    # The step runs, then the guard puts every weight back on the device (sgt.nan_guard).
    assert json.loads(record.read_text()) == {"0": True, "1": False, "2": True}
    assert metrics["train/skipped_batches"] == 1.0
    saved = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    assert saved["skipped_batches"] == 1


# -- the guard reads no device value per step -------------------------------------------
HOST_READS = ("item", "__bool__", "__float__", "__int__", "__index__", "tolist", "numpy")


class TinyNet(nn.Module):
    """Conv → BatchNorm → ReLU → linear: parameters *and* running statistics to protect."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(),
                                  nn.Flatten(), nn.Linear(4 * 6 * 6, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class Snapshots(pl.Callback):
    """Every parameter, buffer and optimizer state tensor after each training batch."""

    def __init__(self) -> None:
        self.after: list[list[torch.Tensor]] = []

    def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule,
                           outputs: object, batch: object, batch_idx: int) -> None:
        state = trainer.optimizers[0].state
        self.after.append([t.detach().clone() for t in (
            *module.net.parameters(), *module.net.buffers(),
            *(v for s in state.values() for v in s.values() if torch.is_tensor(v)))])


@dataclass
class TinyRun:
    """Four SGT steps of :class:`TinyNet` on batches of 8; batch ``bad_batch`` gives NaN
    logits. ``reads``: host reads of tensor values made inside ``training_step`` and
    ``optimizer_step``, per batch; ``snapshots``: the state after each batch."""

    module: SaliencyGuidedModule
    bad_batch: int
    device: str
    on_reads: Callable[[], AbstractContextManager] = nullcontext
    snapshots: Snapshots = field(default_factory=Snapshots)
    reads: list[int] = field(default_factory=list)

    def fit(self) -> None:
        """Fit one epoch; the guard is checked only at its end (log_every_n_steps=1000)."""
        g = torch.Generator().manual_seed(0)
        data = (torch.randn(32, 1, 8, 8, generator=g), torch.randint(0, 3, (32,), generator=g))
        loader = TensorLoader([t.to(self.device) for t in data], batch_size=8)
        trainer = pl.Trainer(accelerator=self.device, devices=1, max_epochs=1, logger=False,
                             enable_checkpointing=False, enable_progress_bar=False,
                             enable_model_summary=False, log_every_n_steps=1000,
                             callbacks=[Poison(self), self.snapshots])
        depth = [0]  # training_step runs inside optimizer_step (in the closure)

        def counted(original: Callable[..., Any]) -> Callable[..., Any]:
            def read(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
                if depth[0]:
                    self.reads[-1] += 1
                return original(tensor, *args, **kwargs)
            return read

        def watched(method: Callable[..., Any]) -> Callable[..., Any]:
            def run(*args: Any, **kwargs: Any) -> Any:
                depth[0] += 1
                try:
                    with self.on_reads():
                        return method(*args, **kwargs)
                finally:
                    depth[0] -= 1
            return run

        with ExitStack() as stack:
            for name in HOST_READS:
                stack.enter_context(mock.patch.object(
                    torch.Tensor, name, counted(getattr(torch.Tensor, name))))
            for hook in ("training_step", "optimizer_step"):
                stack.enter_context(mock.patch.object(
                    self.module, hook, watched(getattr(self.module, hook))))
            trainer.fit(self.module, train_dataloaders=loader)


class Poison(NaNLogits):
    """NaN logits on the run's bad batch; opens the batch's read count."""

    def __init__(self, run: TinyRun) -> None:
        super().__init__({run.bad_batch})
        self.run = run

    def on_train_batch_start(self, trainer: pl.Trainer, module: pl.LightningModule,
                             batch: object, batch_idx: int) -> None:
        self.run.reads.append(0)
        super().on_train_batch_start(trainer, module, batch, batch_idx)


def tiny_run(policy: str, bad_batch: int, device: str = "cpu",
             optimizer: Callable[..., torch.optim.Optimizer] | None = None,
             **kwargs: Any) -> TinyRun:
    """SGD with momentum and weight decay by default: a zeroed gradient would still move
    the weights."""
    torch.manual_seed(0)
    optimizer = optimizer or partial(torch.optim.SGD, lr=0.1, momentum=0.9, weight_decay=0.01)
    module = SaliencyGuidedModule(TinyNet(), optimizer, num_classes=3, k=0.5,
                                  nan_policy=policy)
    return TinyRun(module, bad_batch, device, **kwargs)


def test_skip_leaves_everything_bit_identical_without_reading_the_device_each_step() -> None:
    run = tiny_run("skip", bad_batch=2)
    run.fit()
    # the first step creates the momentum buffers: one read, to drop them if it was bad
    assert run.reads == [1, 0, 0, 0]
    before, bad, after = run.snapshots.after[1:4]
    assert len(before) == 15  # 6 parameters, 3 BatchNorm buffers, 6 momentum buffers
    assert all(torch.equal(a, b) for a, b in zip(before, bad, strict=True))  # batch 2 undone
    moved = [not torch.equal(a, b) for a, b in zip(bad, after, strict=True)]
    assert sum(moved) == len(moved)  # while batch 3 moves every one of them
    assert run.module.skipped_batches == 1  # counted at the check at the epoch's end
    metrics = run.module.trainer.callback_metrics
    assert metrics["train/skipped_batches"] == 1.0
    assert torch.isfinite(metrics["train/loss"])  # the bad batch weighs 0 in the means


def test_stop_checks_lazily_and_names_the_first_bad_step() -> None:
    run = tiny_run("stop", bad_batch=1)
    with pytest.raises(NonFiniteError) as err:
        run.fit()
    assert str(err.value).startswith("non-finite loss at train step 1 (epoch 0, batch 1): "
                                     "loss=nan")
    assert run.reads == [0, 0, 0, 0]  # all four steps ran; the check at the end found it
    assert len(run.snapshots.after) == 4


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_skip_runs_its_steps_without_a_cuda_sync() -> None:
    """Adam on the GPU keeps its step counter on the host: the check corrects it."""

    @contextmanager
    def no_sync() -> Iterator[None]:
        # Batches 1 and 2 (the bad one): batch 0 creates Adam's state (one read, to drop it
        # if that step was bad) and the epoch's last batch logs its loss for the progress bar.
        torch.cuda.set_sync_debug_mode("error" if len(run.reads) in (2, 3) else "default")
        try:
            yield
        finally:
            torch.cuda.set_sync_debug_mode("default")

    run = tiny_run("skip", bad_batch=2, device="cuda",
                   optimizer=partial(torch.optim.Adam, lr=1e-2), on_reads=no_sync)
    run.fit()
    assert run.reads[1:3] == [0, 0]
    weights = slice(0, 9)  # parameters and BatchNorm buffers
    assert all(torch.equal(a, b) for a, b in zip(run.snapshots.after[1][weights],
                                                 run.snapshots.after[2][weights], strict=True))
    state = run.module.trainer.optimizers[0].state
    assert {float(s["step"]) for s in state.values()} == {3.0}  # 4 batches, 1 skipped
    assert run.module.skipped_batches == 1
