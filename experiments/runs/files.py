"""A run's folder: where its config, checkpoints and results are, and how result files are
named and written so that nothing earlier is ever overwritten or left half-written."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from sgt.atomic import atomic_write, created, write_text
from sgt.errors import SettingError, StorageError

EVAL_DIR = "eval"  # <run dir>/eval/<name>.*: every evaluation of the run
METRICS = "metrics.json"


def saved_config(run_dir: Path) -> Path:
    """Where a run's first start saved its settings (Hydra's ``.hydra/config.yaml``)."""
    return run_dir / ".hydra" / "config.yaml"


def evaluate_command(run_dir: Path) -> str:
    """The command that evaluates ``run_dir``'s checkpoint (again)."""
    return f"python -m experiments.evaluate ckpt_path={run_dir}"


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as JSON through :func:`sgt.atomic.atomic_write`: a kill never leaves
    half a file."""
    try:
        with atomic_write(path, "w") as f:
            json.dump(data, f, indent=2, sort_keys=True)
    except OSError as err:
        raise StorageError(f"cannot write {path} ({err.strerror}); any earlier version of "
                           "it is intact: free space and run again") from None


def write_csv(path: Path, header: Sequence[str],
              rows: Iterable[Mapping[str, Any] | Sequence[Any]]) -> Path:
    """A csv table, atomically; a row is a sequence, or a mapping read by ``header`` (a
    missing key is an empty cell)."""
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(header)
    writer.writerows([row.get(c, "") for c in header] if isinstance(row, Mapping) else row
                     for row in rows)
    return write_text(path, text.getvalue())


def read_metrics(run_dir: Path) -> dict[str, Any]:
    """A run's ``metrics.json`` (empty when it has none)."""
    path = run_dir / METRICS
    return json.loads(path.read_text()) if path.is_file() else {}


def claim_stem(directory: Path, name: str, suffixes: Sequence[str]) -> str:
    """The first of ``name``, ``name_2``, … with none of ``name + suffix`` existing, claimed
    by creating its first file exclusively (two jobs at once never share a name); a failed
    :func:`sgt.atomic.all_or_nothing` block gives the name back."""
    directory.mkdir(parents=True, exist_ok=True)
    n = 1
    while True:
        stem = name if n == 1 else f"{name}_{n}"
        if not any((directory / f"{stem}{s}").exists() for s in suffixes):
            try:
                (directory / f"{stem}{suffixes[0]}").open("x").close()
                created(directory / f"{stem}{suffixes[0]}")
                return stem
            except FileExistsError:
                pass
        n += 1


def latest_result(run_dir: Path, name: str = "accuracy_drop") -> Path | None:
    """The newest ``eval/<name>[_n].json`` of a run (highest ``n``), or ``None``."""
    pattern = re.compile(rf"{re.escape(name)}(?:_(\d+))?\.json")
    found = [(int(m.group(1) or 1), p) for p in (run_dir / EVAL_DIR).glob(f"{name}*.json")
             if (m := pattern.fullmatch(p.name))]
    return max(found)[1] if found else None


def resolve_run(ckpt_path: str | Path) -> tuple[Path, Path]:
    """``(checkpoint, run dir)`` for a ``.ckpt`` file or a run dir.

    A run dir's checkpoint is metrics.json's ``best_ckpt_path`` (looked up in the run's own
    ``checkpoints/``, so a moved run still works), else ``checkpoints/last.ckpt``.
    """
    path = Path(str(ckpt_path))
    if path.is_file():
        return path, path.parent.parent
    if not path.is_dir():
        raise SettingError(f"ckpt_path={str(ckpt_path)!r} is neither a checkpoint file nor a "
                           "run dir; give <run dir> or <run dir>/checkpoints/<name>.ckpt")
    candidates = []
    best = read_metrics(path).get("best_ckpt_path") or ""
    if best:
        candidates += [path / "checkpoints" / Path(best).name, Path(best)]
    candidates.append(path / "checkpoints" / "last.ckpt")
    for candidate in candidates:
        if candidate.is_file():
            return candidate, path
    raise SettingError(f"run dir {path} has no checkpoint: looked for metrics.json's "
                       "best_ckpt_path and checkpoints/last.ckpt")


def load_run_config(run_dir: Path) -> DictConfig:
    """The config a run was started with (``.hydra/config.yaml``)."""
    path = saved_config(run_dir)
    if not path.is_file():
        raise SettingError(f"{path} not found: the run's saved config is needed to rebuild its "
                           "model and data (is the checkpoint inside <run dir>/checkpoints/?)")
    return OmegaConf.load(path)


def run_label(run_cfg: DictConfig) -> str:
    """``regular`` for k = 0, else ``SGT k=… λ=…``: how figures and tables name a run."""
    k = OmegaConf.select(run_cfg, "sgt.k", default=0.0)
    lam = OmegaConf.select(run_cfg, "sgt.lam", default=0.0)
    return "regular" if not k else f"SGT k={k:g} λ={lam:g}"
