"""One table for a Hydra sweep: ``python -m experiments.report MULTIRUN_DIR``.

Every job folder (``<multirun dir>/<n>/`` with ``.hydra/config.yaml``) gives one row: its
overrides, ``k``, ``λ``, test accuracy (``metrics.json``) and, where the job was evaluated,
its evaluation's summary (e.g. the area under each method's accuracy-drop curve). The table
is printed and written to ``report.csv`` in the multirun dir, with every metric plotted
against each swept setting (one line per value of the other). Nothing is overwritten.

``--html`` also writes ``report.html``, one self-contained page (figures embedded, opens
offline): the table sortable by a click on a column, the plots, and the best and the worst
job's curves (by test accuracy, or ``--sort-by COLUMN``). Given a run folder instead of a
sweep, ``--html`` writes that run's page: metrics, training curves, evaluations, config.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from experiments.runs.cli import fail
from experiments.runs.files import claim_stem
from experiments.runs.pages import check_sort_column, run_page, sweep_page
from experiments.runs.sweep import collect, columns_of, result_columns, swept
from sgt.errors import SGTError


def write_report(rows: Sequence[dict[str, Any]], out_dir: Path, sweep_dir: Path | None = None,
                 name: str = "accuracy_drop", sort_by: str = "test/acc") -> dict[str, Path]:
    """``report.csv`` and one plot per swept setting, under a name no earlier report holds;
    with ``sweep_dir`` (where ``rows`` come from) also ``report.html``."""
    from sgt.plots import plot_metric_vs

    varying = swept(rows)
    if sweep_dir is not None:
        check_sort_column(rows, sort_by)
    html = [".html"] if sweep_dir is not None else []
    stem = claim_stem(out_dir, "report", [".csv", *(f"_vs_{s}.png" for s in varying), *html])
    files = {"csv": out_dir / f"{stem}.csv"}
    with files["csv"].open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns_of(rows))
        writer.writeheader()
        writer.writerows(rows)
    ys = result_columns(rows)
    for setting in varying:
        others = [s for s in varying if s != setting]
        files[f"vs_{setting}"] = plot_metric_vs(rows, setting, ys,
                                                out_dir / f"{stem}_vs_{setting}.png",
                                                group=others[0] if others else None)
    if sweep_dir is not None:
        files["html"] = out_dir / f"{stem}.html"
        plots = {k: p for k, p in files.items() if k.startswith("vs_")}
        files["html"].write_text(sweep_page(sweep_dir, rows, name, sort_by, plots),
                                 encoding="utf-8")
    return files


def write_run_report(run_dir: Path, out_dir: Path) -> Path:
    """A run folder's ``report.html`` (numbered when taken)."""
    path = out_dir / f"{claim_stem(out_dir, 'report', ['.html'])}.html"
    path.write_text(run_page(run_dir), encoding="utf-8")
    return path


def _cell(value: Any) -> str:
    if value is None:
        return "—"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def print_rows(rows: Sequence[dict[str, Any]]) -> None:
    columns = columns_of(rows)
    table = Table(title="sweep (auc: area under the accuracy-drop curve, lower = more faithful)")
    for column in columns:
        table.add_column(column, justify="left" if column in ("job", "overrides") else "right",
                         overflow="fold")
    for row in rows:
        table.add_row(*(_cell(row.get(c)) for c in columns))
    width = None if sys.stdout.isatty() else max(120, 14 * len(columns))
    Console(width=width).print(table)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="a Hydra sweep folder (or, with --html, "
                        "a run folder)")
    parser.add_argument("--name", default="accuracy_drop", help="evaluation name (eval.name)")
    parser.add_argument("--out", type=Path, help="output folder (default: the given folder)")
    parser.add_argument("--html", action="store_true",
                        help="also write report.html, one self-contained page")
    parser.add_argument("--sort-by", default="test/acc",
                        help="column that picks the best and worst job of the HTML report")
    args = parser.parse_args(argv)
    out = args.out or args.folder
    is_run = (args.folder / ".hydra" / "config.yaml").is_file()
    if is_run and not args.html:
        fail(f"{args.folder} is a run folder, not a sweep: add --html for its report page")
    try:
        if is_run:
            print(write_run_report(args.folder, out))
            return
        rows = collect(args.folder, args.name)
        files = write_report(rows, out, args.folder if args.html else None, args.name,
                             args.sort_by)
    except SGTError as err:
        fail(str(err))
    print_rows(rows)
    for path in files.values():
        print(path)


if __name__ == "__main__":
    main()
