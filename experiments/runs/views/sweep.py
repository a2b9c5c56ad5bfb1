"""``--view sweep`` (the default): one row per run, and every metric against each swept
setting.

A row is the run's overrides, ``k``, ``λ``, test accuracy (``metrics.json``) and its
evaluation ``--name``'s summary (e.g. the area under each method's accuracy-drop curve).
The table is printed and written to ``report.csv``, with one plot per swept setting (a line
per value of the other). ``--html`` also writes ``report.html``, one self-contained page
(figures embedded, opens offline): the table sortable by a click on a column, the
trade-off figure (test accuracy against each method's faithfulness relative to random, the
Pareto front joined), the plots, and the curves of the front's two ends (or, with
``--sort-by COLUMN``, of the best and the worst run by that column). A ``front`` column
names the methods whose Pareto front each run is on.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from experiments.runs.collect import (
    Record,
    columns_of,
    result_columns,
    rows,
    stale_notes,
    swept,
)
from experiments.runs.files import claim_stem, write_csv
from experiments.runs.pages import check_sort_column, sweep_page
from experiments.runs.tradeoff import front_of, tradeoff
from experiments.runs.views.common import VIEWS, Options, directions
from experiments.runs.views.tradeoff import tradeoff_figure
from sgt.atomic import write_text
from sgt.errors import SettingError


def _cell(value: Any) -> str:
    if value is None:
        return "—"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def print_rows(table_rows: Sequence[dict[str, Any]], name: str) -> None:
    columns = columns_of(table_rows)
    table = Table(title=f"sweep, {name} ({directions(columns)})")
    for column in columns:
        table.add_column(column, justify="left" if column in ("job", "overrides") else "right",
                         overflow="fold")
    for row in table_rows:
        table.add_row(*(_cell(row.get(c)) for c in columns))
    width = None if sys.stdout.isatty() else max(120, 14 * len(columns))
    Console(width=width).print(table)


@VIEWS.register("sweep")
def show(records: Sequence[Record], options: Options) -> dict[str, Path]:
    """``report.csv``, one plot per swept setting and (``--html``) ``report.html``."""
    from sgt.plots import plot_metric_vs

    name = options.name or "accuracy_drop"
    table_rows = rows(records, name)
    if options.html and options.sort_by is not None:
        check_sort_column(table_rows, options.sort_by)
    try:
        points = tradeoff(records, name)
    except SettingError:  # no faithfulness relative to random: no front
        points = {}
    if points:
        fronts = front_of(points)
        for record, row in zip(records, table_rows, strict=True):
            on = fronts.get(record.name)
            row["front"] = None if on is None else " ".join(on)
    varying = swept(table_rows)
    html = [".html", *(["_tradeoff.png"] if points else [])] if options.html else []
    out = options.out
    stem = claim_stem(out, "report", [".csv", *(f"_vs_{s}.png" for s in varying), *html])
    files = {"csv": out / f"{stem}.csv"}
    write_csv(files["csv"], columns_of(table_rows), table_rows)
    ys = [c for c in result_columns(table_rows) if c != "front"]
    for setting in varying:
        others = [s for s in varying if s != setting]
        files[f"vs_{setting}"] = plot_metric_vs(table_rows, setting, ys,
                                                out / f"{stem}_vs_{setting}.png",
                                                group=others[0] if others else None)
    if options.html:
        files["html"] = out / f"{stem}.html"
        plots = {k: p for k, p in files.items() if k.startswith("vs_")}
        if points:
            files["tradeoff"] = tradeoff_figure(points, out / f"{stem}_tradeoff.png")
        write_text(files["html"], sweep_page(common_root(records), table_rows, name,
                                             options.sort_by, plots, files.get("tradeoff"),
                                             options.method, stale_notes(records)))
    print_rows(table_rows, name)
    return files


def common_root(records: Sequence[Record]) -> Path:
    """The folder the runs' names are relative to (a run's own name is its folder's)."""
    folder, name = records[0].folder, Path(records[0].name)
    return folder.parents[len(name.parts) - 1]
