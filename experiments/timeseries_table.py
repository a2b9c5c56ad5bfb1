"""Poster Table 2 (time series) in one command: ``python -m experiments.timeseries_table``.

Trains the grid architectures × layouts × processes × {regular, SGT} of the synthetic
time-series benchmark (docs/paper.md §5). Each job is the project's own CLI,
``python -m experiments.train experiment=timeseries model=<arch> dataset.layout=<layout>
dataset.process=<process> sgt=none|default eval=timeseries`` (its best checkpoint is
evaluated with ``configs/eval/timeseries.yaml`` right after training, as
``experiments.evaluate`` would), and ``--jobs`` of them run at once, on the GPU when there is
one. Models whose test accuracy is below ``--min-accuracy`` are left out of the table, as the
benchmark leaves them out of its interpretation metrics (docs/paper.md §2). The table gives,
per architecture × method, Diff(AUP) and Diff(AUR) (the method minus ``random``, averaged
over the datasets: :func:`sgt.evaluation.difference_from_random`) for regular and SGT
training, beside the poster's numbers (``docs/poster_table2.json``, from docs/paper.md §4.2).

Every invocation writes a new folder ``<out-root>/<time>/``: ``plan.json`` (the jobs and
their commands), ``runs/<arch>/<layout>/<process>/<regime>/`` (each job's run dir),
``logs/`` (each job's console output), ``jobs.{csv,json}`` (every job's numbers) and
``table2.{md,csv,json}`` (the table). ``--collect DIR`` builds the tables of an earlier
folder again (one cut short, or with another ``--min-accuracy``) without training, under
new names: nothing is overwritten.

Hydra overrides after the options go to every job (``trainer.max_epochs=30``,
``+trainer.max_time=00:00:01:00``, ``sgt.k=0.3``, ``dataset.num_train=200``); the regular
jobs always train with ``sgt.k=0``.

Examples::

    python -m experiments.timeseries_table                    # 4 archs × 2 layouts × 7 × 2
    python -m experiments.timeseries_table --archs tcn --processes Gaussian,AutoRegressive \
        --jobs 2 trainer.max_epochs=30
    python -m experiments.timeseries_table --collect outputs/timeseries_table/<time>
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import hydra
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table

from experiments.runs.checks import validate
from experiments.runs.cli import call_library, fail
from experiments.runs.compose import compose_config, hydra_value, new_dated_folder
from experiments.runs.files import (
    claim_stem,
    latest_result,
    read_metrics,
    run_label,
    write_json_atomic,
)
from sgt.data import TimeSeriesDataModule
from sgt.data.timeseries_synth import LAYOUTS, PROCESSES
from sgt.errors import SettingError, SGTError
from sgt.evaluation import TimeSeriesResult, difference_from_random

ROOT = Path(__file__).resolve().parents[1]
POSTER = ROOT / "docs" / "poster_table2.json"
REGIMES = ("regular", "sgt")
# What the grid sets in every job, and how to change it: an override of one of these would
# silently replace a dimension of the grid.
GRID_KEYS = {
    "experiment": "the table is of experiment=timeseries",
    "dataset": "the table is of the time-series benchmark (its settings: dataset.…=…)",
    "model": "use --archs",
    "dataset.layout": "use --layouts",
    "dataset.process": "use --processes",
    "sgt": "use --regimes (SGT's settings: sgt.k=…, sgt.lam=…)",
    "eval": "the table needs eval=timeseries (its settings: eval.…=…)",
    "hydra.run.dir": "use --out-root",
}
# CPU milliseconds of one SGT training step at batch 50 (measured, one thread): the costliest
# jobs start first, so that the slowest do not trail at the end of the grid.
ARCH_COST = {"transformer": 844, "lstm_cell_attention": 95, "tcn": 62, "lstm": 19}


@dataclass(frozen=True)
class Job:
    """One training (and evaluation) run of the grid."""

    arch: str
    layout: str
    process: str
    regime: str  # "regular" (sgt.k = 0) or "sgt"
    run_dir: str
    log: str
    command: list[str]

    @property
    def name(self) -> str:
        return f"{self.arch} {self.layout}/{self.process} {self.regime}"


# -- the poster's numbers ----------------------------------------------------------------


def load_poster(path: Path = POSTER) -> dict[str, Any]:
    """``docs/poster_table2.json``: ``diff_aup``/``diff_aur`` ``[arch][method] = [regular,
    sgt]``, and the poster's names of the architectures and methods."""
    return json.loads(path.read_text())


# -- the grid ----------------------------------------------------------------------------


def _names(value: str, allowed: Sequence[str], option: str) -> list[str]:
    names = [v.strip() for v in value.split(",") if v.strip()]
    bad = [n for n in names if n not in allowed]
    if bad or not names:
        raise SettingError(f"{option}: unknown {bad or value!r}; allowed (comma-separated): "
                           f"{', '.join(allowed)}")
    return list(dict.fromkeys(names))


def check_overrides(overrides: Sequence[str]) -> None:
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+~")
        if key in GRID_KEYS:
            raise SettingError(f"{override}: the grid sets {key} in every job; "
                               f"{GRID_KEYS[key]}")


def job_overrides(arch: str, layout: str, process: str, regime: str,
                  overrides: Sequence[str]) -> list[str]:
    """The ``experiments.train`` overrides of one job; the user's come after the grid's,
    and a regular job ends with ``sgt.k=0`` whatever they set."""
    return ["experiment=timeseries", f"model={arch}", f"dataset.layout={layout}",
            f"dataset.process={process}", "eval=timeseries", "eval.metric.progress=false",
            "trainer.enable_progress_bar=false", *(["sgt=none"] if regime == "regular" else []),
            *overrides, *(["sgt.k=0"] if regime == "regular" else [])]


def plan_jobs(grid: dict[str, list[str]], overrides: Sequence[str], out_dir: Path
              ) -> list[Job]:
    """Every job of the grid, the costliest first (SGT before regular)."""
    jobs = []
    for arch in sorted(grid["archs"], key=lambda a: -ARCH_COST.get(a, 0)):
        for regime in sorted(grid["regimes"], key=lambda r: r != "sgt"):
            for layout in grid["layouts"]:
                for process in grid["processes"]:
                    run_dir = out_dir / "runs" / arch / layout / process / regime
                    log = out_dir / "logs" / f"{arch}_{layout}_{process}_{regime}.log"
                    command = [sys.executable, "-m", "experiments.train",
                               *job_overrides(arch, layout, process, regime, overrides),
                               f"hydra.run.dir={hydra_value(run_dir)}"]
                    jobs.append(Job(arch, layout, process, regime, str(run_dir), str(log),
                                    command))
    return jobs


def compose_job(job: Job, overrides: Sequence[str]) -> DictConfig:
    """The config ``experiments.train`` composes for ``job`` (without Hydra's own keys)."""
    try:
        return compose_config("train.yaml", job_overrides(
            job.arch, job.layout, job.process, job.regime, overrides))
    except HydraException as err:  # an override Hydra cannot apply (a bad group or key)
        raise SettingError(f"overrides: {err}") from None


def check_jobs(jobs: Sequence[Job], overrides: Sequence[str]
               ) -> tuple[dict[tuple[str, str], DictConfig], list[TimeSeriesDataModule]]:
    """Refuse bad settings before anything is written: each (arch, regime) config is
    composed and checked as ``experiments.train`` checks it, and every dataset is built (its
    names checked). Returns the configs and one DataModule per distinct dataset."""
    datamodules: dict[Any, TimeSeriesDataModule] = {}
    composed: dict[tuple[str, str], DictConfig] = {}
    for job in jobs:
        key = (job.arch, job.regime)
        if key not in composed:
            composed[key] = compose_job(job, overrides)
            validate(composed[key])
            if "random" not in composed[key].eval.methods:
                raise SettingError("Diff(AUP) and Diff(AUR) are differences to the random "
                                   "baseline: eval.methods must include random")
            if job.regime == "sgt" and not OmegaConf.select(composed[key], "sgt.k"):
                raise SettingError("the SGT jobs would train with sgt.k=0 (regular training); "
                                   "give sgt.k a fraction in (0, 1) or leave it unset")
        datamodule = call_library("dataset", lambda j=job, k=key: hydra.utils.instantiate(
            composed[k].dataset, layout=j.layout, process=j.process))
        datamodules.setdefault(datamodule.spec, datamodule)
    return composed, list(datamodules.values())


# -- running -----------------------------------------------------------------------------


def run_job(job: Job, env: dict[str, str]) -> dict[str, Any]:
    """Run one job to its end; its output goes to ``job.log``. Returns its exit code, wall
    seconds and CPU seconds (user + system: what a busy, shared machine does not inflate)."""
    Path(job.log).parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(job.log, "w") as log:
        log.write(shlex.join(job.command) + "\n\n")
        log.flush()
        process = subprocess.Popen(job.command, stdout=log, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(process.pid, 0)  # this child's own resource usage
        process.returncode = os.waitstatus_to_exitcode(status)
    return {"returncode": process.returncode, "seconds": time.perf_counter() - start,
            "cpu_s": usage.ru_utime + usage.ru_stime}


def run_jobs(jobs: Sequence[Job], datamodules: Sequence[TimeSeriesDataModule], workers: int,
             console: Console) -> dict[str, dict[str, Any]]:
    """Generate each dataset once (into the cache the jobs read), then run ``workers`` jobs
    at a time. Returns :func:`run_job`'s outcome per job name."""
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // workers)))
    outcomes: dict[str, dict[str, Any]] = {}
    pool = ThreadPoolExecutor(workers)
    try:
        list(pool.map(lambda dm: dm.dataset, datamodules))  # torch releases the GIL
        futures = {pool.submit(run_job, job, env): job for job in jobs}
        for n, future in enumerate(as_completed(futures), 1):
            job = futures[future]
            outcomes[job.name] = outcome = future.result()
            metrics = read_metrics(Path(job.run_dir))
            status = (f"test acc {100 * metrics['test/acc']:.1f} %" if "test/acc" in metrics
                      else f"[red]failed (exit {outcome['returncode']}), see {job.log}[/red]")
            console.print(f"[{n:>{len(str(len(jobs)))}}/{len(jobs)}] {job.name}: {status}, "
                          f"{outcome['seconds']:.0f} s ({outcome['cpu_s']:.0f} s CPU)")
    except KeyboardInterrupt:
        pool.shutdown(wait=True, cancel_futures=True)  # running jobs got the same SIGINT
        raise
    pool.shutdown()
    return outcomes


# -- collecting --------------------------------------------------------------------------


def read_result(run_dir: Path, eval_name: str) -> TimeSeriesResult | None:
    path = latest_result(run_dir, eval_name)
    return None if path is None else TimeSeriesResult.from_dict(json.loads(path.read_text()))


def job_row(job: Job, eval_name: str, min_accuracy: float, outcome: dict[str, Any] | None
            ) -> tuple[dict[str, Any], TimeSeriesResult | None]:
    """One job's numbers, flat (``aup/<method>``, ``diff_aup/<method>``, …), and its result
    when it counts for the table (trained, evaluated, accurate enough)."""
    run_dir = Path(job.run_dir)
    metrics = read_metrics(run_dir)
    result = read_result(run_dir, eval_name)
    accuracy = metrics.get("test/acc")
    row: dict[str, Any] = {
        "arch": job.arch, "layout": job.layout, "process": job.process, "regime": job.regime,
        "test_acc": accuracy, "val_acc_best": metrics.get("val/acc_best"),
        "epochs": metrics.get("epochs"), "train_s": sum(metrics.get("epoch_time_s") or []),
        "job_s": (outcome or {}).get("seconds"), "job_cpu_s": (outcome or {}).get("cpu_s"),
        "returncode": (outcome or {}).get("returncode"),
        "evaluated": result is not None,
        "included": result is not None and accuracy is not None and accuracy >= min_accuracy,
    }
    if result is not None:
        for method in result.methods:
            areas = result.areas(method)
            row[f"aup/{method}"], row[f"aur/{method}"] = areas["aup"], areas["aur"]
        if "random" in result.methods:
            for method, diff in difference_from_random(result).items():
                row[f"diff_aup/{method}"], row[f"diff_aur/{method}"] = diff["aup"], diff["aur"]
    return row, result if row["included"] else None


def table_rows(jobs: Sequence[Job], results: dict[str, TimeSeriesResult | None],
               poster: dict[str, Any]) -> list[dict[str, Any]]:
    """Per architecture × method: ours (regular, SGT) averaged over the included datasets,
    the poster's, and how many models were included out of how many trained."""
    rows = []
    for arch in dict.fromkeys(job.arch for job in jobs):
        diffs, counts = {}, {}
        for regime in REGIMES:
            mine = [job for job in jobs if job.arch == arch and job.regime == regime]
            kept = [r for job in mine if (r := results.get(job.name)) is not None]
            diffs[regime] = difference_from_random(kept) if kept else {}
            counts[regime] = f"{len(kept)}/{len(mine)}"
        # the poster's rows, then any other method evaluated
        methods = dict.fromkeys([*poster["methods"], *(m for d in diffs.values() for m in d)])
        for method in methods:
            row: dict[str, Any] = {"arch": arch, "method": method}
            for metric in ("aup", "aur"):
                paper = poster[f"diff_{metric}"].get(arch, {}).get(method, [None, None])
                for regime, theirs in zip(REGIMES, paper, strict=True):
                    row[f"{regime}_{metric}"] = diffs[regime].get(method, {}).get(metric)
                    row[f"poster_{regime}_{metric}"] = theirs
            row.update({f"{regime}_models": counts[regime] for regime in REGIMES})
            rows.append(row)
    return rows


# -- writing -----------------------------------------------------------------------------


def _number(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def _pair(row: dict[str, Any], prefix: str, metric: str) -> str:
    return " / ".join(_number(row[f"{prefix}{regime}_{metric}"]) for regime in REGIMES)


def display_rows(rows: Sequence[dict[str, Any]], poster: dict[str, Any]) -> list[list[str]]:
    """The table's cells as the poster gives them: ``regular / SGT``."""
    return [[poster["archs"].get(r["arch"], r["arch"]),
             poster["methods"].get(r["method"], r["method"]),
             _pair(r, "", "aup"), _pair(r, "poster_", "aup"),
             _pair(r, "", "aur"), _pair(r, "poster_", "aur"),
             f"{r['regular_models']}, {r['sgt_models']}"] for r in rows]


def columns(min_accuracy: float) -> list[str]:
    return ["architecture", "method", "Diff(AUP) ours", "Diff(AUP) poster", "Diff(AUR) ours",
            "Diff(AUR) poster", f"models ≥ {100 * min_accuracy:g} % (reg., SGT)"]


def accuracy_lines(job_rows: Sequence[dict[str, Any]], min_accuracy: float) -> list[str]:
    """Per architecture and regime: models included / trained, mean and lowest accuracy."""
    lines = []
    for arch in dict.fromkeys(r["arch"] for r in job_rows):
        for regime in REGIMES:
            mine = [r for r in job_rows if r["arch"] == arch and r["regime"] == regime]
            accs = [r["test_acc"] for r in mine if r["test_acc"] is not None]
            if not mine:
                continue
            spread = (f"mean {100 * sum(accs) / len(accs):.1f} %, lowest "
                      f"{100 * min(accs):.1f} %" if accs else "none finished")
            lines.append(f"- {arch} {regime}: {sum(r['included'] for r in mine)}/{len(mine)} "
                         f"≥ {100 * min_accuracy:g} % test accuracy ({spread})")
    return lines


def timing_line(job_rows: Sequence[dict[str, Any]], settings: dict[str, Any]) -> str | None:
    """Wall time of the grid and the mean job's wall and CPU seconds (``None`` before the
    jobs ran)."""
    timed = [r for r in job_rows if r["job_s"] is not None]
    if "wall_s" not in settings or not timed:
        return None
    return (f"{len(timed)} jobs in {settings['wall_s']:.0f} s, {settings['jobs_at_once']} at "
            f"once; per job {sum(r['job_s'] for r in timed) / len(timed):.0f} s "
            f"({sum(r['job_cpu_s'] or 0 for r in timed) / len(timed):.0f} s CPU)")


def markdown(rows: Sequence[dict[str, Any]], job_rows: Sequence[dict[str, Any]],
             poster: dict[str, Any], settings: dict[str, Any]) -> str:
    head = columns(settings["min_accuracy"])
    cells = display_rows(rows, poster)
    lines = [
        "# Time series: poster Table 2 beside ours",
        "",
        "Diff(AUP), Diff(AUR): the method's weighted AUP (AUR) minus the `random` baseline's, "
        "averaged over the datasets whose model reached the accuracy threshold; each cell is "
        "`regular / SGT` (the poster's `Trad. / Sal.`). `random` is the benchmark's: another "
        "method's map with its features permuted (docs/paper.md §3(d)). The benchmark trains "
        "to 99 % accuracy and keeps the best *test* checkpoint; these models train up to 50 "
        "epochs and are selected on validation loss.",
        "",
        f"- grid: {', '.join(settings['archs'])} × {', '.join(settings['layouts'])} × "
        f"{', '.join(settings['processes'])}",
        f"- SGT: {settings['sgt_label']}; overrides: `{' '.join(settings['overrides']) or '—'}`",
        f"- models below {100 * settings['min_accuracy']:g} % test accuracy are left out",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
        *("| " + " | ".join(row) + " |" for row in cells),
        "",
        "## Models",
        "",
        *accuracy_lines(job_rows, settings["min_accuracy"]),
        *([f"- {timing}"] if (timing := timing_line(job_rows, settings)) else []),
        "",
    ]
    return "\n".join(lines)


def write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    fields = list(dict.fromkeys(key for row in rows for key in row))
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def write_outputs(out_dir: Path, job_rows: Sequence[dict[str, Any]],
                  rows: Sequence[dict[str, Any]], poster: dict[str, Any],
                  settings: dict[str, Any]) -> dict[str, Path]:
    """``jobs.{csv,json}`` and ``table2.{md,csv,json}`` under names not taken yet."""
    jobs_stem = claim_stem(out_dir, "jobs", [".json", ".csv"])
    table_stem = claim_stem(out_dir, "table2", [".json", ".csv", ".md"])
    files = {name: out_dir / f"{stem}{suffix}" for name, stem, suffix in (
        ("jobs_json", jobs_stem, ".json"), ("jobs_csv", jobs_stem, ".csv"),
        ("table_json", table_stem, ".json"), ("table_csv", table_stem, ".csv"),
        ("table_md", table_stem, ".md"))}
    files["jobs_json"].write_text(json.dumps({"settings": settings, "jobs": job_rows},
                                             indent=2))
    write_csv(files["jobs_csv"], job_rows)
    files["table_json"].write_text(json.dumps({"settings": settings, "rows": rows}, indent=2))
    write_csv(files["table_csv"], rows)
    files["table_md"].write_text(markdown(rows, job_rows, poster, settings))
    return files


def print_table(rows: Sequence[dict[str, Any]], poster: dict[str, Any],
                min_accuracy: float, console: Console) -> None:
    table = Table(title="Diff(AUP), Diff(AUR): method − random, regular / SGT")
    for column in columns(min_accuracy):
        table.add_column(column, justify="left" if column in ("architecture", "method")
                         else "right")
    for cells in display_rows(rows, poster):
        table.add_row(*cells)
    console.print(table)


# -- the command -------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    poster = load_poster()
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Hydra overrides (key=value) after the options go to every job.")
    parser.add_argument("--archs", default=",".join(poster["archs"]),
                        help="comma-separated model configs (default: all four)")
    parser.add_argument("--layouts", default="Middle,SmallMiddle",
                        help=f"comma-separated; any of {', '.join(LAYOUTS)}")
    parser.add_argument("--processes", default=",".join(PROCESSES.names()),
                        help="comma-separated (default: all seven)")
    parser.add_argument("--regimes", default=",".join(REGIMES), help="regular, sgt or both")
    parser.add_argument("--min-accuracy", type=float, default=0.9,
                        help="test accuracy a model needs to count (the benchmark's 0.9)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="jobs at once (default: the CPU cores)")
    parser.add_argument("--out-root", type=Path, default=Path("outputs/timeseries_table"),
                        help="each invocation writes into a new <out-root>/<time>/")
    parser.add_argument("--collect", type=Path, metavar="DIR",
                        help="only build the tables of an earlier invocation's folder")
    parser.add_argument("--dry-run", action="store_true",
                        help="check the settings and print the jobs' commands; run nothing")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every job")
    return parser.parse_intermixed_args(argv)


def grid_of(args: argparse.Namespace) -> dict[str, list[str]]:
    if args.jobs < 1:
        raise SettingError(f"--jobs must be at least 1, got {args.jobs}")
    if not 0 <= args.min_accuracy <= 1:
        raise SettingError(f"--min-accuracy must be a fraction in [0, 1], got "
                           f"{args.min_accuracy}")
    check_overrides(args.overrides)
    return {"archs": _names(args.archs, list(load_poster()["archs"]), "--archs"),
            "layouts": _names(args.layouts, list(LAYOUTS), "--layouts"),
            "processes": _names(args.processes, PROCESSES.names(), "--processes"),
            "regimes": _names(args.regimes, REGIMES, "--regimes")}


def load_plan(out_dir: Path) -> dict[str, Any]:
    path = out_dir / "plan.json"
    if not path.is_file():
        raise SettingError(f"--collect: {path} not found; give a folder this script wrote "
                           "(outputs/timeseries_table/<time>)")
    return json.loads(path.read_text())


def start(args: argparse.Namespace, console: Console) -> tuple[Path, dict[str, Any]] | None:
    """Check, plan and run the grid (or read an earlier plan): ``(folder, plan)``; ``None``
    for a dry run."""
    if args.collect is not None:
        return args.collect.resolve(), load_plan(args.collect)
    grid = grid_of(args)
    probe = plan_jobs(grid, args.overrides, args.out_root.resolve() / "<time>")
    composed, datamodules = check_jobs(probe, args.overrides)
    if args.dry_run:
        console.print("\n".join(shlex.join(job.command) for job in probe), soft_wrap=True)
        return None
    out_dir = new_dated_folder(args.out_root)
    jobs = plan_jobs(grid, args.overrides, out_dir)
    sgt = [cfg for (_, regime), cfg in composed.items() if regime == "sgt"]
    settings = {**grid, "overrides": list(args.overrides),
                "sgt_label": run_label(sgt[0]) if sgt else "—",
                "eval_name": next(iter(composed.values())).eval.name, "jobs_at_once": args.jobs}
    plan = {"settings": settings, "jobs": [asdict(job) for job in jobs]}
    write_json_atomic(out_dir / "plan.json", plan)
    console.print(f"{len(jobs)} jobs, {args.jobs} at once, into {out_dir}")
    started = time.perf_counter()
    plan["outcomes"] = run_jobs(jobs, datamodules, args.jobs, console)
    settings["wall_s"] = time.perf_counter() - started
    write_json_atomic(out_dir / "plan.json", plan)  # with the outcomes, for --collect
    return out_dir, plan


def collect(out_dir: Path, plan: dict[str, Any], min_accuracy: float
            ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Path]]:
    """Every job's row and the table's rows, written under ``out_dir``."""
    jobs = [Job(**job) for job in plan["jobs"]]
    outcomes = plan.get("outcomes", {})
    settings = {**plan["settings"], "min_accuracy": min_accuracy}
    collected = {job.name: job_row(job, settings["eval_name"], min_accuracy,
                                   outcomes.get(job.name)) for job in jobs}
    job_rows = [row for row, _ in collected.values()]
    poster = load_poster()
    rows = table_rows(jobs, {name: result for name, (_, result) in collected.items()}, poster)
    return job_rows, rows, write_outputs(out_dir, job_rows, rows, poster, settings)


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Run (or collect) the grid; print and write the table. Returns its rows."""
    args = parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 160)
    try:
        started = start(args, console)
        if started is None:
            return []
        out_dir, plan = started
        job_rows, rows, files = collect(out_dir, plan, args.min_accuracy)
    except SGTError as err:
        fail(str(err))
    print_table(rows, load_poster(), args.min_accuracy, console)
    console.print("\n".join(accuracy_lines(job_rows, args.min_accuracy)))
    timing = timing_line(job_rows, plan["settings"])
    if timing:
        console.print(timing)
    console.print("\n".join(str(path) for path in files.values()))
    if any(o["returncode"] != 0 for o in plan.get("outcomes", {}).values()):
        console.print("[red]some jobs failed: see their logs[/red]")
        sys.exit(1)
    return rows


if __name__ == "__main__":
    main()
