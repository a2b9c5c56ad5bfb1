"""Start-up: a real ``python -m experiments.train`` command in a fresh process, from the
command to its first training step done, split into phases by the process's own
``-X importtime`` log and by :class:`StartupTimes`, a callback the command is given with
``+callbacks.…`` overrides (nothing in the process is patched)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl

from experiments.bench.measure import (
    BudgetSpent,
    Context,
    Figure,
    SectionSkipped,
    figure,
    from_samples,
    synchronize,
)
from experiments.runs.compose import compose_config
from sgt.errors import DatasetNotFoundError

SECTION = "startup"
ROOT = Path(__file__).resolve().parents[2]
TOTAL = "mnist: command → first step"
# ``python -X importtime`` lines: "import time: <self µs> | <cumulative µs> | <indent><name>"
IMPORT_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \| (\S+)\s*$")


class StartupTimes(pl.Callback):
    """Wall-clock stamps (``time.time()``) of a run up to its first step, written to ``path``
    when that step ends: ``callbacks_built`` (``experiments.train`` builds its callbacks once
    the config is checked, the model built and the data read), ``first_step_start`` and
    ``first_step_end`` (device synchronised)."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.stamps = {"callbacks_built": time.time()}

    def on_train_batch_start(self, trainer: pl.Trainer, module: pl.LightningModule,
                             batch: Any, batch_idx: int) -> None:
        self.stamps.setdefault("first_step_start", time.time())

    def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        if "first_step_end" not in self.stamps:
            synchronize(module.device)
            self.stamps["first_step_end"] = time.time()
            self.path.write_text(json.dumps(self.stamps))


def import_seconds(importtime_log: str) -> float:
    """Seconds of all imports in a ``-X importtime`` log: its top-level (unindented) entries'
    cumulative times."""
    return sum(int(m[2]) for m in map(IMPORT_LINE.match, importtime_log.splitlines()) if m) / 1e6


def run(ctx: Context) -> Iterator[Figure]:
    check_mnist()
    runs: list[dict[str, float]] = []
    for index in range(ctx.pick(3, 2, 1)):
        if runs and ctx.seconds_left() < 1.5 * runs[-1][TOTAL]:  # another would not fit
            break
        runs.append(command_phases(ctx, ctx.work / f"startup_{index}"))
    batch = "batch 8" if ctx.quick else "the recipe's batch"
    note = f"fresh processes: {len(runs)}, {batch}, under python -X importtime"
    for name in runs[0]:
        yield figure(SECTION, name, from_samples([r[name] for r in runs], name), note=note)


def check_mnist() -> None:
    """The command trains on the real MNIST: a section without it is skipped, saying why."""
    datamodule = hydra.utils.instantiate(compose_config("train.yaml", []).dataset)
    datamodule.download = False
    try:
        datamodule.prepare_data()
    except DatasetNotFoundError as err:
        raise SectionSkipped(f"the command needs the real MNIST: {err}") from None


def command_phases(ctx: Context, run_dir: Path) -> dict[str, float]:
    """One command of one training step (and one validation batch): seconds from the command
    to its first step done, and the four phases that add up to it."""
    stamps_file = run_dir.with_suffix(".json")
    command = [
        sys.executable, "-X", "importtime", "-m", "experiments.train", "dataset=mnist",
        "trainer.accelerator=" + ("gpu" if ctx.device.type == "cuda" else "cpu"),
        "trainer.devices=1", "trainer.max_epochs=1", "trainer.limit_train_batches=1",
        "trainer.limit_val_batches=1", "test=false", "trainer.enable_progress_bar=false",
        "dataset.download=false", f"hydra.run.dir={run_dir}",
        f"+callbacks.startup_times._target_={StartupTimes.__module__}.StartupTimes",
        f"+callbacks.startup_times.path={stamps_file}",
        *(["dataset.batch_size=8", "dataset.eval_batch_size=16"] if ctx.quick else [])]
    start = time.time()
    try:
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False,
                              timeout=max(1.0, ctx.seconds_left()))
    except subprocess.TimeoutExpired:
        raise BudgetSpent("the budget ran out during a start-up command") from None
    if done.returncode != 0:
        errors = [line for line in done.stderr.splitlines() if not line.startswith("import time")]
        raise RuntimeError(f"python -m experiments.train failed (exit {done.returncode}): "
                           + (errors[-1] if errors else "no message"))
    t = json.loads(stamps_file.read_text())
    imports = import_seconds(done.stderr)
    return {
        TOTAL: t["first_step_end"] - start,
        "mnist: imports": imports,
        "mnist: config, checks, data, model": t["callbacks_built"] - start - imports,
        "mnist: Trainer set-up": t["first_step_start"] - t["callbacks_built"],
        "mnist: first step": t["first_step_end"] - t["first_step_start"],
    }
