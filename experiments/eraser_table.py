"""The poster's Table 1 (ERASER) for one task: ``python -m experiments.eraser_table``.

Trains a regular model (``sgt=none``) and an SGT model (the ``sgt`` config: k = 0.5, λ = 1)
on an ERASER task with its experiment config (``experiment=<task>``), evaluates the best
checkpoint of each with ``eval=eraser`` (Gradient, Integrated Gradients, SmoothGrad, Random)
and writes the poster's Table 1 layout (docs/paper.md §4.1): per method, regular vs SGT,
comprehensiveness ↑ and sufficiency ↓ (AOPC) with the poster's numbers beside ours, both
models' test accuracy, and token F1 / AUPRC against the human rationales as extra rows.

Each model is one ``python -m experiments.train experiment=<task> sgt=… eval=eraser …``
process (the evaluation runs on the best checkpoint after testing, through the same code as
``python -m experiments.evaluate``), so the table holds exactly what those commands give.
Every invocation writes a new folder ``outputs/eraser_table/<time>/`` (``--out``):

- ``regular/``, ``sgt/``: the run folders (``metrics.json``, checkpoints, ``eval/eraser.json``
  and ``.csv``, figures, ERASER's per-instance ``eval/eraser_<method>.jsonl``);
- ``train_regular.log``, ``train_sgt.log``: each job's console output;
- ``table.md`` (the poster's layout), ``table.csv`` and ``table.json`` (one row per method and
  model; the json also holds the commands, wall times and the poster's numbers).

Hydra overrides after the options go to both trainings; ``--sgt KEY=VALUE`` only to the SGT
one (``sgt.*`` settings must go there: they would make the regular model SGT too), ``--eval``
to both evaluations. Every setting is checked, and the task's data looked for, before
anything is trained or written.

Presets (``--preset``): ``recipe`` trains the task's recipe as it is
(``configs/recipe/eraser.yaml``, sized for a GPU); ``cpu`` a smaller BiLSTM on shorter
inputs that trains in CPU time (:data:`PRESETS` lists its overrides).

Examples::

    python -m experiments.eraser_table                         # Movies, the recipe (GPU)
    python -m experiments.eraser_table --preset cpu            # Movies on a CPU
    python -m experiments.eraser_table --epochs 5 --seed 1 model.hidden_size=64
    python -m experiments.eraser_table --sgt sgt.k=0.3 --sgt sgt.lam=0.5
    python -m experiments.eraser_table --task fever            # needs <data dir>/eraser/fever
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from experiments.runs.cli import USER_ERROR, fail
from experiments.runs.compose import hydra_value, new_dated_folder
from experiments.runs.files import read_metrics, write_json_atomic

TASKS = ("movies", "fever", "esnli")
METHODS = ("grad", "integrated_gradients", "smoothgrad", "random")
METHOD_NAMES = {"grad": "Gradient", "integrated_gradients": "Integrated Gradients",
                "smoothgrad": "SmoothGrad", "random": "Random"}
SHORT_NAMES = {"grad": "Grad", "integrated_gradients": "IG", "smoothgrad": "SG",
               "random": "Random"}
MODELS = ("regular", "sgt")
MODEL_NAMES = {"regular": "Trad.", "sgt": "SGT"}
CHANCE = ("{} predicts no better than the most frequent class: its saliency explains a "
          "constant, so its numbers say nothing (another seed, more epochs, or other settings)")

# The poster's Table 1 (docs/paper.md §4.1): AOPC per task, metric and method as
# (traditional, saliency guided); Random is one number (the poster does not say which
# model's predictions it was measured on).
POSTER: dict[str, dict[str, dict[str, tuple[float, float] | float]]] = {
    "movies": {
        "comprehensiveness": {"grad": (0.200, 0.240), "integrated_gradients": (0.265, 0.306),
                              "smoothgrad": (0.198, 0.256), "random": 0.056},
        "sufficiency": {"grad": (0.042, 0.013), "integrated_gradients": (0.054, 0.002),
                        "smoothgrad": (0.034, 0.008), "random": 0.294},
    },
    "fever": {
        "comprehensiveness": {"grad": (0.007, 0.008), "integrated_gradients": (0.008, 0.009),
                              "smoothgrad": (0.007, 0.008), "random": 0.001},
        "sufficiency": {"grad": (0.012, 0.011), "integrated_gradients": (0.005, 0.004),
                        "smoothgrad": (0.006, 0.006), "random": 0.003},
    },
    "esnli": {
        "comprehensiveness": {"grad": (0.117, 0.126), "integrated_gradients": (0.099, 0.104),
                              "smoothgrad": (0.117, 0.118), "random": 0.058},
        "sufficiency": {"grad": (0.420, 0.387), "integrated_gradients": (0.461, 0.419),
                        "smoothgrad": (0.476, 0.455), "random": 0.366},
    },
}

# Overrides per preset, before the command line's. ``cpu``: one batch of the recipe's BiLSTM
# (100-d embeddings, 128 units, 1024 tokens) takes 3.6 s of one CPU core to train regularly
# (SGT about three times that); 64-d embeddings and 64 units on the first 512 tokens take
# 0.5 s (measured). Movies, regular: 79 % test accuracy after 8 epochs.
PRESETS: dict[str, list[str]] = {
    "recipe": [],
    "cpu": ["model.embedding_dim=64", "model.hidden_size=64", "dataset.max_length=512",
            "trainer.max_epochs=15"],
}


def poster_value(task: str, metric: str, method: str, model: str) -> float | None:
    value = POSTER.get(task, {}).get(metric, {}).get(method)
    if value is None or isinstance(value, float):
        return value
    return value[MODELS.index(model)]


# -- the jobs -----------------------------------------------------------------------------
@dataclass
class Job:
    """One training (+ evaluation) process and what it gave."""

    model: str
    overrides: list[str]
    run_dir: Path
    log: Path
    command: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    metrics: dict[str, Any] = field(default_factory=dict)
    eraser: dict[str, Any] = field(default_factory=dict)

    @property
    def at_chance(self) -> bool:
        """No more accurate on the evaluated instances than always predicting their most
        frequent class: the model has learnt nothing, and its row says nothing."""
        labels = (self.eraser.get("instances") or {}).get("labels")
        return bool(labels) and self.eraser["accuracy"] <= max(
            Counter(labels).values()) / len(labels)


def job_overrides(task: str, preset: str, common: Sequence[str], model: str,
                  sgt: Sequence[str], evaluation: Sequence[str], methods: Sequence[str],
                  seed: int | None, epochs: int | None) -> list[str]:
    """Every override of one training job, in the order they apply (the last wins)."""
    out = [f"experiment={task}", "sgt=none" if model == "regular" else "sgt=default",
           *PRESETS[preset]]
    out += [f"seed={seed}"] if seed is not None else []
    out += [f"trainer.max_epochs={epochs}"] if epochs is not None else []
    out += [*common, *(sgt if model == "sgt" else [])]
    out += ["eval=eraser", f"eval.methods=[{','.join(methods)}]", "eval.metric.progress=false",
            *evaluation, "trainer.enable_progress_bar=false"]
    return out


def preflight(overrides: Sequence[str]) -> None:
    """Compose a job's config and run the checks ``experiments.train`` runs before training,
    and look for the data: a bad setting or missing data fails here, before any job starts
    (one ``error:`` line, exit 2, nothing written)."""
    import hydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from experiments.runs.checks import validate
    from experiments.runs.cli import call_library
    from experiments.runs.compose import compose_config
    from sgt.errors import SGTError

    try:
        cfg = compose_config("train.yaml", overrides)
        validate(cfg)
        call_library("dataset", lambda: hydra.utils.instantiate(cfg.dataset)).prepare_data()
    except SGTError as err:
        fail(str(err))
    except (HydraException, OmegaConfBaseException) as err:
        fail(f"bad override: {err}")


def run_job(job: Job, console: Console) -> None:
    """Train, test and evaluate one model in its own process; stop the table on failure."""
    job.command = [sys.executable, "-m", "experiments.train", *job.overrides,
                   f"hydra.run.dir={hydra_value(job.run_dir)}"]
    console.print(f"training {job.model} → {job.run_dir} (log: {job.log.name})")
    start = time.perf_counter()
    with job.log.open("w") as log:
        done = subprocess.run(job.command, stdout=log, stderr=subprocess.STDOUT, check=False)
    job.wall_s = time.perf_counter() - start
    if done.returncode:
        text = job.log.read_text(errors="replace").splitlines()
        errors = [line for line in text if line.startswith("error: ")]
        if done.returncode == USER_ERROR and errors:
            fail(f"training {job.model} failed: {errors[-1][len('error: '):]} (log: {job.log})")
        print(f"error: training {job.model} failed with exit code {done.returncode}; its "
              f"output is in {job.log}", file=sys.stderr)
        sys.exit(max(done.returncode, 1))  # a signal (negative code) is a failure too
    job.metrics = read_metrics(job.run_dir)
    job.eraser = json.loads(Path(job.metrics["eval/eraser/json"]).read_text())
    console.print(f"  done in {job.wall_s / 60:.1f} min: test accuracy "
                  f"{100 * job.metrics['test/acc']:.1f} %")
    if job.at_chance:
        console.print(f"  warning: {CHANCE.format(MODEL_NAMES[job.model])}")


# -- the table ----------------------------------------------------------------------------
def table_rows(task: str, methods: Sequence[str], jobs: Sequence[Job]) -> list[dict[str, Any]]:
    """One row per method and model: ours, the poster's, and the extra columns. A method the
    evaluation left out (it cannot explain the model: the result's ``skipped_methods``)
    gets empty values."""
    rows = []
    for method in methods:
        for job in jobs:
            e = job.eraser
            ours = {key: e[field].get(method) for key, field in (
                ("comprehensiveness", "comprehensiveness_aopc"),
                ("sufficiency", "sufficiency_aopc"), ("token_f1", "token_f1_macro"),
                ("auprc", "token_auprc"))}
            rows.append({
                "task": task, "method": method, "model": job.model, **ours,
                "poster_comprehensiveness": poster_value(task, "comprehensiveness", method,
                                                         job.model),
                "poster_sufficiency": poster_value(task, "sufficiency", method, job.model),
                "test_acc": job.metrics["test/acc"], "num_samples": e["num_samples"],
            })
    return rows


def _number(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def markdown(task: str, rows: Sequence[dict[str, Any]], jobs: Sequence[Job]) -> str:
    """The poster's layout: metrics as rows, method × model as columns, each cell
    ``ours (poster)``."""
    cells = {(r["method"], r["model"]): r for r in rows}
    columns = list(cells)
    head = [task] + [f"{METHOD_NAMES.get(m, m)} {MODEL_NAMES[k]}" for m, k in columns]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for key, title in (("comprehensiveness", "Comprehensiveness ↑"),
                       ("sufficiency", "Sufficiency ↓")):
        lines.append("| " + " | ".join([title] + [
            f"{_number(cells[c][key])} ({_number(cells[c][f'poster_{key}'])})"
            for c in columns]) + " |")
    for key, title in (("token_f1", "Token F1 ↑"), ("auprc", "AUPRC ↑")):
        lines.append("| " + " | ".join([title] + [_number(cells[c][key]) for c in columns])
                     + " |")
    accuracy = ", ".join(f"{MODEL_NAMES[j.model]} {100 * j.metrics['test/acc']:.1f} %"
                         for j in jobs)
    skipped = [f"{MODEL_NAMES[j.model]}: {', '.join(j.eraser['skipped_methods'])} (cannot "
               "explain this model)" for j in jobs if j.eraser.get("skipped_methods")]
    return "\n".join([
        f"# ERASER {task}: the poster's Table 1 beside ours",
        "",
        "AOPC over 1, 5, 10, 20 and 50 % of the document tokens (docs/paper.md §3(c)); each "
        "cell is ours, with the poster's number in brackets (docs/paper.md §4.1). Token F1 "
        "(macro) and AUPRC score the saliency against the human rationales as ERASER's "
        "scorer does (not in the poster). The "
        "poster's Random column is one number; it stands beside both of our models.",
        "",
        *lines,
        "",
        f"Test accuracy: {accuracy} ({rows[0]['num_samples']} test instances).",
        *(["", f"Left out (–): {'; '.join(skipped)}."] if skipped else []),
        *(f"\n**Warning**: {CHANCE.format(MODEL_NAMES[j.model])}." for j in jobs
          if j.at_chance),
        "",
        *(f"- {MODEL_NAMES[j.model]}: `{j.run_dir}` ({j.wall_s / 60:.1f} min), "
          f"`python -m experiments.train {' '.join(j.overrides)}`" for j in jobs),
        "",
    ])


def console_table(task: str, rows: Sequence[dict[str, Any]]) -> Table:
    out = Table(title=f"ERASER {task}: ours vs the poster's Table 1 (AOPC; token F1, AUPRC "
                      "and test accuracy are ours only)")
    for column in ("method", "model", "comp ↑", "poster", "suff ↓", "poster", "F1", "AUPRC",
                   "acc"):
        out.add_column(column, justify="left" if column in ("method", "model") else "right",
                       no_wrap=True)
    for r in rows:
        out.add_row(SHORT_NAMES.get(r["method"], r["method"]), MODEL_NAMES[r["model"]],
                    _number(r["comprehensiveness"]), _number(r["poster_comprehensiveness"]),
                    _number(r["sufficiency"]), _number(r["poster_sufficiency"]),
                    _number(r["token_f1"]), _number(r["auprc"]), f"{100 * r['test_acc']:.1f} %")
    return out


def write_table(out: Path, task: str, rows: Sequence[dict[str, Any]], jobs: Sequence[Job]
                ) -> dict[str, Path]:
    files = {"md": out / "table.md", "csv": out / "table.csv", "json": out / "table.json"}
    files["md"].write_text(markdown(task, rows, jobs))
    with files["csv"].open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    write_json_atomic(files["json"], {
        "task": task, "rows": rows, "poster": POSTER.get(task),
        "jobs": [{"model": j.model, "run_dir": str(j.run_dir), "command": j.command,
                  "overrides": j.overrides, "wall_s": j.wall_s, "epochs": j.metrics["epochs"],
                  "train_s": sum(j.metrics["epoch_time_s"]), "test_acc": j.metrics["test/acc"],
                  "at_chance": j.at_chance,
                  "eval": j.metrics["eval/eraser/json"]}
                 for j in jobs],
    })
    return files


# -- the command line ---------------------------------------------------------------------
def new_folder(requested: Path | None) -> Path:
    """``--out`` (which must not exist yet) or a new ``outputs/eraser_table/<time>[_n]``."""
    if requested is None:
        return new_dated_folder(Path("outputs/eraser_table"))
    try:
        requested.mkdir(parents=True)
    except FileExistsError:
        fail(f"--out {requested} already exists; give a new folder (nothing is overwritten)")
    return requested.resolve()


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Hydra overrides (KEY=VALUE) after the options apply to both trainings, e.g. "
               "trainer.max_epochs=5 model.hidden_size=64 dataset.max_length=256.")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for both trainings")
    parser.add_argument("--task", choices=TASKS, default="movies", help="ERASER task")
    parser.add_argument("--preset", choices=list(PRESETS), default="recipe",
                        help="recipe: the task's recipe (GPU-sized); cpu: a smaller BiLSTM "
                             f"({' '.join(PRESETS['cpu'])})")
    parser.add_argument("--epochs", type=int, help="trainer.max_epochs for both")
    parser.add_argument("--seed", type=int, help="seed of both trainings and evaluations")
    parser.add_argument("--sgt", action="append", default=[], metavar="KEY=VALUE",
                        help="override for the SGT training only, e.g. sgt.k=0.3 (repeatable)")
    parser.add_argument("--eval", action="append", default=[], metavar="KEY=VALUE",
                        help="override for both evaluations, e.g. eval.batch_size=64 or "
                             "+eval.method_args.integrated_gradients.n_steps=20 (repeatable)")
    parser.add_argument("--methods", type=lambda text: text.split(","), default=list(METHODS),
                        help=f"attribution methods, comma-separated (default: "
                             f"{','.join(METHODS)})")
    parser.add_argument("--out", type=Path, help="a new folder for everything "
                        "(default: outputs/eraser_table/<time>)")
    args = parser.parse_args(argv)
    if args.epochs is not None and args.epochs < 1:
        fail(f"--epochs must be a positive integer, got {args.epochs}")
    shared_sgt = [o for o in args.overrides if re.match(r"[~+]*sgt[.=]", o)]
    if shared_sgt:
        fail(f"{shared_sgt[0]!r} would apply to the regular model too; pass SGT settings with "
             f"--sgt {shared_sgt[0]}")
    return args


def main(argv: Sequence[str] | None = None) -> Path:
    """Check, train and evaluate both models, write the table; returns the table folder."""
    args = parse(argv)
    overrides = {model: job_overrides(args.task, args.preset, args.overrides, model, args.sgt,
                                      args.eval, args.methods, args.seed, args.epochs)
                 for model in MODELS}
    for model in MODELS:
        preflight(overrides[model])
    out = new_folder(args.out)
    console = Console()
    console.print(f"ERASER {args.task}, regular vs SGT → {out}")
    jobs = [Job(model, overrides[model], out / model, out / f"train_{model}.log")
            for model in MODELS]
    for job in jobs:
        run_job(job, console)
    rows = table_rows(args.task, args.methods, jobs)
    files = write_table(out, args.task, rows, jobs)
    console.print(console_table(args.task, rows))
    for path in files.values():
        console.print(str(path))
    return out


if __name__ == "__main__":
    main()
