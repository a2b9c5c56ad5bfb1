"""One table for a Hydra sweep: ``python -m experiments.report MULTIRUN_DIR``.

Every job folder (``<multirun dir>/<n>/`` with ``.hydra/config.yaml``) gives one row: its
overrides, ``k``, ``λ``, test accuracy (``metrics.json``) and, where the job was evaluated,
its evaluation's summary (e.g. the area under each method's accuracy-drop curve). The table
is printed and written to ``report.csv`` in the multirun dir, with every metric plotted
against each swept setting (one line per value of the other). Nothing is overwritten.
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
from experiments.runs.sweep import collect, columns_of, result_columns, swept
from sgt.errors import SGTError


def write_report(rows: Sequence[dict[str, Any]], out_dir: Path) -> dict[str, Path]:
    """``report.csv`` and one plot per swept setting, under a name no earlier report holds."""
    from sgt.plots import plot_metric_vs

    varying = swept(rows)
    stem = claim_stem(out_dir, "report", [".csv", *(f"_vs_{s}.png" for s in varying)])
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
    return files


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
    parser.add_argument("multirun_dir", type=Path, help="a Hydra sweep folder")
    parser.add_argument("--name", default="accuracy_drop", help="evaluation name (eval.name)")
    parser.add_argument("--out", type=Path, help="output folder (default: the multirun dir)")
    args = parser.parse_args(argv)
    try:
        rows = collect(args.multirun_dir, args.name)
        files = write_report(rows, args.out or args.multirun_dir)
    except SGTError as err:
        fail(str(err))
    print_rows(rows)
    for path in files.values():
        print(path)


if __name__ == "__main__":
    main()
