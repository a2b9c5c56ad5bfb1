"""A sweep folder as rows: one per job, its settings, its metrics and its evaluation."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from experiments.runs.files import latest_result, read_metrics
from sgt.errors import SettingError
from sgt.evaluation import result_from_dict

METRICS = ("test/acc", "val/acc_best")
SETTINGS = {"k": "sgt.k", "lam": "sgt.lam"}  # column -> config key, always shown


def _job_order(path: Path) -> tuple[int, str]:
    return (int(path.name), "") if path.name.isdigit() else (1 << 30, path.name)


def job_row(job: Path, name: str) -> dict[str, Any]:
    """One job's settings and results, flat: ``job, overrides, k, lam, test/acc, <summary>``
    (``overrides`` as a list; the summary of its newest evaluation ``name``)."""
    cfg = OmegaConf.load(job / ".hydra" / "config.yaml")
    overrides_file = job / ".hydra" / "overrides.yaml"
    overrides = OmegaConf.load(overrides_file) if overrides_file.is_file() else []
    metrics = read_metrics(job)
    row: dict[str, Any] = {
        "job": job.name,
        "overrides": list(overrides),
        **{column: OmegaConf.select(cfg, key) for column, key in SETTINGS.items()},
        **{m: metrics.get(m) for m in METRICS},
    }
    evaluation = latest_result(job, name)
    if evaluation is not None:
        row.update(result_from_dict(json.loads(evaluation.read_text())).summary())
    return row


def collect(multirun_dir: Path, name: str = "accuracy_drop") -> list[dict[str, Any]]:
    """Rows of every job in a sweep folder, in job order; ``overrides`` keeps what sets a
    job apart (the ones every job shares are left out)."""
    if not multirun_dir.is_dir():
        raise SettingError(f"multirun dir {multirun_dir} does not exist")
    jobs = sorted((p for p in multirun_dir.iterdir()
                   if (p / ".hydra" / "config.yaml").is_file()), key=_job_order)
    if not jobs:
        raise SettingError(f"no Hydra jobs in {multirun_dir}: expected subfolders holding "
                           ".hydra/config.yaml (a `python -m experiments.train -m ...` sweep)")
    rows = [job_row(job, name) for job in jobs]
    shared = set.intersection(*(set(row["overrides"]) for row in rows))
    for row in rows:
        row["overrides"] = " ".join(o for o in row["overrides"] if o not in shared)
    return rows


def columns_of(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Every key, first-seen order (jobs evaluated with different methods still line up)."""
    return list(dict.fromkeys(key for row in rows for key in row))


def swept(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The setting columns that take more than one value across the jobs."""
    return [c for c in SETTINGS if len({row.get(c) for row in rows}) > 1]


def result_columns(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Metric and evaluation-summary columns (what a sweep is judged on)."""
    fixed = {"job", "overrides", *SETTINGS}
    return [c for c in columns_of(rows) if c not in fixed]
