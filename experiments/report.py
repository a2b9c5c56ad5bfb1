"""One table for a Hydra sweep: ``python -m experiments.report MULTIRUN_DIR``.

Every job folder (``<multirun dir>/<n>/`` with ``.hydra/config.yaml``) gives one row: its
overrides, ``k``, ``λ``, test accuracy (``metrics.json``) and, where the job was evaluated,
the area under each method's accuracy-drop curve (``eval/accuracy_drop*.json``). The table
is printed and written to ``report.csv`` in the multirun dir, with metrics plotted against
k (one line per λ) and against λ (one line per k). Nothing earlier is overwritten.
"""

from __future__ import annotations

import argparse
import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from rich.console import Console
from rich.table import Table

from experiments.evaluate import claim_stem, latest_result
from experiments.validation import ConfigError, fail
from sgt.errors import SGTError
from sgt.plots import plot_metric_vs

SUFFIXES = (".csv", "_vs_k.png", "_vs_lam.png")
METRICS = ("test/acc", "val/acc_best")


def _job_order(path: Path) -> tuple[int, str]:
    return (int(path.name), "") if path.name.isdigit() else (1 << 30, path.name)


def job_row(job: Path, name: str) -> dict[str, Any]:
    """One job's settings and results, flat: ``job, overrides, k, lam, test/acc, auc/<m>``
    (``overrides`` as a list)."""
    cfg = OmegaConf.load(job / ".hydra" / "config.yaml")
    overrides_file = job / ".hydra" / "overrides.yaml"
    overrides = OmegaConf.load(overrides_file) if overrides_file.is_file() else []
    metrics_file = job / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    row: dict[str, Any] = {
        "job": job.name,
        "overrides": list(overrides),
        "k": OmegaConf.select(cfg, "sgt.k"),
        "lam": OmegaConf.select(cfg, "sgt.lam"),
        **{m: metrics.get(m) for m in METRICS},
    }
    evaluation = latest_result(job, name)
    if evaluation is not None:
        auc = json.loads(evaluation.read_text())["auc"]
        row.update({f"auc/{m}": v for m, v in auc.items()})
    return row


def collect(multirun_dir: Path, name: str = "accuracy_drop") -> list[dict[str, Any]]:
    """Rows of every job in a sweep folder, in job order; ``overrides`` keeps what sets a
    job apart (the ones every job shares are left out)."""
    if not multirun_dir.is_dir():
        raise ConfigError(f"multirun dir {multirun_dir} does not exist")
    jobs = sorted((p for p in multirun_dir.iterdir()
                   if (p / ".hydra" / "config.yaml").is_file()), key=_job_order)
    if not jobs:
        raise ConfigError(f"no Hydra jobs in {multirun_dir}: expected subfolders holding "
                          ".hydra/config.yaml (a `python -m experiments.train -m ...` sweep)")
    rows = [job_row(job, name) for job in jobs]
    shared = set.intersection(*(set(row["overrides"]) for row in rows))
    for row in rows:
        row["overrides"] = " ".join(o for o in row["overrides"] if o not in shared)
    return rows


def columns_of(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Every key, first-seen order (jobs evaluated with different methods still line up)."""
    return list(dict.fromkeys(key for row in rows for key in row))


def write_report(rows: Sequence[dict[str, Any]], out_dir: Path) -> dict[str, Path]:
    """``report.csv`` and the plots vs k and λ, under a name no earlier report holds."""
    stem = claim_stem(out_dir, "report", SUFFIXES)
    columns = columns_of(rows)
    files = {"csv": out_dir / f"{stem}.csv"}
    with files["csv"].open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    ys = [c for c in columns if c in METRICS or c.startswith("auc/")]
    files["vs_k"] = plot_metric_vs(rows, "k", ys, out_dir / f"{stem}_vs_k.png", group="lam")
    files["vs_lam"] = plot_metric_vs(rows, "lam", ys, out_dir / f"{stem}_vs_lam.png", group="k")
    return files


def print_rows(rows: Sequence[dict[str, Any]]) -> None:
    table = Table(title="sweep (auc: area under the accuracy-drop curve, lower = more faithful)")
    columns = columns_of(rows)
    for column in columns:
        table.add_column(column, justify="left" if column in ("job", "overrides") else "right")
    for row in rows:
        table.add_row(*(_cell(row.get(c)) for c in columns))
    Console().print(table)


def _cell(value: Any) -> str:
    if value is None:
        return "—"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("multirun_dir", type=Path, help="a Hydra sweep folder")
    parser.add_argument("--name", default="accuracy_drop", help="evaluation name (eval.name)")
    parser.add_argument("--out", type=Path, help="output folder (default: the multirun dir)")
    args = parser.parse_args(argv)
    try:
        rows = collect(args.multirun_dir, args.name)
        files = write_report(rows, args.out or args.multirun_dir)
    except SGTError as err:
        fail(str(err))
    print_rows(rows)
    for path in files.values():
        print(path)


if __name__ == "__main__":
    main()
