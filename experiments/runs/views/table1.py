"""``--view table1``: the poster's Table 1 (ERASER) beside ours, one table per task.

The poster's layout (docs/paper.md §4.1): the metrics as rows, method × model (regular,
k = 0, and SGT) as columns, each cell ``ours (poster)`` for comprehensiveness ↑ and
sufficiency ↓ (AOPC); token F1 (macro) and AUPRC against the human rationales as ours only.
The poster's numbers are ``docs/poster_table1.json``. A model no more accurate on the
evaluated instances than always answering their most frequent class is flagged: its
saliency explains a constant.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from experiments.runs.collect import Record
from experiments.runs.views.common import VIEWS, Options, TableView, number, poster, write_table
from sgt.errors import SettingError
from sgt.evaluation import EraserResult

REGIMES = ("regular", "sgt")
OURS = {"comprehensiveness": "comprehensiveness_aopc", "sufficiency": "sufficiency_aopc",
        "token_f1": "token_f1_macro", "auprc": "token_auprc"}
CHANCE = ("{} predicts no better than the most frequent class: its saliency explains a "
          "constant, so its numbers say nothing (another seed, more epochs, or other settings)")


def at_chance(result: EraserResult) -> bool:
    labels = (result.instances or {}).get("labels")
    return bool(labels) and result.accuracy <= max(Counter(labels).values()) / len(labels)


def poster_value(paper: dict[str, Any], task: str, metric: str, method: str,
                 regime: str) -> float | None:
    value = paper["tasks"].get(task, {}).get(metric, {}).get(method)
    return value[REGIMES.index(regime)] if isinstance(value, list) else value


def task_of(record: Record) -> str:
    return str(record.setting("dataset.task") or record.choices.get("dataset", "?"))


def table_rows(task: str, runs: dict[str, tuple[Record, EraserResult]],
               paper: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per method and model: ours, the poster's, the model's test accuracy."""
    methods = dict.fromkeys([*(m for m in paper["methods"]
                               if any(m in res.methods for _, res in runs.values())),
                             *(m for _, res in runs.values() for m in res.methods)])
    rows = []
    for method in methods:
        for regime, (record, result) in runs.items():
            rows.append({
                "task": task, "method": method, "model": regime,
                **{key: getattr(result, field).get(method) for key, field in OURS.items()},
                **{f"poster_{key}": poster_value(paper, task, key, method, regime)
                   for key in ("comprehensiveness", "sufficiency")},
                "test_acc": record.metrics.get("test/acc"), "num_samples": result.num_samples,
                "run": str(record.folder)})
    return rows


@VIEWS.register("table1")
def show(records: Sequence[Record], options: Options) -> dict[str, Path]:
    name = options.name or "eraser"
    paper = poster("table1")
    by_task: dict[str, dict[str, tuple[Record, EraserResult]]] = {}
    for record in records:
        result = record.evaluation(name)
        if isinstance(result, EraserResult):
            by_task.setdefault(task_of(record), {})[record.regime] = (record, result)
    if not by_task:
        raise SettingError(f"none of the {len(records)} runs has an ERASER evaluation "
                           f"eval/{name}.json; Table 1 is of text runs evaluated with "
                           "eval=eraser (grid=eraser_table1 does both)")
    files: dict[str, Path] = {}
    for task, runs in by_task.items():
        runs = {regime: runs[regime] for regime in REGIMES if regime in runs}
        rows = table_rows(task, runs, paper)
        cells_by = {(r["method"], r["model"]): r for r in rows}
        columns = list(cells_by)
        header = [task, ""] + [f"{paper['methods'].get(m, m)} {paper['models'][k]}"
                               for m, k in columns]
        cells = [[title, arrow] + [
            f"{number(cells_by[c][key])} ({number(cells_by[c][f'poster_{key}'])})"
            for c in columns] for key, title, arrow in (
                ("comprehensiveness", "Comprehensiveness", "↑"),
                ("sufficiency", "Sufficiency", "↓"))]
        cells += [[title, "↑"] + [number(cells_by[c][key]) for c in columns]
                  for key, title in (("token_f1", "Token F1"), ("auprc", "AUPRC"))]
        accuracy = ", ".join(f"{paper['models'][k]} {100 * record.metrics['test/acc']:.1f} %"
                             for k, (record, _) in runs.items()
                             if record.metrics.get("test/acc") is not None)
        notes = [
            "AOPC over 1, 5, 10, 20 and 50 % of the document (docs/paper.md §3(c)); each "
            "cell is ours, with the poster's number in brackets (docs/paper.md §4.1). Token F1 "
            "(macro) and AUPRC score the saliency against the human rationales as ERASER's "
            "scorer does (not in the poster). The poster's Random column is one number; it "
            "stands beside both of our models.",
            f"Test accuracy: {accuracy} ({rows[0]['num_samples']} evaluated instances).",
            *(f"**Warning**: {CHANCE.format(paper['models'][k])}."
              for k, (_, result) in runs.items() if at_chance(result)),
            *(f"- {paper['models'][k]}: `{record.folder}`" for k, (record, _) in runs.items()),
        ]
        view = TableView(f"table1_{task}", f"ERASER {task}: the poster's Table 1 beside ours",
                         header, cells, rows, notes)
        files.update({f"{task}_{k}": p for k, p in write_table(view, options).items()})
    return files
