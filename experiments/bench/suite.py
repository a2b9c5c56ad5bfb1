"""Run the benchmark's sections in priority order within a time budget: a section not
started by the deadline is not started, one running at the deadline is stopped there (its
figures so far kept), and each that did not run to its end says why."""

from __future__ import annotations

import contextlib
import gc
import importlib
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from rich.console import Console

from experiments.bench import SECTIONS
from experiments.bench.measure import BudgetSpent, Context, Figure, SectionSkipped

STATUSES = ("ran", "skipped", "failed", "out_of_budget")


@dataclass(frozen=True)
class SectionResult:
    """How a section ended (one of :data:`STATUSES`), why if not ``ran``, and its seconds."""

    name: str
    status: str
    reason: str
    seconds: float


def load_section(name: str) -> Callable[[Context], Iterator[Figure]]:
    module = f"experiments.bench.{name}"
    try:
        return importlib.import_module(module).run
    except ModuleNotFoundError as err:
        if err.name != module:  # a missing dependency inside it is a failure, not a skip
            raise
        raise SectionSkipped(f"{module} is not there") from None


@contextlib.contextmanager
def hard_deadline(ctx: Context) -> Iterator[None]:
    """Raise :class:`BudgetSpent` in this thread when ``ctx``'s deadline passes, so a section
    stops in the middle of a figure rather than overrun the budget (a SIGALRM timer: in the
    main thread only; elsewhere the budget is checked between sections)."""
    if not hasattr(signal, "setitimer") or threading.current_thread() is not \
            threading.main_thread():
        yield
        return

    def expire(signum: int, frame: object) -> None:
        raise BudgetSpent("the budget ran out during it")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, max(ctx.seconds_left(), 1e-3))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run_section(ctx: Context, name: str, figures: list[Figure], console: Console
                ) -> SectionResult:
    """Section ``name``'s figures appended to ``figures`` as they come, until it ends, fails
    or the budget is spent."""
    start, count = time.monotonic(), 0

    def ended(status: str, reason: str = "") -> SectionResult:
        return SectionResult(name, status, reason, round(time.monotonic() - start, 3))

    if ctx.seconds_left() <= 0:
        return ended("out_of_budget", "the budget was spent before it started")
    try:
        with contextlib.closing(load_section(name)(ctx)) as section, hard_deadline(ctx):
            for fig in section:
                figures.append(fig)
                count += 1
                console.log(f"{name}: {fig.name} = {fig.median:.4g} {fig.unit} (n={fig.n})")
    except SectionSkipped as err:
        return ended("skipped", str(err))
    except BudgetSpent as err:
        return ended("out_of_budget", f"{err}, after {count} figures")
    except Exception as err:  # one section's failure must not lose the others' figures
        console.print(traceback.format_exc(), markup=False, highlight=False)
        first = (str(err).strip().splitlines() or [""])[0]
        return ended("failed", f"{type(err).__name__}: {first}")
    finally:
        gc.collect()
        if ctx.device.type == "cuda":
            torch.cuda.empty_cache()
    if count == 0:
        return ended("failed", "it measured nothing")
    return ended("ran")


def run_suite(ctx: Context, sections: Sequence[str], console: Console
              ) -> tuple[list[Figure], list[SectionResult]]:
    """Every section of ``sections`` in :data:`SECTIONS` order: the figures and how each
    section ended."""
    figures: list[Figure] = []
    results = []
    for name in (s for s in SECTIONS if s in sections):
        console.rule(name)
        results.append(run_section(ctx, name, figures, console))
        if results[-1].status != "ran":
            console.log(f"{name}: {results[-1].status} ({results[-1].reason})")
    return figures, results
