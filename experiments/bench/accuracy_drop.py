"""The accuracy drop's wall time: every method of ``configs/eval/accuracy_drop.yaml`` at
each of its levels on MNIST test images, with the MNIST recipe's model (untrained: the work
does not depend on the weights), as ``experiments.evaluate`` configures it, per 10 000
images."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator

import pytorch_lightning as pl

from experiments.bench.cases import read_data, train_config
from experiments.bench.measure import Context, Figure, figure
from experiments.runs.build import build
from experiments.runs.evaluation import (
    eval_batch_size,
    make_evaluation,
    make_methods,
    run_settings,
)

SECTION = "accuracy_drop"
PER = 10_000


def run(ctx: Context) -> Iterator[Figure]:
    images = ctx.pick(10_000, 32, 8)
    cfg = train_config(ctx, "mnist", "eval=accuracy_drop", "eval.metric.progress=false")
    batch = min(images, eval_batch_size(cfg.eval, ctx.device))
    cfg.dataset.eval_batch_size = batch
    pl.seed_everything(cfg.seed, verbose=False)
    datamodule, module = build(cfg)
    used = read_data(ctx, datamodule, cfg.dataset.batch_size, test_size=images)
    datamodule.setup("test")
    batches = [[t.to(ctx.device) for t in b[:2]] for b in
               itertools.islice(datamodule.test_dataloader(), math.ceil(images / batch))]
    net = module.net.to(ctx.device).eval()
    methods = make_methods(cfg.eval)
    evaluation = make_evaluation(cfg.eval, cfg.sgt.saliency_output,
                                 run_settings(datamodule, net))
    measured = ctx.measure(lambda: evaluation(net, batches, methods, module.modality),
                           SECTION, warmup=0)  # the timer's first call warms up
    per = f"{PER:,}".replace(",", " ")
    yield figure(SECTION, f"{len(methods)} methods × {len(evaluation.levels)} levels, per "
                 f"{per} MNIST images", measured, scale=PER / images,
                 note=f"{images} images of {used} data, batch {batch}, untrained MNIST CNN")
