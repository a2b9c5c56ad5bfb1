"""Time the synthetic time-series generator: ``python -m experiments.benchmark_timeseries``.

Generates every one of the 70 datasets (10 layouts × 7 processes, docs/paper.md §5) with
the given sizes, without the cache, and prints the seconds per process (summed over the
layouts) and in total, wall-clock and CPU time.

Examples::

    python -m experiments.benchmark_timeseries                 # the benchmark's sizes
    python -m experiments.benchmark_timeseries --num-train 200 --threads 2
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
from rich.console import Console
from rich.table import Table

from sgt.data.timeseries_synth import LAYOUTS, PROCESSES, SyntheticSpec, generate


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-train", type=int, default=1000)
    parser.add_argument("--num-test", type=int, default=100)
    parser.add_argument("--time-steps", type=int, default=50)
    parser.add_argument("--num-features", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Seconds per process over all layouts; prints them as a table with the total."""
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    seconds: dict[str, float] = {}
    cpu: dict[str, float] = {}  # CPU time: what a busy, shared machine does not inflate
    for name in PROCESSES.names():
        start, start_cpu = time.perf_counter(), time.process_time()
        for layout in LAYOUTS:
            generate(SyntheticSpec(layout, name, args.num_train, args.num_test,
                                   args.time_steps, args.num_features, args.seed))
        seconds[name] = time.perf_counter() - start
        cpu[name] = time.process_time() - start_cpu
    total, total_cpu = sum(seconds.values()), sum(cpu.values())
    table = Table(title=f"{len(LAYOUTS) * len(seconds)} datasets, {args.num_train} train + "
                        f"{args.num_test} test of {args.time_steps}×{args.num_features}, "
                        f"{torch.get_num_threads()} threads")
    for column in ("process", "seconds (all layouts)", "per dataset", "CPU seconds"):
        table.add_column(column, justify="left" if column == "process" else "right")
    for name, value in seconds.items():
        table.add_row(name, f"{value:.2f}", f"{value / len(LAYOUTS):.3f}", f"{cpu[name]:.2f}")
    table.add_row("total", f"{total:.2f}", f"{total / (len(LAYOUTS) * len(seconds)):.3f}",
                  f"{total_cpu:.2f}", style="bold")
    console = Console(width=None if sys.stdout.isatty() else 120)
    console.print(table)
    console.print(f"total {total:.1f} s ({total_cpu:.1f} s of CPU time)")
    return seconds


if __name__ == "__main__":
    main()
