"""What the views share: their options, the registry they join, and a table writer."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table as RichTable

from experiments.runs.collect import Record
from experiments.runs.files import claim_stem, write_csv
from experiments.runs.html import Section, join, page, paragraph, table
from sgt.atomic import write_text
from sgt.evaluation import measure
from sgt.registry import Registry


@dataclass
class Options:
    """What the command line says about a view (each view reads what it needs)."""

    out: Path
    name: str | None = None  # the evaluation looked at (eval.name)
    html: bool = False
    sort_by: str | None = None  # sweep: best/worst by this column (else: the Pareto front)
    labels: list[str] | None = None
    method: str = "grad"
    min_accuracy: float = 0.9


def directions(keys: Sequence[str]) -> str:
    """Which measures among summary ``keys`` are better higher and which lower, in words,
    as each evaluation declares it (``↑ higher is better: gap; ↓ lower: morf_auc``)."""
    by_direction: dict[bool, dict[str, None]] = {True: {}, False: {}}
    for key in keys:
        found = measure(key)
        if found is not None:
            name = next(p for p in key.split("/") if measure(p) is found)
            by_direction[found.higher_is_better][name] = None
    parts = [f"{arrow} {words}: {', '.join(names)}" for arrow, words, names in (
        ("↑", "higher is better", by_direction[True]), ("↓", "lower is better",
                                                        by_direction[False])) if names]
    return "; ".join(parts)


View = Callable[[Sequence[Record], Options], dict[str, Path]]
VIEWS: Registry[View] = Registry("view")


@dataclass
class TableView:
    """A titled table: its cells as shown (``cells``), its numbers (``rows``: csv, json)
    and notes below it."""

    stem: str
    title: str
    header: list[str]
    cells: list[list[str]]
    rows: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        lines = [f"# {self.title}", "", "| " + " | ".join(self.header) + " |",
                 "|" + "---|" * len(self.header)]
        lines += ["| " + " | ".join(row) + " |" for row in self.cells]
        return "\n".join([*lines, "", *self.notes, ""])

    def console(self) -> RichTable:
        out = RichTable(title=self.title)
        for i, column in enumerate(self.header):
            out.add_column(column, justify="left" if i < 2 else "right", overflow="fold")
        for row in self.cells:
            out.add_row(*row)
        return out


def write_table(view: TableView, options: Options) -> dict[str, Path]:
    """Print ``view`` and write ``<stem>.md``, ``.csv``, ``.json`` (and ``.html``)."""
    suffixes = [".md", ".csv", ".json", *([".html"] if options.html else [])]
    stem = claim_stem(options.out, view.stem, suffixes)
    files = {suffix[1:]: options.out / f"{stem}{suffix}" for suffix in suffixes}
    write_text(files["md"], view.markdown())
    write_csv(files["csv"], list(dict.fromkeys(key for row in view.rows for key in row)),
              view.rows)
    write_text(files["json"], json.dumps({"title": view.title, "rows": view.rows,
                                          "notes": view.notes}, indent=2))
    if options.html:
        body = join([table(view.header, view.cells),
                          *(paragraph(note) for note in view.notes)])
        write_text(files["html"], page(view.title, str(options.out),
                                       [Section("table", view.title, body)], "sgt report"))
    width = None if sys.stdout.isatty() else 160
    Console(width=width).print(view.console())
    return files


def number(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def poster(name: str) -> dict[str, Any]:
    """The poster's numbers of one table (``docs/poster_<name>.json``)."""
    path = Path(__file__).resolve().parents[3] / "docs" / f"poster_{name}.json"
    return json.loads(path.read_text(encoding="utf-8"))

__all__ = ["VIEWS", "Options", "TableView", "number", "poster", "write_table"]
