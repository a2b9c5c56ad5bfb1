"""The step inside the real ``Trainer.fit`` (callbacks, loggers, progress bar, data loading)
next to the bare step of the same config: loop ÷ step, what the loop adds."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytorch_lightning as pl

from experiments.bench.cases import (
    cycling,
    datasets,
    first_batches,
    fit,
    module_step,
    ready_module,
    train_config,
)
from experiments.bench.measure import Context, Figure, figure, from_samples, ratio, synchronize

SECTION = "loop"
VARIANTS = {"plain": "sgt.k=0", "sgt": "sgt.k=0.5"}


class StepBlocks(pl.Callback):
    """Seconds per training step inside ``Trainer.fit``, one value per block of ``block``
    consecutive steps after ``warmup`` steps, ``blocks`` of them: each block runs from its
    first batch's start to its last batch's end, with every hook, log, progress bar and data
    fetch between, as ``Timer`` blocks do. The device is synchronised at block boundaries
    only, so the loop runs inside a block as it does in training."""

    def __init__(self, warmup: int, block: int, blocks: int) -> None:
        self.warmup, self.block, self.blocks = warmup, block, blocks
        self.times: list[float] = []
        self._done = 0
        self._start: float | None = None

    def on_train_batch_start(self, trainer: pl.Trainer, module: pl.LightningModule,
                             batch: Any, batch_idx: int) -> None:
        if self._done == self.warmup and self._start is None:
            synchronize(module.device)
            self._start = time.perf_counter()

    def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        self._done += 1
        timed = self._done - self.warmup
        if self._start is not None and timed % self.block == 0 and len(self.times) < self.blocks:
            synchronize(module.device)
            now = time.perf_counter()
            self.times.append((now - self._start) / self.block)
            self._start = now

    @property
    def steps(self) -> int:
        return self.warmup + self.block * self.blocks


def run(ctx: Context) -> Iterator[Figure]:
    for dataset in datasets(ctx):
        for variant, override in VARIANTS.items():
            yield from loop_and_step(ctx, dataset, variant, override)


def loop_and_step(ctx: Context, dataset: str, variant: str, override: str) -> Iterator[Figure]:
    window = StepBlocks(ctx.pick(5, 2, 1), ctx.pick(5, 1, 1), ctx.pick(10, 4, 3))
    cfg = train_config(ctx, dataset, override, "trainer.max_epochs=1",
                       f"trainer.limit_train_batches={window.steps}",
                       "trainer.limit_val_batches=1", "test=false")
    _, datamodule, used = fit(ctx, cfg, window.steps + 1, window)
    if len(window.times) < window.blocks:
        raise RuntimeError(f"Trainer.fit ran fewer than {window.steps} steps on {dataset}")
    loop = from_samples(window.times, f"{dataset} {variant} loop")
    case, note = f"{dataset} {variant}", f"batch {cfg.dataset.batch_size}, {used} data"
    yield figure(SECTION, f"{case}: step in Trainer.fit", loop,
                 note=f"{note}, steps per block: {window.block}")
    step = module_step(ready_module(cfg, ctx.device), ctx.device, str(cfg.trainer.precision))
    bare = ctx.measure(cycling(step, first_batches(datamodule, ctx.device)), f"{case} step")
    yield figure(SECTION, f"{case}: bare step", bare, note=note)
    yield ratio(SECTION, f"{case}: loop ÷ step", loop, bare, "lower is better")
