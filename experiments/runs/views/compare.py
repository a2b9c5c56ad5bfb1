"""``--view compare``: N runs side by side; ``--view mnist``: the paper's MNIST comparison.

Reads each run's newest ``eval/<name>*.json``, prints the evaluations' summaries as one
table and writes ``compare.csv`` plus figures: the evaluation's own (e.g. the accuracy-drop
curves of all runs per method), saliency maps of the same examples, and their gradient
distributions. ``mnist`` is the same for a regular and an SGT run's accuracy drop
(``grid=mnist_comparison``), labelled by their k.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from experiments.runs.collect import Record
from experiments.runs.files import claim_stem, evaluate_command, load_run_config, write_csv
from experiments.runs.provenance import current_result
from experiments.runs.views.common import VIEWS, Options, directions
from sgt.atomic import write_text
from sgt.errors import SettingError
from sgt.evaluation import result_from_dict

PER_EXAMPLE = ("inputs", "labels", "features", "gradients", "tokens")  # rows = examples


def load_evaluation(run_dir: Path, name: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """A run's newest evaluation (its JSON) and its saved examples (``None`` if absent)."""
    _, data, stale = current_result(run_dir, name)
    if stale is not None:
        raise SettingError(f"{run_dir}'s newest evaluation is stale ({stale}); evaluate it "
                           f"again: {evaluate_command(run_dir)}")
    if data is None:
        raise SettingError(f"{run_dir} has no eval/{name}.json; evaluate it first: "
                           f"{evaluate_command(run_dir)}")
    examples_pt = data.get("files", {}).get("examples_pt")
    examples = (torch.load(examples_pt, weights_only=True)
                if examples_pt and Path(examples_pt).is_file() else None)
    return data, examples


def first_examples(examples: dict[str, Any], n: int) -> dict[str, Any]:
    """The first ``n`` of a run's saved examples (``maps`` are cut by the caller)."""
    out = {k: (v[:n] if k in PER_EXAMPLE and v is not None else v) for k, v in examples.items()}
    out["extras"] = [extra[:n] for extra in examples.get("extras", [])]
    return out


def _unique_labels(labels: Sequence[str], run_dirs: Sequence[Path]) -> list[str]:
    """Runs with the same label (two SGT runs with one k) are told apart by their folder."""
    return [f"{label} ({d.name})" if labels.count(label) > 1 else label
            for label, d in zip(labels, run_dirs, strict=True)]


# Dataset settings that decide which test inputs a run saw and their shape: runs that
# differ in one of them have no curves or saliency maps to put side by side.
DATA_KEYS = ("_target_", "folder", "test_dir", "image_size", "task", "max_length", "min_freq",
             "max_vocab_size", "layout", "process", "time_steps", "num_features", "num_test",
             "data_seed")


def data_of(run_dir: Path) -> dict[str, Any]:
    """The run's data, as :data:`DATA_KEYS` of its ``dataset`` config."""
    dataset = load_run_config(run_dir).get("dataset") or {}
    return {key: dataset.get(key) for key in DATA_KEYS if key in dataset}


def check_comparable(run_dirs: Sequence[Path]) -> None:
    """Refuse, before anything is written, runs whose test data differ."""
    first, *others = run_dirs
    expected = data_of(first)
    for run_dir in others:
        found = data_of(run_dir)
        differ = [k for k in dict.fromkeys([*expected, *found]) if expected.get(k) != found.get(k)]
        if differ:
            shown = ", ".join(f"dataset.{k} {expected.get(k)!r} vs {found.get(k)!r}"
                              for k in differ[:3])
            raise SettingError(f"{first} and {run_dir} were not run on the same data ({shown}); "
                               "compare runs of one dataset, with the same data settings")


def compare(run_dirs: Sequence[Path], out_dir: Path, labels: Sequence[str] | None = None,
            name: str = "accuracy_drop", method: str = "grad") -> dict[str, Any]:
    """Compare evaluated runs; returns ``{"summary": {key: {label: value}}, "labels",
    "files"}``. ``method`` picks the saliency maps drawn (when every run saved it)."""
    from sgt.plots import plot_examples, plot_gradient_distributions, result_figures

    if len(run_dirs) < 2:
        raise SettingError(f"compare needs at least two runs, got {len(run_dirs)}")
    if labels is not None and len(labels) != len(run_dirs):
        raise SettingError(f"--labels gives {len(labels)} labels for {len(run_dirs)} runs")
    check_comparable([Path(d) for d in run_dirs])
    loaded = [load_evaluation(Path(d), name) for d in run_dirs]
    labels = _unique_labels(list(labels or [d["label"] for d, _ in loaded]), run_dirs)
    results = {lab: result_from_dict(d) for lab, (d, _) in zip(labels, loaded, strict=True)}
    summaries = {lab: r.summary() for lab, r in results.items()}
    keys = list(dict.fromkeys(k for s in summaries.values() for k in s))
    summary = {k: {lab: s.get(k) for lab, s in summaries.items()} for k in keys}

    stem = claim_stem(out_dir, "compare", [".csv"])
    files = {"csv": out_dir / f"{stem}.csv"}
    write_csv(files["csv"], [name, *labels], ([k, *summary[k].values()] for k in keys))
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
    table = Table(title=f"{name} ({directions(list(summary))})")
    table.add_column("measure", overflow="fold")
    for label in labels:
        table.add_column(label, justify="right", overflow="fold")
    for key, row in summary.items():
        table.add_row(key, *("—" if v is None else f"{v:.4f}" for v in row.values()))
    Console().print(table)


def html_page(done: dict[str, Any], name: str, out: Path) -> Path:
    """The comparison as one self-contained page: the summary table and every figure."""
    from experiments.runs.html import Section, figure, join, page, table

    labels = done["labels"]
    rows = [[key, *("—" if v is None else f"{v:.4f}" for v in values.values())]
            for key, values in done["summary"].items()]
    figures = [figure(p, kind.replace("_", " ")) for kind, p in done["files"].items()
               if p.suffix == ".png"]
    path = out / f"{done['files']['csv'].stem}.html"
    return write_text(path, page(f"{name}: {' vs '.join(labels)}", str(out), [
        Section("summary", "Summary", table(["measure", *labels], rows)),
        Section("figures", "Figures", join(figures))], "sgt report"))


@VIEWS.register("compare")
def show(records: Sequence[Record], options: Options) -> dict[str, Path]:
    name = options.name or "accuracy_drop"
    done = compare([r.folder for r in records], options.out, options.labels, name,
                   options.method)
    print_table(done["summary"], done["labels"], name)
    if options.html:
        done["files"]["html"] = html_page(done, name, options.out)
    return done["files"]


@VIEWS.register("mnist")
def show_mnist(records: Sequence[Record], options: Options) -> dict[str, Path]:
    """The regular run(s) first, then SGT, by their accuracy drop."""
    ordered = sorted(records, key=lambda r: r.k)
    labels = options.labels or [r.label for r in ordered]
    mnist = Options(options.out, options.name or "accuracy_drop", options.html,
                    options.sort_by, labels, options.method, options.min_accuracy)
    return show(ordered, mnist)
