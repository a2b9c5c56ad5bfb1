"""Self-contained HTML: escaped text, tables (sortable by a click on a header), figures as
PNG data URIs, collapsible blocks, and the page around them with its own CSS and script.

A page fetches nothing: its Content-Security-Policy allows only inline styles, inline
scripts and ``data:`` images, so it opens from disk in any browser, offline, as one file.
Every piece returns a string of HTML in which all text has passed through ``escape``.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path
from string import Template

CSS = """
:root { --ink: #1f2328; --muted: #59636e; --line: #d1d9e0; --soft: #f6f8fa;
        --accent: #0969da; --good: #1a7f37; --bad: #cf222e; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--ink); background: #fff; line-height: 1.5;
       font: 15px/1.5 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; }
header { padding: 20px 32px 14px; border-bottom: 1px solid var(--line); background: var(--soft); }
header h1 { margin: 0; font-size: 24px; font-weight: 600; }
header p { margin: 4px 0 0; color: var(--muted); }
nav { margin-top: 10px; font-size: 14px; }
nav a { color: var(--accent); text-decoration: none; margin-right: 18px; }
main { padding: 8px 32px 40px; max-width: 1400px; }
section { margin-top: 26px; }
h2 { font-size: 19px; font-weight: 600; margin: 0 0 10px; padding-bottom: 6px;
     border-bottom: 1px solid var(--line); }
h3 { font-size: 16px; font-weight: 600; margin: 20px 0 6px; }
p.note { color: var(--muted); margin: 4px 0 10px; font-size: 14px; }
code, pre { font: 13px/1.45 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
code { background: var(--soft); padding: 1px 5px; border-radius: 4px; }
pre { background: var(--soft); border: 1px solid var(--line); border-radius: 6px;
      padding: 10px 14px; overflow-x: auto; margin: 6px 0; }
.table-wrap { overflow-x: auto; }
table { border-collapse: collapse; font-size: 14px; margin: 4px 0 8px; }
th, td { border-bottom: 1px solid var(--line); padding: 5px 12px; text-align: left;
         white-space: nowrap; }
th { background: var(--soft); font-weight: 600; white-space: normal; vertical-align: bottom; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.missing { color: var(--muted); }
tbody tr:hover { background: #f0f6ff; }
tr.best td:first-child { box-shadow: inset 4px 0 var(--good); }
tr.worst td:first-child { box-shadow: inset 4px 0 var(--bad); }
th button { all: unset; cursor: pointer; }
th button::after { content: "\\00a0\\2195"; color: var(--muted); font-size: 11px; }
th[aria-sort="ascending"] button::after { content: "\\00a0\\25B2"; color: var(--accent); }
th[aria-sort="descending"] button::after { content: "\\00a0\\25BC"; color: var(--accent); }
.badge { display: inline-block; font-size: 11px; font-weight: 600; padding: 0 6px;
         border-radius: 10px; margin-left: 6px; color: #fff; }
.badge.best { background: var(--good); }
.badge.worst { background: var(--bad); }
.stats { display: flex; flex-wrap: wrap; gap: 12px; margin: 14px 0 4px; }
.stat { border: 1px solid var(--line); border-radius: 8px; padding: 8px 16px; min-width: 150px; }
.stat .value { font-size: 22px; font-weight: 600; font-variant-numeric: tabular-nums; }
.stat .name { color: var(--muted); font-size: 13px; }
figure { margin: 10px 0 18px; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 6px; }
figcaption { color: var(--muted); font-size: 13px; margin-top: 2px; }
details { border: 1px solid var(--line); border-radius: 6px; margin: 6px 0; }
details > summary { cursor: pointer; padding: 6px 12px; background: var(--soft);
                    font-weight: 600; font-size: 14px; }
details > :not(summary) { margin: 8px 12px; }
footer { color: var(--muted); font-size: 12px; padding: 12px 32px 24px;
         border-top: 1px solid var(--line); }
"""

# Click a header: sort the rows by that column's data-sort values (numbers as numbers),
# ascending, then descending; empty cells stay last either way.
SORT_SCRIPT = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  var headers = Array.from(table.tHead.rows[0].cells);
  headers.forEach(function (th, column) {
    th.querySelector("button").addEventListener("click", function () {
      var ascending = th.getAttribute("aria-sort") !== "ascending";
      headers.forEach(function (h) { h.setAttribute("aria-sort", "none"); });
      th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
      var body = table.tBodies[0];
      var key = function (row) { return row.cells[column].dataset.sort; };
      var rows = Array.from(body.rows);
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        if (x === "" || y === "") { return (x === "") - (y === ""); }
        var order = isNaN(x) || isNaN(y) ? x.localeCompare(y) : Number(x) - Number(y);
        return ascending ? order : -order;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
"""

PAGE = Template("""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy"
      content="default-src 'none'; img-src data:; style-src 'unsafe-inline'; \
script-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>$title</title>
<style>$css</style>
</head>
<body>
<header>
<h1>$title</h1>
<p>$subtitle</p>
<nav>$nav</nav>
</header>
<main>
$body
</main>
<footer>$footer</footer>
<script>$script</script>
</body>
</html>
""")


@dataclass(frozen=True)
class Cell:
    """A table cell: the text shown, the value sorting uses (``None``: no value), and an
    optional tag after the text (``best``/``worst``, styled by the page)."""

    text: str
    sort: float | str | None = None
    numeric: bool = False
    badge: str = ""

    def html(self) -> str:
        classes = [c for c, on in (("num", self.numeric), ("missing", self.sort is None)) if on]
        attrs = f' class="{" ".join(classes)}"' if classes else ""
        key = "" if self.sort is None else str(self.sort)
        tag = f' <span class="badge {escape(self.badge)}">{escape(self.badge)}</span>' \
            if self.badge else ""
        return f'<td{attrs} data-sort="{escape(key)}">{escape(self.text)}{tag}</td>'


@dataclass(frozen=True)
class Section:
    """A titled part of a page; ``anchor`` links it from the page's navigation."""

    anchor: str
    title: str
    body: str

    def html(self) -> str:
        return (f'<section id="{escape(self.anchor)}">\n<h2>{escape(self.title)}</h2>\n'
                f"{self.body}\n</section>")


def table(header: Sequence[str], rows: Sequence[Sequence[Cell | str]], *,
          sortable: bool = False, row_classes: Sequence[str] = ()) -> str:
    """A table; a plain string is a text cell. ``sortable`` makes each header a button
    that sorts the rows; ``row_classes`` (one per row, may be empty) style rows."""
    def th(name: str) -> str:
        text = escape(name).replace("/", "/<wbr>")  # long names break after a slash
        if sortable:
            return f'<th aria-sort="none"><button type="button">{text}</button></th>'
        return f"<th>{text}</th>"

    css = ' class="sortable"' if sortable else ""
    lines = [f'<div class="table-wrap"><table{css}>']
    lines.append(f"<thead><tr>{''.join(th(name) for name in header)}</tr></thead><tbody>")
    for i, row in enumerate(rows):
        style = row_classes[i] if i < len(row_classes) else ""
        cells = "".join((c if isinstance(c, Cell) else Cell(c, c)).html() for c in row)
        lines.append(f'<tr class="{escape(style)}">{cells}</tr>' if style else f"<tr>{cells}</tr>")
    lines.append("</tbody></table></div>")
    return "\n".join(lines)


def figure(png: Path, caption: str) -> str:
    """A PNG embedded as a data URI, with its caption (also its alt text)."""
    data = base64.b64encode(png.read_bytes()).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{escape(caption)}">'
            f"<figcaption>{escape(caption)}</figcaption></figure>")


def stats(items: Sequence[tuple[str, str]]) -> str:
    """Headline numbers as a row of boxes: ``(name, value with unit)``."""
    boxes = "".join(f'<div class="stat"><div class="value">{escape(value)}</div>'
                    f'<div class="name">{escape(name)}</div></div>' for name, value in items)
    return f'<div class="stats">{boxes}</div>'


def details(summary: str, content: str) -> str:
    """A collapsible block, closed (``content`` is HTML)."""
    return f"<details><summary>{escape(summary)}</summary>\n{content}\n</details>"


def heading(text: str) -> str:
    """A heading inside a section."""
    return f"<h3>{escape(text)}</h3>"


def preformatted(text: str) -> str:
    return f"<pre>{escape(text)}</pre>"


def paragraph(text: str, *, code: Sequence[str] = ()) -> str:
    """A note; each of ``code`` is appended as inline code."""
    extra = "".join(f" <code>{escape(c)}</code>" for c in code)
    return f'<p class="note">{escape(text)}{extra}</p>'


def page(title: str, subtitle: str, sections: Sequence[Section], footer: str) -> str:
    """The whole document: header with navigation, sections, footer, the sorting script."""
    nav = "".join(f'<a href="#{escape(s.anchor)}">{escape(s.title)}</a>' for s in sections)
    return PAGE.substitute(title=escape(title), subtitle=escape(subtitle), nav=nav,
                           body="\n".join(s.html() for s in sections), footer=escape(footer),
                           css=CSS, script=SORT_SCRIPT)
