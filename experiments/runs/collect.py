"""One collector: any run folders or sweep folders become records, one per run.

A run folder is any folder holding ``.hydra/config.yaml`` (a single run, a job of a sweep, a
run anywhere below a folder given); a sweep is every run below its folder. Each
:class:`Record` has the run's config and config choices, its overrides, ``metrics.json``
and every evaluation (the newest ``eval/<name>[_n].json`` of each name). Every view of
``experiments.report`` (a sweep table, N runs side by side, the paper's tables) reads these
records and nothing else.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from experiments.runs.files import EVAL_DIR, read_metrics, run_label, saved_config
from experiments.runs.provenance import current_result, stale_note
from sgt.errors import SettingError
from sgt.evaluation import EvaluationResult, result_from_dict

METRICS = ("test/acc", "val/acc_best")
SETTINGS = {"k": "sgt.k", "lam": "sgt.lam"}  # column -> config key, always shown
_NUMBERED = re.compile(r"(.+?)(?:_(\d+))?\.json")


@dataclass
class Record:
    """One run: where it is, how it was configured, what it reached and how it was
    evaluated."""

    folder: Path
    name: str  # the run's path below the folder it was collected from
    config: DictConfig
    choices: dict[str, str]  # config group -> option (``model: tcn``)
    overrides: list[str]
    metrics: dict[str, Any]
    _results: dict[str, EvaluationResult | None] = field(default_factory=dict, repr=False)
    stale: dict[str, str] = field(default_factory=dict)  # evaluation name -> why left out

    @property
    def k(self) -> float:
        return float(OmegaConf.select(self.config, "sgt.k", default=0.0) or 0.0)

    @property
    def regime(self) -> str:
        """``regular`` (k = 0) or ``sgt``."""
        return "regular" if self.k == 0 else "sgt"

    @property
    def label(self) -> str:
        return run_label(self.config)

    def setting(self, key: str) -> Any:
        return OmegaConf.select(self.config, key)

    @cached_property
    def evaluation_names(self) -> list[str]:
        """The names of the run's evaluations (``eval/<name>[_n].json``)."""
        names = [m.group(1) for p in sorted((self.folder / EVAL_DIR).glob("*.json"))
                 if (m := _NUMBERED.fullmatch(p.name))]
        return list(dict.fromkeys(names))

    def evaluation(self, name: str) -> EvaluationResult | None:
        """The run's newest evaluation ``name``, or ``None`` (also when it is of a checkpoint
        that is no longer the run's: then :attr:`stale` says why)."""
        if name not in self._results:
            newest = current_result(self.folder, name)
            self._results[name] = None if newest.data is None else result_from_dict(newest.data)
            if newest.stale is not None:
                self.stale[name] = newest.stale
        return self._results[name]

    def row(self, name: str | None = None) -> dict[str, Any]:
        """The run, flat: ``job``, ``overrides`` (a list), ``k``, ``lam``, the metrics, then
        evaluation ``name``'s summary (``auc/grad``, …), or with no ``name`` every
        evaluation's, each key under its evaluation's name (``accuracy_drop/auc/grad``)."""
        row: dict[str, Any] = {
            "job": self.name, "overrides": list(self.overrides),
            **{column: self.setting(key) for column, key in SETTINGS.items()},
            **{m: self.metrics.get(m) for m in METRICS},
        }
        for evaluation in [name] if name else self.evaluation_names:
            result = self.evaluation(evaluation)
            if result is not None:
                prefix = "" if name else f"{evaluation}/"
                row.update({f"{prefix}{k}": v for k, v in result.summary().items()})
        return row


def _order(name: str) -> tuple:
    """Jobs ``0, 1, …, 10`` in number order, then named folders by name."""
    parts = Path(name).parts
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts)


def run_folders(root: Path) -> list[Path]:
    """Every run folder at or below ``root``, in job order."""
    if saved_config(root).is_file():
        return [root]
    found = {p.parent.parent for p in root.rglob("config.yaml") if p.parent.name == ".hydra"}
    return sorted(found, key=lambda p: _order(str(p.relative_to(root))))


def read_record(folder: Path, name: str) -> Record:
    config = OmegaConf.load(saved_config(folder))
    hydra_file, overrides_file = (folder / ".hydra" / f for f in ("hydra.yaml",
                                                                   "overrides.yaml"))
    choices = (OmegaConf.select(OmegaConf.load(hydra_file), "hydra.runtime.choices")
               if hydra_file.is_file() else None) or {}
    overrides = OmegaConf.load(overrides_file) if overrides_file.is_file() else []
    return Record(folder, name, config, {str(k): str(v) for k, v in choices.items()},
                  [str(o) for o in overrides], read_metrics(folder))


def collect(paths: Iterable[Path]) -> list[Record]:
    """The records of every run in ``paths`` (run folders, sweep folders, any folder above
    runs), each run once, in the order given and job order within a folder."""
    records: dict[Path, Record] = {}
    for path in map(Path, paths):
        if not path.is_dir():
            raise SettingError(f"{path} is not a folder; give run or sweep folders")
        folders = run_folders(path)
        if not folders:
            raise SettingError(f"no runs in {path}: expected folders holding .hydra/config.yaml "
                               "(python -m experiments.train, with or without -m)")
        for folder in folders:
            name = folder.name if folder == path else str(folder.relative_to(path))
            records.setdefault(folder.resolve(), read_record(folder, name))
    return list(records.values())


def rows(records: Sequence[Record], name: str | None = None) -> list[dict[str, Any]]:
    """:meth:`Record.row` of each record; ``overrides`` keeps what sets a run apart (the
    ones every run shares are left out) as one string."""
    out = [r.row(name) for r in records]
    shared = set.intersection(*(set(row["overrides"]) for row in out)) if out else set()
    for row in out:
        row["overrides"] = " ".join(o for o in row["overrides"] if o not in shared)
    return out


def stale_notes(records: Sequence[Record]) -> list[str]:
    """One line per evaluation a view left out because the run's checkpoint changed since."""
    return [stale_note(r.folder, why) for r in records for why in r.stale.values()]


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


__all__ = ["METRICS", "SETTINGS", "Record", "collect", "columns_of", "result_columns", "rows",
           "run_folders", "stale_notes", "swept"]
