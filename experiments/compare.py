"""Regular vs SGT side by side: ``python -m experiments.compare RUN_A RUN_B [RUN ...]``.

Reads each run's newest ``eval/<name>*.json`` (written by ``experiments.evaluate`` or
``experiments.train ... eval=<name>``), prints the evaluations' summaries as one table and
writes ``compare.csv`` plus figures: the evaluation's own (e.g. the accuracy-drop curves of
all runs per method), saliency maps of the same examples, and their gradient distributions.
"""

from __future__ import annotations

import argparse
import csv
import json
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from experiments.runs.cli import fail
from experiments.runs.files import claim_stem, latest_result
from sgt.errors import SettingError, SGTError
from sgt.evaluation import result_from_dict


def load_evaluation(run_dir: Path, name: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """A run's newest evaluation (its JSON) and its saved examples (``None`` if absent)."""
    if not run_dir.is_dir():
        raise SettingError(f"run dir {run_dir} does not exist")
    found = latest_result(run_dir, name)
    if found is None:
        raise SettingError(f"{run_dir} has no eval/{name}.json; evaluate it first: "
                           f"python -m experiments.evaluate ckpt_path={run_dir}")
    data = json.loads(found.read_text())
    examples_pt = data.get("files", {}).get("examples_pt")
    examples = (torch.load(examples_pt, weights_only=True)
                if examples_pt and Path(examples_pt).is_file() else None)
    return data, examples


PER_EXAMPLE = ("inputs", "labels", "features", "gradients", "tokens")  # rows = examples


def first_examples(examples: dict[str, Any], n: int) -> dict[str, Any]:
    """The first ``n`` of a run's saved examples (``maps`` are cut by the caller)."""
    out = {k: (v[:n] if k in PER_EXAMPLE and v is not None else v) for k, v in examples.items()}
    out["extras"] = [extra[:n] for extra in examples.get("extras", [])]
    return out


def _unique_labels(labels: Sequence[str], run_dirs: Sequence[Path]) -> list[str]:
    """Runs with the same label (two SGT runs with one k) are told apart by their folder."""
    return [f"{label} ({d.name})" if labels.count(label) > 1 else label
            for label, d in zip(labels, run_dirs, strict=True)]


def compare(run_dirs: Sequence[Path], out_dir: Path, labels: Sequence[str] | None = None,
            name: str = "accuracy_drop", method: str = "grad") -> dict[str, Any]:
    """Compare evaluated runs; returns ``{"summary": {key: {label: value}}, "labels",
    "files"}``. ``method`` picks the saliency maps drawn (when every run saved it)."""
    from sgt.plots import plot_examples, plot_gradient_distributions, result_figures

    if len(run_dirs) < 2:
        raise SettingError(f"compare needs at least two run dirs, got {len(run_dirs)}")
    if labels is not None and len(labels) != len(run_dirs):
        raise SettingError(f"--labels gives {len(labels)} labels for {len(run_dirs)} runs")
    loaded = [load_evaluation(Path(d), name) for d in run_dirs]
    labels = _unique_labels(list(labels or [d["label"] for d, _ in loaded]), run_dirs)
    results = {lab: result_from_dict(d) for lab, (d, _) in zip(labels, loaded, strict=True)}
    summaries = {lab: r.summary() for lab, r in results.items()}
    keys = list(dict.fromkeys(k for s in summaries.values() for k in s))
    summary = {k: {lab: s.get(k) for lab, s in summaries.items()} for k in keys}

    stem = claim_stem(out_dir, "compare", [".csv"])
    files = {"csv": out_dir / f"{stem}.csv"}
    with files["csv"].open("w", newline="") as f:
        csv.writer(f).writerows([[name, *labels], *([k, *summary[k].values()] for k in keys)])
    files.update(result_figures(results, out_dir / stem))
    examples = {lab: ex for lab, (_, ex) in zip(labels, loaded, strict=True) if ex is not None}
    if len(examples) == len(labels) and all(method in ex["maps"] for ex in examples.values()):
        n = min(ex["inputs"].shape[0] for ex in examples.values())
        first = first_examples(next(iter(examples.values())), n)
        files["saliency"] = plot_examples(
            first.get("modality", "image"), first,
            {lab: ex["maps"][method][:n] for lab, ex in examples.items()},
            out_dir / f"{stem}_saliency.png")
        files["gradients"] = plot_gradient_distributions(
            {lab: ex["gradients"][:n] for lab, ex in examples.items()},
            out_dir / f"{stem}_gradients.png")
    return {"summary": summary, "labels": labels, "files": files}


def print_table(summary: dict[str, dict[str, float | None]], labels: Sequence[str],
                name: str) -> None:
    table = Table(title=f"{name} (auc: area under the curve, lower = more faithful)")
    table.add_column("measure", overflow="fold")
    for label in labels:
        table.add_column(label, justify="right", overflow="fold")
    for key, row in summary.items():
        table.add_row(key, *("—" if v is None else f"{v:.4f}" for v in row.values()))
    Console().print(table)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="evaluated run dirs (>= 2)")
    parser.add_argument("--labels", nargs="+", help="one label per run (default: from k, λ)")
    parser.add_argument("--name", default="accuracy_drop", help="evaluation name (eval.name)")
    parser.add_argument("--method", default="grad", help="saliency maps to draw")
    parser.add_argument("--out", type=Path, help="output folder (default: outputs/compare/<time>)")
    args = parser.parse_args(argv)
    out = args.out or Path("outputs/compare") / datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    try:
        done = compare(args.runs, out, args.labels, args.name, args.method)
    except SGTError as err:
        fail(str(err))
    print_table(done["summary"], done["labels"], args.name)
    for path in done["files"].values():
        print(path)


if __name__ == "__main__":
    main()
