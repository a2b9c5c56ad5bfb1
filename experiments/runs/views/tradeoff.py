"""``--view tradeoff``: test accuracy against each method's faithfulness relative to random,
one point per run, the Pareto front marked (:mod:`experiments.runs.tradeoff`).

Prints one row per run (its accuracy, each method's faithfulness, the methods whose front it
is on) and writes ``tradeoff.csv`` with ``tradeoff.png`` (and ``--html``, a page with both).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from experiments.runs.collect import Record
from experiments.runs.files import claim_stem, write_csv
from experiments.runs.html import Section, figure, page, table
from experiments.runs.tradeoff import front_of, tradeoff
from experiments.runs.views.common import VIEWS, Options, TableView
from sgt.atomic import write_text


def tradeoff_rows(records: Sequence[Record], name: str) -> tuple[list[dict[str, Any]],
                                                                  dict[str, list]]:
    """One row per run (``run, label, test/acc, <method>…, front``) and the points."""
    points = tradeoff(records, name)
    fronts = front_of(points)
    rows = []
    for record in records:
        if record.name not in fronts:
            continue
        row: dict[str, Any] = {"run": record.name, "label": record.label,
                               "test/acc": record.metrics.get("test/acc")}
        for method, method_points in points.items():
            row[method] = next((p.faithfulness for p in method_points
                                if p.run == record.name), None)
        row["front"] = " ".join(fronts[record.name])
        rows.append(row)
    return rows, points


def tradeoff_figure(points: dict[str, list], path: Path) -> Path:
    from sgt.plots import plot_tradeoff

    return plot_tradeoff({m: [(p.label if len(p.label) < 24 else p.run, p.accuracy,
                               p.faithfulness, p.on_front) for p in pts]
                          for m, pts in points.items()}, path)


@VIEWS.register("tradeoff")
def show(records: Sequence[Record], options: Options) -> dict[str, Path]:
    name = options.name or "accuracy_drop"
    rows, points = tradeoff_rows(records, name)
    suffixes = [".csv", ".png", *([".html"] if options.html else [])]
    stem = claim_stem(options.out, "tradeoff", suffixes)
    files = {suffix[1:]: options.out / f"{stem}{suffix}" for suffix in suffixes}
    write_csv(files["csv"], list(rows[0]), rows)
    tradeoff_figure(points, files["png"])
    header = list(rows[0])
    cells = [[_text(row[c]) for c in header] for row in rows]
    view = TableView(stem, f"Accuracy against faithfulness ({name}, relative to random)",
                     header, cells, rows)
    if options.html:
        write_text(files["html"], page(view.title, str(options.out), [
            Section("table", "Runs", table(header, cells)),
            Section("figure", "Trade-off", figure(files["png"], "accuracy against "
                                                  "faithfulness, the Pareto front joined"))],
            "sgt report"))
    from rich.console import Console

    Console(width=160).print(view.console())
    return files


def _text(value: Any) -> str:
    if value is None:
        return "—"
    return f"{value:.4f}" if isinstance(value, float) else str(value)
