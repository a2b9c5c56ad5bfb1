"""Which checkpoint an evaluation saw, and whether it is still the run's.

A run trained longer (or resumed) gets new checkpoints; an evaluation of the old ones must
not pass for the run's. Every evaluation records the checkpoint it loaded (path, epoch,
step and a SHA-256 of its bytes); :func:`stale_reason` compares that with the checkpoint
the run has now (:func:`experiments.runs.files.resolve_run`), and the reports leave stale
evaluations out, saying so.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any, NamedTuple

from experiments.runs.files import evaluate_command, latest_result, resolve_run
from sgt.errors import SettingError


@cache
def _sha256(path: Path, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def file_hash(path: Path) -> str:
    """SHA-256 of ``path``'s bytes (read once per process while the file is unchanged)."""
    stat = path.stat()
    return _sha256(path.resolve(), stat.st_size, stat.st_mtime_ns)


def checkpoint_record(path: Path, checkpoint: Mapping[str, Any]) -> dict[str, Any]:
    """What an evaluation result records of the checkpoint it loaded."""
    return {"checkpoint": str(path), "checkpoint_epoch": checkpoint.get("epoch"),
            "checkpoint_step": checkpoint.get("global_step"),
            "checkpoint_sha256": file_hash(path)}


def stale_reason(run_dir: Path, result: Mapping[str, Any]) -> str | None:
    """Why the evaluation saved as ``result`` is no longer of the run's checkpoint, or
    ``None`` while it is (or when it predates the record and cannot tell)."""
    seen = result.get("checkpoint_sha256")
    if seen is None:
        return None
    what = f"it evaluated {Path(result['checkpoint']).name} (epoch {result['checkpoint_epoch']})"
    try:
        current, _ = resolve_run(run_dir)
    except SettingError:
        return f"{what}, and the run has no checkpoint now"
    if file_hash(current) == seen:
        return None
    return f"{what}, and the run's checkpoint is now {current.name}, other weights"


class Newest(NamedTuple):
    """A run's newest evaluation of one name: its file and contents while it is of the run's
    checkpoint; only ``stale`` (why) when it is not; all ``None`` when there is none."""

    path: Path | None = None
    data: dict[str, Any] | None = None
    stale: str | None = None


def current_result(run_dir: Path, name: str) -> Newest:
    """The run's newest evaluation ``name``, unless it is stale (:func:`stale_reason`)."""
    path = latest_result(run_dir, name)
    if path is None:
        return Newest()
    data = json.loads(path.read_text())
    why = stale_reason(run_dir, data)
    return Newest(path, data) if why is None else Newest(stale=f"{path}: {why}")


def stale_note(run_dir: Path, why: str) -> str:
    """The line a report prints for an evaluation it left out."""
    return (f"left out the stale evaluation {why}; evaluate the run again: "
            f"{evaluate_command(run_dir)}")
