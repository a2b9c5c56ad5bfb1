"""Generating the synthetic time-series benchmark: all 70 datasets (10 layouts × 7
processes, docs/paper.md §5) at the benchmark's sizes, without the cache."""

from __future__ import annotations

from collections.abc import Iterator

from experiments.bench.measure import Context, Figure, figure
from sgt.data.timeseries_synth import LAYOUTS, PROCESSES, SyntheticSpec, generate

SECTION = "timeseries"
TINY = {"num_train": 20, "num_test": 5, "time_steps": 10, "num_features": 10}


def run(ctx: Context) -> Iterator[Figure]:
    sizes = ctx.pick({}, {}, TINY)  # {}: SyntheticSpec's defaults, the benchmark's sizes
    specs = [SyntheticSpec(layout, process, **sizes)
             for process in PROCESSES.names() for layout in LAYOUTS]

    def generate_all() -> None:
        for spec in specs:
            generate(spec)

    measured = ctx.measure(generate_all, SECTION, warmup=0)
    spec = specs[0]
    yield figure(SECTION, f"generate all {len(specs)} datasets", measured,
                 note=f"{spec.num_train} train + {spec.num_test} test of "
                      f"{spec.time_steps}×{spec.num_features} each, on the CPU")
