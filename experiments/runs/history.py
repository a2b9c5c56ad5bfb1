"""A run's training history from its CSV logs (``<run dir>/csv/version_N/metrics.csv``).

Lightning's CSV logger writes one row per logging event; epoch means (``train/loss``,
``val/acc``, …) land on the row of their epoch's end. A resumed run starts a new
``version_N`` whose epochs continue the count, so the versions are read in order and a
repeated epoch keeps its newest value.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from sgt.errors import SettingError
from sgt.plots.common import number

SPLITS = ("train", "val")  # the splits logged every epoch (test is logged once)
NOT_CURVES = ("_step", "_best")  # per-step values and running maxima: not epoch curves


def _version(path: Path) -> int:
    match = re.fullmatch(r"version_(\d+)", path.parent.name)
    return int(match.group(1)) if match else -1


def _is_curve(column: str) -> bool:
    split, _, quantity = column.partition("/")
    return split in SPLITS and bool(quantity) and not quantity.endswith(NOT_CURVES)


def read_history(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """``{"train/loss": [(epoch, value), ...], "val/acc": ...}`` with epochs counted from 1,
    in epoch order; empty when the run has no CSV log."""
    by_epoch: dict[str, dict[int, float]] = {}
    for log in sorted((run_dir / "csv").glob("version_*/metrics.csv"), key=_version):
        with log.open(newline="") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None or "epoch" not in reader.fieldnames:
                raise SettingError(f"{log} is not a Lightning CSV log: its header has no "
                                   "'epoch' column")
            for row in reader:
                epoch = number(row["epoch"])
                if epoch is None:  # logged outside any epoch (an evaluation's summary)
                    continue
                for column, text in row.items():
                    value = number(text)
                    if column is not None and value is not None and _is_curve(column):
                        by_epoch.setdefault(column, {})[int(epoch) + 1] = value
    return {column: sorted(values.items()) for column, values in by_epoch.items()}
