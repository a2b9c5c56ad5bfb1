"""The benchmark suite: ``python -m experiments.benchmark suite [--device cuda|cpu]
[--budget SECONDS] [--out DIR] [--compare OLD.json]``.

Runs every measurement the README quotes (``experiments/bench/``: the step ratios, loop ÷
step, epoch times, start-up, the accuracy drop's wall time, time-series generation, ROAD
imputation), cheapest and most important first, and stops cleanly at the budget. Writes
``benchmark.json`` (each figure's median, IQR and n; device, torch, commit) and
``benchmark.md`` into ``--out``. A section's name instead of ``suite`` runs that section
alone; ``compare NEW.json OLD.json`` prints the ratios of two earlier runs.

Examples::

    python -m experiments.benchmark suite --budget 600              # on the GPU, if any
    python -m experiments.benchmark suite --device cpu --budget 120 --out /tmp/bench
    python -m experiments.benchmark steps --device cpu              # one section
    python -m experiments.benchmark compare new/benchmark.json old/benchmark.json
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any


def parse_args(argv: list[str]) -> argparse.Namespace:
    from experiments.bench import SECTIONS  # light: --help and bad flags answer at once

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("suite", "compare", *SECTIONS),
                        help="suite, compare, or one section's name")
    parser.add_argument("files", nargs="*", type=Path, help="compare: NEW.json OLD.json")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="auto: cuda when there is one")
    parser.add_argument("--budget", type=float, default=600.0,
                        help="seconds for everything (default 600)")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for benchmark.json and .md (default outputs/benchmark/"
                             "<time>)")
    parser.add_argument("--compare", type=Path, default=None, metavar="OLD.json",
                        help="print each figure's ratio to an earlier run's")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes: checks that every section runs, measures little")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.command == "compare":
        if len(args.files) != 2:
            parser.error("compare takes NEW.json OLD.json; got "
                         + (" ".join(map(str, args.files)) or "none"))
    elif args.files:
        parser.error(f"{args.command} takes no file arguments; got {args.files[0]}")
    if not (math.isfinite(args.budget) and args.budget > 0):
        parser.error(f"--budget must be a positive number of seconds; got {args.budget}")
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads must be at least 1; got {args.threads}")
    if args.out is not None and args.out.exists() and not args.out.is_dir():
        parser.error(f"--out {args.out} is a file; give a folder")
    if args.out is not None and (args.out / "benchmark.json").exists():
        parser.error(f"--out {args.out} holds an earlier benchmark.json; give a new folder "
                     "(an earlier run is never overwritten)")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    """The suite's record (``benchmark.json``'s contents), or ``None`` for ``compare``."""
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    import torch
    from rich.console import Console

    from experiments.bench import report

    console = Console(width=None if sys.stdout.isatty() else 160)
    try:
        if args.command == "compare":
            console.print(report.compare_table(*map(report.read_benchmark, args.files)))
            return None
        old = report.read_benchmark(args.compare) if args.compare else None
    except ValueError as err:
        sys.exit(f"error: {err}")
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("error: --device cuda, but torch sees no CUDA GPU here; use --device cpu")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else "cpu" if args.device == "auto" else args.device)
    record = run(args, device, " ".join(["python -m experiments.benchmark", *argv]), console)
    console.print(report.section_table(record))
    if old is not None:
        console.print(report.compare_table(record, old))
    return record


def run(args: argparse.Namespace, device: Any, command: str, console: Any) -> dict[str, Any]:
    """The sections within the budget, written to ``benchmark.json`` and ``.md``."""
    from experiments.bench import SECTIONS, report
    from experiments.bench.measure import Context
    from experiments.bench.suite import run_suite
    from experiments.runs.compose import new_dated_folder
    from experiments.runs.files import write_json_atomic
    from sgt.atomic import write_text

    out = args.out or new_dated_folder(Path("outputs") / "benchmark")
    started, start = datetime.now().isoformat(timespec="seconds"), time.monotonic()
    with tempfile.TemporaryDirectory(prefix="sgt-bench-") as work:
        ctx = Context(device, args.quick, start + args.budget,
                      0.05 if args.quick else 1.0 if device.type == "cuda" else 0.5, Path(work))
        sections = SECTIONS if args.command == "suite" else (args.command,)
        figures, results = run_suite(ctx, sections, console)
    suite = report.metadata(ctx, command, args.budget, started, time.monotonic() - start)
    record = report.benchmark_record(suite, figures, results)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "benchmark.json", record)
    write_text(out / "benchmark.md", report.markdown(record))
    console.print(f"written {out / 'benchmark.json'} and benchmark.md")
    return record


if __name__ == "__main__":
    main()
