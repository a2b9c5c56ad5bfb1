"""Runs and sweeps as tables and figures: ``python -m experiments.report FOLDER [FOLDER ...]``.

One collector reads every run below the folders given (run folders, sweep folders, any
folder above runs) and a view shows them (``--view``, see :mod:`experiments.runs.views`):

- ``sweep`` (default): one row per run, every metric against each swept setting;
- ``compare``: N runs side by side (``--labels``), with their curves and saliency maps;
- ``tradeoff``: test accuracy against each method's faithfulness relative to random, the
  Pareto front marked;
- ``mnist``: the paper's MNIST comparison, regular vs SGT (``grid=mnist_comparison``);
- ``table1`` / ``table2``: the poster's Table 1 (ERASER) / Table 2 (time series) beside ours.

Every view prints its table and writes csv (and md/json for the tables) under names no
earlier report holds, in ``--out`` (default: the folder given, or ``outputs/report/<time>``
for several); ``--html`` adds a self-contained page. Given one run folder, ``--html`` writes
that run's page: metrics, training curves, evaluations, config.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from experiments.runs.cli import fail
from experiments.runs.collect import collect, stale_notes
from experiments.runs.compose import new_dated_folder
from experiments.runs.files import claim_stem, saved_config
from experiments.runs.pages import run_page
from experiments.runs.views import VIEWS, Options
from sgt.atomic import all_or_nothing, check_writable, storage_error, write_text
from sgt.errors import SGTError


def write_run_report(run_dir: Path, out_dir: Path) -> Path:
    """A run folder's ``report.html`` (numbered when taken)."""
    path = out_dir / f"{claim_stem(out_dir, 'report', ['.html'])}.html"
    return write_text(path, run_page(run_dir))


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path,
                        help="run or sweep folders (every run below them is collected)")
    parser.add_argument("--view", default="sweep", choices=VIEWS.names(),
                        help="how to show the runs (default: sweep)")
    parser.add_argument("--name", help="the evaluation shown (eval.name; default: the view's "
                        "own: accuracy_drop, eraser or timeseries)")
    parser.add_argument("--out", type=Path, help="output folder")
    parser.add_argument("--html", action="store_true", help="also write a self-contained page")
    parser.add_argument("--sort-by", help="sweep: the column that picks the best and worst "
                        "run of the page (default: the ends of --method's Pareto front)")
    parser.add_argument("--labels", nargs="+", help="compare: one label per run")
    parser.add_argument("--method", default="grad", help="compare: the saliency maps drawn; "
                        "sweep: the method whose Pareto front the page marks")
    parser.add_argument("--min-accuracy", type=float, default=0.9,
                        help="table2: leave out models below this test accuracy (0.9, as the "
                             "benchmark)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse(argv)
    if not 0 <= args.min_accuracy <= 1:
        fail(f"--min-accuracy must be a fraction in [0, 1], got {args.min_accuracy}")
    one = args.folders[0] if len(args.folders) == 1 else None
    run_page_only = (one is not None and saved_config(one).is_file()
                     and args.html and args.view == "sweep")
    try:
        out = check_writable(args.out or one or new_dated_folder(Path("outputs/report")),
                             "choose a writable folder with --out")
        with all_or_nothing(f"free space in {out} (or choose another --out) and run again"):
            if run_page_only:
                print(write_run_report(one, out))
                return
            records = collect(args.folders)
            options = Options(out, args.name, args.html, args.sort_by, args.labels,
                              args.method, args.min_accuracy)
            files = VIEWS.get(args.view)(records, options)
        for note in stale_notes(records):
            print(f"note: {note}")
    except SGTError as err:
        fail(str(err))
    except OSError as err:  # the dated folder could not be made
        fail(str(storage_error(err, "choose a writable folder with --out")))
    for path in files.values():
        print(path)


if __name__ == "__main__":
    main()
