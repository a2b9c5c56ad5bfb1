"""The training step alone: SGT against a plain step and against the original code's step,
per dataset and precision, every variant from the same initial weights and batches."""

from __future__ import annotations

import copy
from collections.abc import Iterator

import pytorch_lightning as pl

from experiments.bench.cases import (
    Step,
    cycling,
    datasets,
    first_batches,
    module_step,
    read_data,
    ready_module,
    train_config,
)
from experiments.bench.measure import Context, Figure, figure, ratio
from experiments.bench.paper_code import paper_code_step
from experiments.runs.build import build

SECTION = "steps"
PAPER = "paper_code"
# SGT variants: overrides of the composed config (the paper code's step is built apart).
VARIANTS: dict[str, list[str]] = {
    "plain": ["sgt.k=0"],
    "sgt": ["sgt.k=0.5"],
    "sgt_train_sal": ["sgt.k=0.5", "sgt.saliency_mode=train"],
    "sgt_concat": ["sgt.k=0.5", "sgt.concat_forward=true", "sgt.masked_bn_stats=true"],
}
PRECISION_NAMES = {"32-true": "fp32", "bf16-mixed": "bf16"}


def run(ctx: Context) -> Iterator[Figure]:
    for dataset in datasets(ctx):
        yield from dataset_steps(ctx, dataset)


def dataset_steps(ctx: Context, dataset: str) -> Iterator[Figure]:
    """Each variant's step time, then its ratio to the plain step (and SGT's to the original
    code's), as soon as both are measured."""
    base = train_config(ctx, dataset)
    pl.seed_everything(base.seed, verbose=False)
    datamodule, first = build(base)
    used = read_data(ctx, datamodule, 2 * base.dataset.batch_size)
    batches = first_batches(datamodule, ctx.device)
    weights = copy.deepcopy(first.net.state_dict())
    note = f"{type(first.net).__name__}, batch {base.dataset.batch_size}, {used} data"
    variants = ctx.pick([*VARIANTS, PAPER], ["plain", "sgt", PAPER], ["plain", "sgt", PAPER])
    for precision in ctx.pick(["32-true", "bf16-mixed"], ["32-true"], ["32-true"]):
        case = f"{dataset} {PRECISION_NAMES[precision]}"
        times = {}
        for variant in variants:
            if variant == PAPER:
                net = copy.deepcopy(first.net).to(ctx.device)
                step: Step = paper_code_step(net, first.optimizer_factory(params=net.parameters()),
                                             ctx.device, precision)
            else:
                cfg = train_config(ctx, dataset, *VARIANTS[variant])
                step = module_step(ready_module(cfg, ctx.device, weights), ctx.device, precision)
            times[variant] = ctx.measure(cycling(step, batches), f"{case} {variant}")
            yield figure(SECTION, f"{case} {variant}: step", times[variant], note=note)
            if variant == PAPER:
                yield ratio(SECTION, f"{case}: ours ÷ original code", times["sgt"],
                            times[PAPER], "SGT step; < 1: ours is faster")
            elif variant != "plain":
                yield ratio(SECTION, f"{case}: {variant} ÷ plain step", times[variant],
                            times["plain"], "lower is better")
