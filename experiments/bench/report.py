"""The suite's record: ``benchmark.json`` (every figure with its spread, and the run's
device, torch version and commit), ``benchmark.md`` (a table per section, the targets) and
the comparison of two runs."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from rich.table import Table

from experiments.bench.measure import Context, Figure
from experiments.bench.suite import SectionResult

ROOT = Path(__file__).resolve().parents[2]
FIGURE_KEYS = {"section": str, "name": str, "median": float, "iqr": float, "n": int,
               "unit": str, "note": str}


@dataclass(frozen=True)
class Target:
    """A figure's goal, open until a GPU run measures it (CPU figures are not held to it)."""

    section: str
    figure: str
    bound: float
    unit: str
    what: str


TARGETS = (
    Target("loop", "mnist sgt: loop ÷ step", 1.15, "x", "MNIST SGT loop ÷ step"),
    Target("epochs", "mnist sgt: epoch", 0.6, "s", "MNIST SGT epoch"),
    Target("epochs", "cifar10 sgt: epoch", 3.3, "s", "CIFAR-10 SGT epoch (H100)"),
    Target("startup", "mnist: command → first step", 5.0, "s",
           "start-up, command to first step"),
    Target("accuracy_drop", "7 methods × 10 levels, per 10 000 MNIST images", 12.0, "s",
           "accuracy drop, 7 methods × 10 levels × 10k MNIST"),
)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU {platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                              timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


def metadata(ctx: Context, command: str, budget: float, started: str, seconds: float
             ) -> dict[str, Any]:
    """Where and how the suite ran: what makes two runs' figures comparable or not."""
    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"command": command, "device": device_name(ctx.device),
            "device_type": ctx.device.type, "torch": torch.__version__, "commit": commit,
            "dirty": None if status is None else bool(status),
            "python": platform.python_version(), "threads": torch.get_num_threads(),
            "budget_s": budget, "quick": ctx.quick, "started": started,
            "seconds": round(seconds, 3)}


def verdict(target: Target, figures: dict[tuple[str, str], dict[str, Any]],
            suite: dict[str, Any]) -> dict[str, Any]:
    """A target's entry: ``met``/``missed`` when a full GPU run measured it, else
    ``not measured`` (with what this run measured, if anything)."""
    found = figures.get((target.section, target.figure))
    measured = None if found is None else found["median"]
    on_gpu = suite["device_type"] == "cuda" and not suite["quick"]
    state = ("not measured" if measured is None or not on_gpu
             else "met" if measured <= target.bound else "missed")
    return {**asdict(target), "measured": measured, "verdict": state}


def benchmark_record(suite: dict[str, Any], figures: list[Figure],
                     sections: list[SectionResult]) -> dict[str, Any]:
    by_name = {(f.section, f.name): asdict(f) for f in figures}
    return {"suite": suite, "sections": [asdict(s) for s in sections],
            "figures": [asdict(f) for f in figures],
            "targets": [verdict(t, by_name, suite) for t in TARGETS]}


def read_benchmark(path: Path) -> dict[str, Any]:
    """A ``benchmark.json``; anything else is refused, naming the file and what is wrong."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read {path} as a benchmark.json ({err})") from None
    figures = data.get("figures") if isinstance(data, dict) else None
    if not isinstance(figures, list) or not all(
            isinstance(f, dict) and set(FIGURE_KEYS) <= set(f) for f in figures):
        raise ValueError(f"{path} is not a benchmark.json: it needs a 'figures' list of "
                         f"objects with {', '.join(FIGURE_KEYS)}")
    return data


def value(number: float | None, unit: str) -> str:
    """``2.31×`` for ratios; times in s, ms or µs, three significant digits."""
    if number is None:
        return "–"
    if unit == "x":
        return f"{number:.3g}×"
    scale, name = next(((scale, name) for scale, name in ((1.0, "s"), (1e-3, "ms"))
                        if abs(number) >= scale), (1e-6, "µs"))
    scaled = number / scale
    return f"{scaled:.3g} {name}" if abs(scaled) < 1000 else f"{scaled:.0f} {name}"


def spread(fig: dict[str, Any]) -> str:
    """The IQR, or ``–`` where one block gives none."""
    return value(fig["iqr"] if fig["n"] > 1 else None, fig["unit"])


def markdown(record: dict[str, Any]) -> str:
    """``benchmark.md``: how it ran, the targets, then a table per section."""
    s = record["suite"]
    commit = f"{s['commit'][:10]}{' (dirty)' if s['dirty'] else ''}" if s["commit"] else "?"
    lines = [
        "# sgt benchmark", "",
        f"`{s['command']}` on **{s['device']}**, torch {s['torch']}, python {s['python']}, "
        f"{s['threads']} threads, commit {commit}, {'quick sizes, ' if s['quick'] else ''}"
        f"started {s['started']}, {s['seconds']:.0f} s of a {s['budget_s']:.0f} s budget.",
        "", "Median and interquartile range (IQR) over n blocks (torch.utils.benchmark).", "",
        "## Targets", "", "Open until a GPU measures them; a CPU run's figure is not held "
        "to its target.", "", "| figure | target | measured | verdict |", "|---|---|---|---|"]
    for t in record["targets"]:
        bound = f"{t['bound']:g}{'×' if t['unit'] == 'x' else ' s'}"
        lines.append(f"| {t['what']} | ≤ {bound} | "
                     f"{value(t['measured'], t['unit'])} | {t['verdict']} |")
    for section in record["sections"]:
        lines += ["", f"## {section['name']}: {section['status'].replace('_', ' ')}"
                  + (f" ({section['reason']})" if section["reason"] else "")
                  + f", {section['seconds']:.1f} s", ""]
        rows = [f for f in record["figures"] if f["section"] == section["name"]]
        if rows:
            lines += ["| figure | median | IQR | n | note |", "|---|---|---|---|---|"]
            lines += [f"| {f['name']} | {value(f['median'], f['unit'])} | {spread(f)} | "
                      f"{f['n']} | {f['note']} |" for f in rows]
    return "\n".join(lines) + "\n"


def section_table(record: dict[str, Any]) -> Table:
    """The run's figures for the console, with each section's status."""
    table = Table(title=f"benchmark on {record['suite']['device']}")
    for column in ("section", "figure", "median", "IQR", "n", "note"):
        table.add_column(column, justify="right" if column in ("median", "IQR", "n")
                         else "left")
    for section in record["sections"]:
        rows = [f for f in record["figures"] if f["section"] == section["name"]]
        for f in rows:
            table.add_row(f["section"], f["name"], value(f["median"], f["unit"]), spread(f),
                          str(f["n"]), f["note"])
        if section["status"] != "ran":
            table.add_row(section["name"], f"[italic]{section['status']}: {section['reason']}",
                          "", "", "", "")
    return table


def compare_table(new: dict[str, Any], old: dict[str, Any]) -> Table:
    """Every figure of either run: its new and old median and new ÷ old (for a time,
    above 1 is slower)."""
    def runs(data: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
        return {(f["section"], f["name"]): f for f in data["figures"]}

    def about(data: dict[str, Any]) -> str:
        suite = data.get("suite", {})
        return f"{suite.get('device', '?')}, commit {(suite.get('commit') or '?')[:10]}"

    new_figures, old_figures = runs(new), runs(old)
    table = Table(title=f"new ({about(new)}) ÷ old ({about(old)})")
    for column in ("section", "figure", "new", "old", "new ÷ old"):
        table.add_column(column, justify="left" if column in ("section", "figure") else "right")
    for key in [*new_figures, *(k for k in old_figures if k not in new_figures)]:
        a, b = new_figures.get(key), old_figures.get(key)
        unit = (a or b)["unit"]
        change = f"{a['median'] / b['median']:.2f}" if a and b and b["median"] else "–"
        table.add_row(*key, value(a and a["median"], unit), value(b and b["median"], unit),
                      change)
    return table
