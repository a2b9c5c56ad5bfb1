"""The lines a finished run prints: what it reached, where its results are, what next."""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from experiments.runs.files import METRICS, run_label


def _percent(value: Any) -> str:
    return "–" if value is None else f"{100 * float(value):.2f} %"


def _choice(group: str) -> str:
    choices = HydraConfig.get().runtime.choices if HydraConfig.initialized() else {}
    return str(choices.get(group, "?"))


def _shown(path: Path) -> str:
    """Relative to the working directory when inside it, else absolute."""
    path = path.resolve()
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)


def print_run_summary(cfg: DictConfig, metrics: Mapping[str, Any]) -> None:
    """Print the test accuracy, the results folder and the command that evaluates it."""
    if int(os.environ.get("LOCAL_RANK", "0")) != 0:
        return
    run_dir = Path(cfg.paths.output_dir)
    times = metrics.get("epoch_time_s") or []
    world, batch = metrics.get("world_size", 1), metrics.get("batch_size")
    processes = (f" on {world} processes (global batch {batch}, {batch // world} each)"
                 if world > 1 and batch else "")
    lines = [
        f"done: {run_label(cfg)} on {_choice('dataset')} ({_choice('model')}), "
        f"{len(times)} epoch{'s' * (len(times) != 1)} trained in {sum(times):.0f} s"
        f"{processes}",
        f"  test accuracy {_percent(metrics.get('test/acc'))} (masked inputs "
        f"{_percent(metrics.get('test/acc_masked'))}); best validation accuracy "
        f"{_percent(metrics.get('val/acc_best'))}",
        f"  results: {_shown(run_dir / METRICS)} (checkpoints/, csv/, .hydra/ beside it)",
        f"  next: python -m experiments.evaluate ckpt_path={shlex.quote(_shown(run_dir))}",
    ]
    print("\n".join(lines), flush=True)
