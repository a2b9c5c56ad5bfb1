"""Where a run's wall time goes, for ``python -m experiments.benchmark loop|startup|eval``.

- :class:`Phases`: wall time per named phase; a nested phase is charged to itself, not to
  the phase around it (``exclusive`` times add up to the total);
- :class:`StepWindow`: the time per training step *inside* ``Trainer.fit``;
- :class:`StartupTimes`: wall-clock stamps of a real ``experiments.train`` command up to its
  first step, written as JSON (added to a run with ``+callbacks.…`` overrides);
- :func:`import_seconds`: the import time ``python -X importtime`` reports.

The GPU is synchronised only at phase and window boundaries, so the work queued inside is
charged to its phase and the loop runs between them as it does in training.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch


def synchronize() -> None:
    """Wait for queued GPU work (a no-op without an initialised GPU)."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


class Phases:
    """Exclusive wall seconds per phase name (a phase entered twice adds up)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._children: list[float] = []  # per open phase: seconds spent in nested phases

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        synchronize()
        start = time.perf_counter()
        self._children.append(0.0)
        try:
            yield
        finally:
            synchronize()
            elapsed = time.perf_counter() - start
            nested = self._children.pop()
            self.seconds[name] = self.seconds.get(name, 0.0) + elapsed - nested
            if self._children:
                self._children[-1] += elapsed

    def timed(self, fn: Callable[..., Any], name: str | Callable[..., str]) -> Callable[..., Any]:
        """``fn`` timed as phase ``name`` (or ``name(*args)``) on every call."""

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self(name if isinstance(name, str) else name(*args, **kwargs)):
                return fn(*args, **kwargs)

        return wrapper

    @property
    def total(self) -> float:
        return sum(self.seconds.values())


class StepWindow(pl.Callback):
    """Seconds per training step over batches ``[warmup, warmup + steps)`` of ``fit``: from the
    start of the first timed batch to the end of the last, with every hook, log, progress bar
    and data fetch in between; the GPU is synchronised at the window's two ends only."""

    def __init__(self, warmup: int, steps: int) -> None:
        self.warmup, self.steps = warmup, steps
        self._batches = 0
        self._start: float | None = None
        self.seconds_per_step: float | None = None

    def on_train_batch_start(self, trainer: pl.Trainer, module: pl.LightningModule,
                             batch: Any, batch_idx: int) -> None:
        if self._batches == self.warmup:
            synchronize()
            self._start = time.perf_counter()

    def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        self._batches += 1
        if self._batches == self.warmup + self.steps and self._start is not None:
            synchronize()
            self.seconds_per_step = (time.perf_counter() - self._start) / self.steps


class StartupTimes(pl.Callback):
    """Wall-clock stamps (``time.time()``) of a run up to its first step, written to ``path``
    when that step ends: ``callbacks_built`` (``experiments.train`` builds its callbacks once
    the config is checked, the model built and the data read), ``fit_start``,
    ``first_step_start`` and ``first_step_end`` (GPU synchronised)."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.stamps = {"callbacks_built": time.time()}

    def on_fit_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.stamps.setdefault("fit_start", time.time())

    def on_train_batch_start(self, trainer: pl.Trainer, module: pl.LightningModule,
                             batch: Any, batch_idx: int) -> None:
        self.stamps.setdefault("first_step_start", time.time())

    def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        if "first_step_end" not in self.stamps:
            synchronize()
            self.stamps["first_step_end"] = time.time()
            self.path.write_text(json.dumps(self.stamps))


# ``python -X importtime`` lines: "import time: <self µs> | <cumulative µs> | <indent><name>"
IMPORT_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \| ( *)(\S+)\s*$")


def import_seconds(importtime_log: str, watch: tuple[str, ...] = ()) -> dict[str, float]:
    """Seconds of all imports in a ``-X importtime`` log (``total``: its top-level entries),
    and of each top-level package in ``watch`` that was imported (wherever it was nested)."""
    total, seen = 0.0, {}
    for line in importtime_log.splitlines():
        match = IMPORT_LINE.match(line)
        if not match:
            continue
        cumulative, depth, name = int(match[2]) / 1e6, len(match[3]) // 2, match[4]
        if depth == 0:
            total += cumulative
        if name in watch:  # the first (outermost) import of a package is the one that counts
            seen.setdefault(name, cumulative)
    return {"total": total, **seen}
