"""Training epoch times of the recipes, as ``metrics.json`` reports them (``EpochTimer``:
the epoch's training, validation excluded). A GPU fits whole epochs; a CPU fits a few
batches of each, extrapolated to the epoch (and says so)."""

from __future__ import annotations

import math
from collections.abc import Iterator

from experiments.bench.cases import TRAIN_IMAGES, datasets, fit, train_config
from experiments.bench.measure import Context, Figure, figure, from_samples
from experiments.runs.timing import EpochTimer

SECTION = "epochs"
VARIANTS = {"sgt": "sgt.k=0.5", "plain": "sgt.k=0"}


def run(ctx: Context) -> Iterator[Figure]:
    for dataset in datasets(ctx):
        for variant in ctx.pick(["sgt", "plain"], ["sgt"], ["sgt"]):
            yield epoch_time(ctx, dataset, variant)


def epoch_time(ctx: Context, dataset: str, variant: str) -> Figure:
    """The median epoch after the first (which pays for compilation and autotuning)."""
    epochs, limit = ctx.pick(4, 2, 2), ctx.pick(None, 2, 2)
    cfg = train_config(ctx, dataset, VARIANTS[variant], f"trainer.max_epochs={epochs}",
                       f"trainer.limit_train_batches={limit or 'null'}",
                       "trainer.limit_val_batches=1", "test=false")
    batch = cfg.dataset.batch_size
    timer = EpochTimer()
    _, datamodule, used = fit(ctx, cfg, limit or math.ceil(TRAIN_IMAGES[dataset] / batch),
                              timer)
    train_images = len(datamodule.splits["train"][1]) if used == "real" else TRAIN_IMAGES[
        dataset]
    per_epoch = math.ceil(train_images / batch)
    note = f"{per_epoch} batches of {batch}, {used} data"
    if limit:
        note += f"; extrapolated from {limit} batches"
    return figure(SECTION, f"{dataset} {variant}: epoch",
                  from_samples(timer.times[1:], f"{dataset} {variant} epoch"),
                  scale=per_epoch / limit if limit else 1.0, note=note)
