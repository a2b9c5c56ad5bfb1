"""The HTML report pages (``python -m experiments.report … --html``).

- a run: its metrics (with units), training curves from its CSV logs, every evaluation in
  ``eval/`` (summary, table, the result kind's registered figures, saliency examples) and
  its config, one collapsible block per group;
- a sweep: a table of its jobs (settings, test accuracy, evaluation summary) sortable in the
  page, metrics against each swept setting, and the best and the worst job side by side.

Figures are drawn with :mod:`sgt.plots` from the saved results (not copied from earlier
PNGs) into a temporary folder and embedded; the page is one file with nothing to fetch.
"""

from __future__ import annotations

import json
import re
import shlex
import tempfile
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from experiments.runs.collect import METRICS, SETTINGS, columns_of, result_columns, swept
from experiments.runs.files import (
    EVAL_DIR,
    evaluate_command,
    load_run_config,
    read_metrics,
    run_label,
)
from experiments.runs.history import read_history
from experiments.runs.html import (
    Cell,
    Section,
    details,
    figure,
    heading,
    join,
    page,
    paragraph,
    preformatted,
    stats,
    table,
)
from experiments.runs.provenance import current_result, stale_reason
from sgt.errors import SettingError
from sgt.evaluation import EvaluationResult, measure, result_from_dict
from sgt.plots.common import number

PERCENT = re.compile(r"(^|/)acc(uracy)?(_|$)")  # fractions shown in %: test/acc, accuracy
SECONDS = re.compile(r"_s$")  # epoch_time_s
# Training quantities where lower is better (an evaluation's measures say their own).
TRAINING_LOWER_IS_BETTER = ("loss", "loss_step", "ce", "kl")
HEADERS = {"lam": "λ"}
MEANINGS = {  # what a logged quantity is (sgt.module logs <split>/<quantity>), in order
    "acc": "accuracy",
    "acc_masked": "accuracy with the k least salient features masked",
    "acc_best": "best validation accuracy over the epochs",
    "loss": "training objective: cross-entropy + λ · KL",
    "loss_step": "training objective of the last step",
    "ce": "cross-entropy",
    "kl": "KL divergence between the clean and the masked outputs",
}
SPLIT_COLUMNS = ("train", "val", "test")
HEADLINE = {"test/acc": "test accuracy", "test/acc_masked": "test accuracy, masked",
            "val/acc_best": "best validation accuracy", "epochs": "epochs",
            "epoch_time_s": "training time"}


def value_cell(key: str, value: Any) -> Cell:
    """``value`` with its unit, from its name: accuracies in %, ``*_s`` in seconds (a list
    of epoch times as their total); right-aligned and sortable when it is a number."""
    if value is None:
        return Cell("—")
    if isinstance(value, list) and SECONDS.search(key):
        total = sum(value)
        return Cell(f"{total:.1f} s ({len(value)} × {total / max(len(value), 1):.1f} s)",
                    total, numeric=True)
    x = number(value)
    if x is None or isinstance(value, bool):
        return Cell(str(value), str(value))
    if PERCENT.search(key):
        return Cell(f"{100 * x:.2f} %", x, numeric=True)
    if SECONDS.search(key):
        return Cell(f"{x:.1f} s", x, numeric=True)
    if isinstance(value, int):
        return Cell(str(value), x, numeric=True)
    return Cell(f"{x:.4f}", x, numeric=True)


def lower_is_better(column: str) -> bool:
    """Is this column better lower? An evaluation's summary key by its measure
    (:func:`sgt.evaluation.measure`), a training quantity (``test/loss``) by its name."""
    found = measure(column)
    if found is not None:
        return not found.higher_is_better
    parts = column.split("/")
    return (parts[-1] if parts[0] in SPLIT_COLUMNS else parts[0]) in TRAINING_LOWER_IS_BETTER


def _measure_pattern(column: str) -> str:
    """``auc/grad`` -> ``auc/*`` (every method's), ``test/loss`` as it is."""
    name, slash, _ = column.partition("/")
    return column if name in SPLIT_COLUMNS or not slash else f"{name}/*"


# -- one run ------------------------------------------------------------------------------
def _metrics_section(metrics: Mapping[str, Any]) -> Section:
    """Headline numbers, then every logged quantity by split (train, val, test) and the
    run's other facts; evaluations' scalars are shown with their evaluation."""
    if not metrics:
        return Section("metrics", "Metrics",
                       paragraph("No metrics.json: the run has not finished training."))
    keys = [k for k in metrics if not k.startswith("eval/")]
    by_split = [k for k in keys if k.count("/") == 1 and k.split("/")[0] in SPLIT_COLUMNS]
    quantities = sorted(dict.fromkeys(k.split("/")[1] for k in by_split),
                        key=lambda q: (list(MEANINGS).index(q) if q in MEANINGS else 99, q))
    rows = [[q, *(value_cell(f"{s}/{q}", metrics.get(f"{s}/{q}")) for s in SPLIT_COLUMNS),
             MEANINGS.get(q, "")] for q in quantities]
    other = [[k, value_cell(k, metrics[k])] for k in keys if k not in by_split]
    return Section("metrics", "Metrics", join([
        stats([(name, f"{sum(value):.1f} s" if isinstance(value, list)
                else value_cell(key, value).text)
               for key, name in HEADLINE.items() if (value := metrics.get(key)) is not None]),
        table(["quantity", *SPLIT_COLUMNS, "meaning"], rows),
        table(["run", "value"], other) if other else ""]))


def _curves_section(run_dir: Path, label: str, tmp: Path) -> Section:
    from sgt.plots import plot_training_curves

    history = read_history(run_dir)
    if not history:
        return Section("training", "Training curves",
                       paragraph("No CSV log with epoch values under", code=[f"{run_dir}/csv"]))
    path = plot_training_curves({label: history}, tmp / "training.png")
    return Section("training", "Training curves", figure(
        path, "Per epoch: training (dashed) and validation (solid); accuracies in %"))


def _by_measure(summary: Mapping[str, float]) -> str:
    """A summary ``{measure/method: value}`` as a table, one row per method."""
    plain = {k: v for k, v in summary.items() if "/" not in k}
    split = [k.split("/", 1) for k in summary if "/" in k]
    measures = list(dict.fromkeys(m for m, _ in split))
    methods = list(dict.fromkeys(m for _, m in split))
    parts = [table(["measure", "value"], [[k, value_cell(k, v)] for k, v in plain.items()])
             ] if plain else []
    if split:
        rows = [[method, *(value_cell(m, summary.get(f"{m}/{method}")) for m in measures)]
                for method in methods]
        arrows = [f"{m} ({'lower' if lower_is_better(m) else 'higher'} = better)"
                  for m in measures]
        parts.append(table(["method", *arrows], rows, sortable=True))
    return join(parts)


def _result_table(result: EvaluationResult) -> str:
    columns, rows = result.table()
    cells = [[value_cell("", v) if number(v) is not None and not isinstance(v, bool)
              else str(v) for v in row] for row in rows]
    return details("Full table (as in the evaluation's CSV)", table(columns, cells))


def load_examples(result_json: Path) -> dict[str, Any] | None:
    """The examples an evaluation saved beside its JSON (``<stem>_examples.pt``)."""
    path = result_json.with_name(f"{result_json.stem}_examples.pt")
    return torch.load(path, weights_only=True) if path.is_file() else None


def read_result(path: Path) -> tuple[dict[str, Any], EvaluationResult]:
    try:
        data = json.loads(path.read_text())
        return data, result_from_dict(data)
    except (ValueError, KeyError, TypeError) as err:
        raise SettingError(f"{path} is not a readable evaluation result ({err}); "
                           "move it out of the eval folder or evaluate again") from err


def _examples_figures(examples: Mapping[str, Any], maps: Mapping[str, torch.Tensor],
                      gradients: Mapping[str, torch.Tensor], stem: Path, caption: str) -> str:
    from sgt.plots import plot_examples, plot_gradient_distributions

    saliency = plot_examples(examples.get("modality", "image"), examples, maps,
                             f"{stem}_examples.png")
    grads = plot_gradient_distributions(gradients, f"{stem}_gradients.png")
    return (figure(saliency, caption)
            + figure(grads, "Distribution of the input gradients of those examples"))


def _evaluation_block(path: Path, label: str, tmp: Path) -> str:
    from sgt.plots import result_figures

    data, result = read_result(path)
    settings = data.get("settings") or {}
    facts = [f"kind {result.kind}", f"{data.get('num_samples', '?')} test samples",
             f"saliency of the {data.get('output', '?')}", f"created {data.get('created', '?')}",
             f"checkpoint {Path(data.get('checkpoint', '?')).name} (epoch "
             f"{data.get('checkpoint_epoch', '?')})"]
    stale = stale_reason(path.parent.parent, data)
    parts = [heading(path.stem + (" (stale)" if stale else "")),
             *([paragraph(f"Stale: {stale}. These numbers are not the run's now: evaluate "
                          "it again.")] if stale else []),
             paragraph(" · ".join(facts)),
             _by_measure(result.summary()), _result_table(result)]
    parts += [figure(png, f"{path.stem}: {name.replace('_', ' ')}")
              for name, png in result_figures({label: result}, tmp / path.stem).items()]
    examples = load_examples(path)
    if examples is not None:
        parts.append(_examples_figures(examples, examples["maps"],
                                       {label: examples["gradients"]}, tmp / path.stem,
                                       "Saliency maps of the first test examples"))
    if settings:
        parts.append(details("Evaluation settings", preformatted(OmegaConf.to_yaml(settings))))
    return join(parts)


def _result_order(path: Path) -> tuple[str, int]:
    """``name``, ``name_2``, …: by name, then by number."""
    match = re.fullmatch(r"(.+?)(?:_(\d+))?", path.stem)
    return match.group(1), int(match.group(2) or 1)


def _evaluations_section(run_dir: Path, label: str, tmp: Path) -> Section:
    results = sorted((run_dir / EVAL_DIR).glob("*.json"), key=_result_order)
    if not results:
        return Section("evaluations", "Evaluations", paragraph(
            "Not evaluated yet:", code=[evaluate_command(run_dir)]))
    return Section("evaluations", "Evaluations",
                   join(_evaluation_block(p, label, tmp) for p in results))


def _yaml(node: Any, resolve: bool) -> str:
    try:
        return OmegaConf.to_yaml(node, resolve=resolve)
    except OmegaConfBaseException:  # an interpolation that only resolves inside Hydra
        return OmegaConf.to_yaml(node)


def _config_section(run_dir: Path, cfg: DictConfig) -> Section:
    """The config as the run resolved it (``paths.output_dir`` = the run dir): the
    command-line overrides, the top-level values, then each group collapsible."""
    cfg = cfg.copy()
    OmegaConf.update(cfg, "paths.output_dir", str(run_dir), force_add=True)
    overrides_file = run_dir / ".hydra" / "overrides.yaml"
    overrides = list(OmegaConf.load(overrides_file)) if overrides_file.is_file() else []
    parts = [paragraph("Overrides given on the command line:"),
             preformatted(" ".join(shlex.quote(str(o)) for o in overrides) or "none")]
    scalars = {k: v for k, v in OmegaConf.to_container(cfg, resolve=False).items()
               if not isinstance(v, dict | list)}
    parts.append(preformatted(_yaml(OmegaConf.create(scalars), resolve=False)))
    parts += [details(key, preformatted(_yaml(cfg[key], resolve=True)))
              for key in cfg if OmegaConf.is_config(cfg[key])]
    return Section("config", "Config", join(parts))


def _choices(run_dir: Path) -> dict[str, str]:
    """Hydra's chosen config per group (dataset, model, …), from ``.hydra/hydra.yaml``."""
    path = run_dir / ".hydra" / "hydra.yaml"
    if not path.is_file():
        return {}
    choices = OmegaConf.select(OmegaConf.load(path), "hydra.runtime.choices", default={})
    return {str(k): str(v) for k, v in choices.items()}


def run_page(run_dir: Path) -> str:
    """The report page of one run folder."""
    cfg = load_run_config(run_dir)
    label = run_label(cfg)
    choices = _choices(run_dir)
    subtitle = " · ".join([*(choices[g] for g in ("dataset", "model") if g in choices),
                           str(run_dir)])
    with tempfile.TemporaryDirectory(prefix="sgt-report-") as tmp:
        sections = [_metrics_section(read_metrics(run_dir)),
                    _curves_section(run_dir, label, Path(tmp)),
                    _evaluations_section(run_dir, label, Path(tmp)),
                    _config_section(run_dir, cfg)]
    return page(f"Run report: {label}", subtitle, sections, _footer())


def _footer() -> str:
    return (f"Written by python -m experiments.report on "
            f"{datetime.now().isoformat(sep=' ', timespec='seconds')}.")


# -- a sweep ------------------------------------------------------------------------------
def check_sort_column(rows: Sequence[Mapping[str, Any]], column: str) -> None:
    allowed = result_columns(rows)
    if column not in allowed:
        raise SettingError(f"--sort-by {column!r} is not a result column of this sweep; "
                           f"choose one of: {', '.join(allowed)}")


def best_and_worst(rows: Sequence[Mapping[str, Any]], column: str
                   ) -> tuple[Mapping[str, Any], Mapping[str, Any]] | None:
    """The jobs with the best and the worst value of ``column`` (``None`` if fewer than two
    jobs have one); lower is better for areas, losses and correlations of random maps."""
    scored = [row for row in rows if number(row.get(column)) is not None]
    if len(scored) < 2:
        return None
    scored.sort(key=lambda row: number(row[column]), reverse=not lower_is_better(column))
    return scored[0], scored[-1]


def _jobs_table(rows: Sequence[Mapping[str, Any]], marks: Mapping[str, str]) -> str:
    columns = columns_of(rows)

    def cell(row: Mapping[str, Any], column: str) -> Cell:
        value = row.get(column)
        if column == "job":
            return Cell(value, int(value) if value.isdigit() else value,
                        badge=marks.get(value, ""))
        if column == "overrides":
            return Cell(value or "—", value or None)
        if column in SETTINGS and number(value) is not None:
            return Cell(f"{number(value):g}", number(value), numeric=True)
        return value_cell(column, value)

    header = [HEADERS.get(c, c) for c in columns]
    return table(header, [[cell(r, c) for c in columns] for r in rows], sortable=True,
                 row_classes=[marks.get(r["job"], "") for r in rows])


def _pair_figures(sweep_dir: Path, pair: Mapping[str, Mapping[str, Any]], name: str,
                  tmp: Path) -> list[str]:
    """Training curves, evaluation curves and saliency maps of two jobs in shared figures."""
    from sgt.plots import plot_training_curves, result_figures

    jobs = {f"{role}: job {row['job']} ({run_label(load_run_config(sweep_dir / row['job']))})":
            sweep_dir / row["job"] for role, row in pair.items()}
    histories = {label: h for label, job in jobs.items() if (h := read_history(job))}
    parts = []
    if histories:
        parts.append(figure(plot_training_curves(histories, tmp / "pair_training.png"),
                            "Training curves: training (dashed) and validation (solid)"))
    found = {label: newest for label, job in jobs.items()
             if (newest := current_result(job, name)).path is not None}
    results = {label: result_from_dict(newest.data) for label, newest in found.items()}
    if results:
        parts += [figure(png, f"{name}: {fig.replace('_', ' ')}")
                  for fig, png in result_figures(results, tmp / f"pair_{name}").items()]
    examples = {label: ex for label, newest in found.items()
                if (ex := load_examples(newest.path)) is not None}
    if len(examples) == 2:
        first, second = examples.values()
        method = next((m for m in first["maps"] if m in second["maps"]), None)
        if method and torch.equal(first["inputs"], second["inputs"]):
            parts.append(_examples_figures(
                first, {label: ex["maps"][method] for label, ex in examples.items()},
                {label: ex["gradients"] for label, ex in examples.items()}, tmp / "pair",
                f"Saliency maps ({method}) of the first test examples"))
    return parts


def _swept_text(rows: Sequence[Mapping[str, Any]]) -> str:
    return ", ".join(HEADERS.get(s, s) for s in swept(rows)) or "nothing"


def front_pair(rows: Sequence[Mapping[str, Any]], method: str
               ) -> tuple[Mapping[str, Any], Mapping[str, Any]] | None:
    """The two ends of ``method``'s Pareto front (``front`` column): its most faithful run
    and its most accurate one (``None`` if the front has fewer than two runs)."""
    front = [row for row in rows if method in str(row.get("front") or "").split()]
    if len(front) < 2:
        return None
    front.sort(key=lambda row: number(row.get("test/acc")) or 0.0)
    return front[0], front[-1]


def _jobs_section(rows: Sequence[Mapping[str, Any]], how: str,
                  marks: Mapping[str, str]) -> Section:
    """Headline numbers and the sortable table of jobs, the marked ones badged."""
    summary = [c for c in result_columns(rows) if c not in METRICS]  # the evaluation's
    evaluated = sum(any(row.get(c) is not None for c in summary) for row in rows)
    headline = [("jobs", str(len(rows))), ("evaluated", f"{evaluated} of {len(rows)}"),
                ("swept", _swept_text(rows))]
    lower = dict.fromkeys(_measure_pattern(c) for c in result_columns(rows)
                          if lower_is_better(c))
    return Section("jobs", "Jobs", join([
        stats(headline),
        paragraph(f"One row per job; click a column header to sort. {how} Accuracies in % of "
                  "the test set" + (f"; lower is better for {', '.join(lower)}." if lower
                                    else ".")),
        _jobs_table(rows, marks)]))


def _pair_section(sweep_dir: Path, name: str, title: str, roles: tuple[str, str],
                  pair: tuple[Mapping[str, Any], Mapping[str, Any]] | None, column: str,
                  missing: str) -> Section:
    if pair is None:
        return Section("pair", title, paragraph(missing))
    first, second = (f"job {row['job']} ({value_cell(column, row.get(column)).text} "
                     f"{column})" for row in pair)
    with tempfile.TemporaryDirectory(prefix="sgt-report-") as tmp:
        figures = _pair_figures(sweep_dir, dict(zip(roles, pair, strict=True)), name,
                                Path(tmp))
    return Section("pair", title, join(
        [paragraph(f"{roles[0].capitalize()}: {first}; {roles[1]}: {second}."), *figures]))


def sweep_page(sweep_dir: Path, rows: Sequence[Mapping[str, Any]], name: str,
               sort_by: str | None, figures: Mapping[str, Path],
               tradeoff_png: Path | None = None, method: str = "grad",
               notes: Sequence[str] = ()) -> str:
    """The report page of a sweep: ``rows`` from :func:`experiments.runs.collect.rows` (with
    a ``front`` column when the evaluation has a faithfulness relative to random),
    ``figures`` the metric-vs-setting PNGs already drawn (``{"vs_k": path}``) and the
    trade-off figure. Without ``sort_by`` the runs compared are the ends of ``method``'s
    Pareto front: accuracy alone does not make a run best. ``notes`` (evaluations left out
    as stale) are shown above the table."""
    if sort_by is not None:
        check_sort_column(rows, sort_by)
        pair = best_and_worst(rows, sort_by)
        direction = "lower" if lower_is_better(sort_by) else "higher"
        marks = {} if pair is None else {pair[1]["job"]: "worst", pair[0]["job"]: "best"}
        jobs = _jobs_section(rows, f"Best and worst by {sort_by} ({direction} = better).",
                             marks)
        compared = _pair_section(sweep_dir, name, "Best and worst job", ("best", "worst"),
                                 pair, sort_by, f"Fewer than two jobs have a value of "
                                 f"{sort_by}: nothing to compare.")
    else:
        pair = front_pair(rows, method)
        marks = {r["job"]: "front" for r in rows
                 if method in str(r.get("front") or "").split()}
        jobs = _jobs_section(rows, f"Marked: the runs on the Pareto front of test accuracy "
                             f"and {method}'s faithfulness relative to random (no run is "
                             "both more accurate and more faithful).", marks)
        compared = _pair_section(sweep_dir, name, "The front's two ends",
                                 ("most faithful", "most accurate"), pair, "test/acc",
                                 f"Fewer than two runs on {method}'s Pareto front: nothing "
                                 "to compare.")
    sections = [Section("notes", "Left out", join(paragraph(n) for n in notes))] if notes else []
    sections.append(jobs)
    if tradeoff_png is not None:
        sections.append(Section("tradeoff", "Accuracy against faithfulness", figure(
            tradeoff_png, "Test accuracy against each method's faithfulness relative to "
            "random, one point per run; the Pareto front joined")))
    if figures:
        sections.append(Section("settings", "Metrics against the swept settings", join([
            figure(png, f"Every metric against {key.removeprefix('vs_')}")
            for key, png in figures.items()])))
    sections.append(compared)
    subtitle = (f"{len(rows)} jobs · swept: {_swept_text(rows)} · evaluation: {name} · "
                f"{sweep_dir}")
    return page(f"Sweep report: {sweep_dir.name}", subtitle, sections, _footer())
