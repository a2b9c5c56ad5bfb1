"""``--view table2``: the poster's Table 2 (time series) beside ours.

Per architecture (the run's ``model`` choice) and method: Diff(AUP) and Diff(AUR), the
method's weighted area minus the ``random`` baseline's (:func:`sgt.evaluation.
difference_from_random`), averaged over the datasets whose model reached ``--min-accuracy``
(the benchmark leaves the others out, docs/paper.md §2), for regular (k = 0) and SGT runs,
with the poster's numbers (``docs/poster_table2.json``, docs/paper.md §4.2) beside them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from experiments.runs.collect import Record
from experiments.runs.views.common import VIEWS, Options, TableView, number, poster, write_table
from sgt.errors import SettingError
from sgt.evaluation import TimeSeriesResult, difference_from_random

REGIMES = ("regular", "sgt")
NOTE = ("Diff(AUP), Diff(AUR): the method's weighted AUP (AUR) minus the `random` "
        "baseline's, averaged over the datasets whose model reached the accuracy threshold; "
        "each cell is `regular / SGT` (the poster's `Trad. / Sal.`). `random` is the "
        "benchmark's: another method's map with its features permuted (docs/paper.md §3(d)). "
        "The benchmark trains to 99 % accuracy and keeps the best *test* checkpoint; these "
        "models train up to 50 epochs and are selected on validation loss.")


def evaluated(record: Record, name: str) -> TimeSeriesResult | None:
    result = record.evaluation(name)
    return result if isinstance(result, TimeSeriesResult) else None


def included(record: Record, name: str, min_accuracy: float) -> bool:
    accuracy = record.metrics.get("test/acc")
    return (evaluated(record, name) is not None and accuracy is not None
            and accuracy >= min_accuracy)


def table_rows(records: Sequence[Record], name: str, min_accuracy: float,
               paper: dict[str, Any]) -> list[dict[str, Any]]:
    """Per architecture × method: ours (regular, SGT), the poster's, and how many models
    were included out of how many trained."""
    archs = [a for a in paper["archs"] if any(r.choices.get("model") == a for r in records)]
    archs += sorted({r.choices.get("model", "?") for r in records} - set(archs))
    rows = []
    for arch in archs:
        diffs, counts = {}, {}
        for regime in REGIMES:
            mine = [r for r in records if r.choices.get("model", "?") == arch
                    and r.regime == regime]
            kept = [evaluated(r, name) for r in mine if included(r, name, min_accuracy)]
            diffs[regime] = difference_from_random(kept) if kept else {}
            counts[regime] = f"{len(kept)}/{len(mine)}"
        methods = dict.fromkeys([*paper["methods"], *(m for d in diffs.values() for m in d)])
        for method in methods:
            row: dict[str, Any] = {"arch": arch, "method": method}
            for metric in ("aup", "aur"):
                theirs = paper[f"diff_{metric}"].get(arch, {}).get(method, [None, None])
                for regime, value in zip(REGIMES, theirs, strict=True):
                    row[f"{regime}_{metric}"] = diffs[regime].get(method, {}).get(metric)
                    row[f"poster_{regime}_{metric}"] = value
            row.update({f"{regime}_models": counts[regime] for regime in REGIMES})
            rows.append(row)
    return rows


def _pair(row: dict[str, Any], prefix: str, metric: str) -> str:
    return " / ".join(number(row[f"{prefix}{regime}_{metric}"]) for regime in REGIMES)


def model_lines(records: Sequence[Record], name: str, min_accuracy: float) -> list[str]:
    """Per architecture and regime: models included / trained, mean and lowest accuracy."""
    lines = []
    for arch in dict.fromkeys(r.choices.get("model", "?") for r in records):
        for regime in REGIMES:
            mine = [r for r in records if r.choices.get("model", "?") == arch
                    and r.regime == regime]
            accs = [a for r in mine if (a := r.metrics.get("test/acc")) is not None]
            if not mine:
                continue
            spread = (f"mean {100 * sum(accs) / len(accs):.1f} %, lowest "
                      f"{100 * min(accs):.1f} %" if accs else "none finished")
            kept = sum(included(r, name, min_accuracy) for r in mine)
            lines.append(f"- {arch} {regime}: {kept}/{len(mine)} ≥ {100 * min_accuracy:g} % "
                         f"test accuracy ({spread})")
    return lines


@VIEWS.register("table2")
def show(records: Sequence[Record], options: Options) -> dict[str, Path]:
    name = options.name or "timeseries"
    if not any(evaluated(r, name) for r in records):
        raise SettingError(f"none of the {len(records)} runs has a time-series evaluation "
                           f"eval/{name}.json; Table 2 is of time-series runs evaluated with "
                           "eval=timeseries (grid=timeseries_table2 does both)")
    paper = poster("table2")
    rows = table_rows(records, name, options.min_accuracy, paper)
    header = ["architecture", "method", "Diff(AUP) ours", "Diff(AUP) poster", "Diff(AUR) ours",
              "Diff(AUR) poster", f"models ≥ {100 * options.min_accuracy:g} % (reg., SGT)"]
    cells = [[paper["archs"].get(r["arch"], r["arch"]),
              paper["methods"].get(r["method"], r["method"]),
              _pair(r, "", "aup"), _pair(r, "poster_", "aup"), _pair(r, "", "aur"),
              _pair(r, "poster_", "aur"), f"{r['regular_models']}, {r['sgt_models']}"]
             for r in rows]
    notes = [NOTE, "", *model_lines(records, name, options.min_accuracy)]
    return write_table(TableView("table2", "Time series: poster Table 2 beside ours", header,
                                 cells, rows, notes), options)
