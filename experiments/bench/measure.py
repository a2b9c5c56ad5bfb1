"""What every benchmark section shares: how a figure is timed and what it records.

Timings go through ``torch.utils.benchmark``, which synchronises the device itself and keeps
every block's time, so a figure carries its spread (median and interquartile range over
``n`` blocks), not a bare mean. :func:`time_it` uses ``Timer.adaptive_autorange``: unlike
``blocked_autorange`` (which returns a single block or two for a statement that takes about
``min_run_time``), it keeps taking blocks until there are more than three and the IQR is
within 10 % of the median, or until ``max_run_time`` is spent (a slow statement gets fewer).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import torch
from torch.utils import benchmark
from torch.utils.benchmark.utils.common import TaskSpec

T = TypeVar("T")
# max_run_time of a timing, as a multiple of min_run_time: bounds a slow statement's blocks
MAX_RUN_FACTOR = 4.0


class SectionSkipped(Exception):
    """A section cannot run here (no GPU, no data, module not there); the message says why."""


class BudgetSpent(Exception):
    """The suite's deadline passed in the middle of a section's figure."""


@dataclass(frozen=True)
class Context:
    """What a section is asked to do: where, how small, and until when.

    ``quick`` asks for the smallest sizes that still exercise the real code (the test
    suite's run); ``deadline`` is a ``time.monotonic()`` value: the suite stops a section
    that runs past it (:class:`BudgetSpent`), and a section may check it before a long
    figure. Runs a section makes write under ``work`` (the suite's temporary folder).
    """

    device: torch.device
    quick: bool
    deadline: float
    min_run_time: float = 1.0
    work: Path = Path(tempfile.gettempdir())

    def seconds_left(self) -> float:
        return self.deadline - time.monotonic()

    def pick(self, gpu: T, cpu: T, quick: T) -> T:
        """A size by where the suite runs: full on a GPU, moderate on a CPU, tiny if quick."""
        if self.quick:
            return quick
        return gpu if self.device.type == "cuda" else cpu

    def measure(self, fn: Callable[[], object], label: str, warmup: int | None = None
                ) -> benchmark.Measurement:
        """:func:`time_it` with this context's run times (at most ``4 × min_run_time`` and
        not past the deadline; a single call when quick), after ``warmup`` calls (default:
        one on a GPU, for compilation and cuDNN autotuning; none on a CPU, where the
        timer's first call, which sizes its blocks, warms up)."""
        for _ in range(self.pick(1, 0, 0) if warmup is None else warmup):
            fn()
        if self.quick:  # the test suite's run: one call shows that it works
            return timer(fn, label).timeit(1)
        longest = max(self.min_run_time, min(MAX_RUN_FACTOR * self.min_run_time,
                                             self.seconds_left()))
        return time_it(fn, self.min_run_time, label, max_run_time=longest)


@dataclass(frozen=True)
class Figure:
    """One measured number with its spread; ``unit`` is ``"s"`` for times, ``"x"`` for ratios."""

    section: str
    name: str
    median: float
    iqr: float
    n: int
    unit: str = "s"
    note: str = ""


def synchronize(device: torch.device) -> None:
    """Wait for the work queued on ``device`` (a no-op on a CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timer(fn: Callable[[], object], label: str = "", description: str = ""
          ) -> benchmark.Timer:
    """A ``Timer`` of ``fn()`` on torch's current thread count."""
    return benchmark.Timer(stmt="fn()", globals={"fn": fn}, label=label,
                           description=description, num_threads=torch.get_num_threads())


def time_it(fn: Callable[[], object], min_run_time: float, label: str = "",
            description: str = "", max_run_time: float | None = None
            ) -> benchmark.Measurement:
    """``fn`` timed in blocks (device synchronised) for at least ``min_run_time`` seconds and
    at least four blocks, until the spread settles or ``max_run_time`` (default
    ``4 × min_run_time``) is spent."""
    return timer(fn, label, description).adaptive_autorange(
        min_run_time=min_run_time,
        max_run_time=max_run_time if max_run_time is not None else MAX_RUN_FACTOR * min_run_time)


def from_samples(samples: Sequence[float], label: str = "") -> benchmark.Measurement:
    """A measurement of times taken elsewhere (a fresh process's start-up, the epochs of a
    fit), so they get the same median and IQR as :func:`time_it`'s."""
    if not samples:
        raise ValueError(f"no samples to summarise for {label!r}")
    spec = TaskSpec(stmt="", setup="", label=label, num_threads=torch.get_num_threads())
    return benchmark.Measurement(number_per_run=1, raw_times=list(samples), task_spec=spec)


def figure(section: str, name: str, measurement: benchmark.Measurement, scale: float = 1.0,
           note: str = "") -> Figure:
    """A :class:`Figure` in seconds (times ``scale``, e.g. per 10 000 images) from a
    measurement."""
    return Figure(section, name, measurement.median * scale, measurement.iqr * scale,
                  len(measurement.times), "s", note)


def ratio(section: str, name: str, numerator: benchmark.Measurement,
          denominator: benchmark.Measurement, note: str = "") -> Figure:
    """``numerator / denominator`` of the medians. Its IQR is propagated from the two
    relative IQRs (added in quadrature): the blocks of two timers are not paired, so no
    per-block ratio exists; ``n`` is the smaller block count."""
    value = numerator.median / denominator.median
    spread = value * ((numerator.iqr / numerator.median) ** 2
                      + (denominator.iqr / denominator.median) ** 2) ** 0.5
    return Figure(section, name, value, spread,
                  min(len(numerator.times), len(denominator.times)), "x", note)
