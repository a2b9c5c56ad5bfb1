"""Self-contained HTML: tables (sortable by a click on a header), figures as PNG data URIs,
collapsible blocks, and the page around them, from the jinja2 templates in ``templates/``.

Rendering autoescapes every value: a config value, a path or an override holding markup shows
as that text. A page fetches nothing: its CSS and sort script (``static/``) are inlined, and
its Content-Security-Policy allows only inline styles, inline scripts and ``data:`` images, so
it opens from disk in any browser, offline, as one file. Every piece returns ``Markup`` (HTML
that is not escaped again when placed in another piece).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup, escape

STATIC = Path(__file__).parent / "static"


@cache
def _templates() -> Any:
    env = Environment(loader=PackageLoader("experiments.runs", "templates"),
                      autoescape=select_autoescape(default_for_string=True, default=True),
                      trim_blocks=True, lstrip_blocks=True)
    # long column names break after a slash
    env.filters["breakable"] = lambda text: escape(text).replace("/", Markup("/<wbr>"))
    return env.get_template("report.html.j2").module


def _render(macro: str, *args: Any) -> Markup:
    return Markup(getattr(_templates(), macro)(*args))


@dataclass(frozen=True)
class Cell:
    """A table cell: the text shown, the value sorting uses (``None``: no value), and an
    optional tag after the text (``best``/``worst``, styled by the page)."""

    text: str
    sort: float | str | None = None
    numeric: bool = False
    badge: str = ""

    @property
    def classes(self) -> str:
        return " ".join(c for c, on in (("num", self.numeric), ("missing", self.sort is None))
                        if on)

    @property
    def sort_key(self) -> str:
        return "" if self.sort is None else str(self.sort)


@dataclass(frozen=True)
class Section:
    """A titled part of a page; ``anchor`` links it from the page's navigation; ``body`` is
    HTML (the pieces below)."""

    anchor: str
    title: str
    body: str


def table(header: Sequence[str], rows: Sequence[Sequence[Cell | str]], *,
          sortable: bool = False, row_classes: Sequence[str] = ()) -> Markup:
    """A table; a plain string is a text cell. ``sortable`` makes each header a button
    that sorts the rows; ``row_classes`` (one per row, may be empty) style rows."""
    cells = [[c if isinstance(c, Cell) else Cell(c, c) for c in row] for row in rows]
    classes = [row_classes[i] if i < len(row_classes) else "" for i in range(len(rows))]
    return _render("table", list(header), cells, sortable, classes)


def figure(png: Path, caption: str) -> Markup:
    """A PNG embedded as a data URI, with its caption (also its alt text)."""
    return _render("figure", base64.b64encode(png.read_bytes()).decode("ascii"), caption)


def stats(items: Sequence[tuple[str, str]]) -> Markup:
    """Headline numbers as a row of boxes: ``(name, value with unit)``."""
    return _render("stats", list(items))


def details(summary: str, content: str) -> Markup:
    """A collapsible block, closed (``content`` is HTML)."""
    return _render("details", summary, Markup(content))


def heading(text: str) -> Markup:
    """A heading inside a section."""
    return _render("heading", text)


def preformatted(text: str) -> Markup:
    return _render("preformatted", text)


def paragraph(text: str, *, code: Sequence[str] = ()) -> Markup:
    """A note; each of ``code`` is appended as inline code."""
    return _render("paragraph", text, list(code))


def join(parts: Sequence[str]) -> Markup:
    """Pieces of HTML one after another (each already HTML, not text)."""
    return Markup("\n").join(Markup(p) for p in parts)


def page(title: str, subtitle: str, sections: Sequence[Section], footer: str) -> str:
    """The whole document: header with navigation, sections, footer, the sorting script."""
    body = [Section(s.anchor, s.title, Markup(s.body)) for s in sections]
    return _render("page", title, subtitle, body, footer,
                   Markup((STATIC / "report.css").read_text(encoding="utf-8")),
                   Markup((STATIC / "sort.js").read_text(encoding="utf-8")))
