"""Shared entry-point plumbing: instantiating lists, atomic result files, error reporting."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from contextlib import suppress
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from omegaconf import DictConfig

from experiments.validation import fail
from sgt.errors import SGTError

F = TypeVar("F", bound=Callable[..., Any])


def instantiate_list(cfg: DictConfig | None) -> list[Any]:
    """Objects of every entry with a ``_target_`` (callbacks, loggers); others are skipped."""
    if not cfg:
        return []
    return [hydra.utils.instantiate(c) for c in cfg.values()
            if isinstance(c, DictConfig) and "_target_" in c]


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write through a temporary file and rename, so a kill never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _only_hydra_files(run_dir: Path) -> bool:
    return run_dir.is_dir() and all(p.name in {".hydra", f"{run_dir.name}.log"} or
                                    p.suffix == ".log" for p in run_dir.iterdir())


def _undo_start(run_dir: Path) -> None:
    """Remove what Hydra wrote for a start that failed: the run dir when it holds nothing
    else, or a resumed start's own ``.hydra/resume_<n>`` (the earlier results stay)."""
    if _only_hydra_files(run_dir):
        shutil.rmtree(run_dir, ignore_errors=True)
    elif HydraConfig.initialized() and HydraConfig.get().output_subdir not in (None, ".hydra"):
        subdir = run_dir / HydraConfig.get().output_subdir
        shutil.rmtree(subdir, ignore_errors=True)
        with suppress(OSError):  # .hydra/ itself, if this start created it
            subdir.parent.rmdir()


def report_user_errors(output_dir: Callable[[DictConfig], Path | None]) -> Callable[[F], F]:
    """CLI wrapper: a :class:`SGTError` becomes one line and exit 2, and a run dir holding
    nothing but Hydra's bookkeeping is removed, so a failed start leaves no partial results."""

    def decorate(task: F) -> F:
        @wraps(task)
        def run(cfg: DictConfig) -> Any:
            try:
                return task(cfg)
            except (SGTError, InstantiationException) as err:
                # Hydra wraps what a ``_target_`` raises (a model's bad weights, say).
                user_error = err if isinstance(err, SGTError) else err.__cause__
                if not isinstance(user_error, SGTError):
                    raise
                run_dir = output_dir(cfg)
                if run_dir is not None:
                    _undo_start(run_dir)
                fail(str(user_error))

        return run  # type: ignore[return-value]

    return decorate
