"""The benchmark suite: one quick CPU run of every section within its budget (the record's
schema and every section's status, never its speed), comparing runs, and the original
code's step it measures against."""

from __future__ import annotations

import contextlib
import io
import json
import math
import re
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console

from experiments import benchmark
from experiments.bench import SECTIONS, suite
from experiments.bench.measure import Context, Figure
from experiments.bench.paper_code import paper_code_step
from experiments.bench.report import TARGETS
from experiments.bench.startup import import_seconds
from sgt.models import MNISTNet

PLAIN = ("steps", "mnist fp32 plain: step")  # a figure every quick run measures first
GONE = ("steps", "a figure this version no longer measures")
SUITE_KEYS = {"command": str, "device": str, "device_type": str, "torch": str,
              "commit": (str, type(None)), "dirty": (bool, type(None)), "python": str,
              "threads": int, "budget_s": float, "quick": bool, "started": str,
              "seconds": float}
FIGURE_KEYS = {"section": str, "name": str, "median": float, "iqr": float, "n": int,
               "unit": str, "note": str}


def old_record(*figures: tuple[tuple[str, str], float]) -> dict:
    return {"suite": {"device": "old machine", "commit": "0123abc"},
            "figures": [{"section": section, "name": name, "median": median, "iqr": 0.0,
                         "n": 1, "unit": "s", "note": ""} for (section, name), median in figures]}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path, str]:
    """One ``suite --quick --budget 60`` on the CPU, compared with a made-up earlier run:
    its record, its folder and what it printed."""
    folder = tmp_path_factory.mktemp("bench")
    old = folder / "old.json"
    old.write_text(json.dumps(old_record((PLAIN, 1.0), (GONE, 2.0))))
    printed, threads = io.StringIO(), torch.get_num_threads()
    start = time.monotonic()
    try:
        with contextlib.redirect_stdout(printed):
            record = benchmark.main(["suite", "--device", "cpu", "--quick", "--budget", "60",
                                     "--threads", "1", "--out", str(folder / "out"),
                                     "--compare", str(old)])
    finally:
        torch.set_num_threads(threads)
    record["wall"] = time.monotonic() - start
    return record, folder / "out", printed.getvalue()


def test_the_record_has_every_key_with_its_type_and_is_what_was_written(quick_run) -> None:
    record, out, _ = quick_run
    saved = json.loads((out / "benchmark.json").read_text())
    assert set(saved) == {"suite", "sections", "figures", "targets"}
    assert set(saved["suite"]) == set(SUITE_KEYS)
    for key, kind in SUITE_KEYS.items():
        assert isinstance(saved["suite"][key], kind), key
    assert saved["suite"]["device_type"] == "cpu" and saved["suite"]["quick"] is True
    assert saved["suite"]["torch"] == torch.__version__ and saved["suite"]["threads"] == 1
    for fig in saved["figures"]:
        assert set(fig) == set(FIGURE_KEYS)
        for key, kind in FIGURE_KEYS.items():
            assert isinstance(fig[key], kind), (fig, key)
        assert fig["unit"] in ("s", "x") and fig["section"] in SECTIONS
    assert saved["figures"] == record["figures"]


def test_every_section_ran_or_says_why_not_and_the_budget_held(quick_run) -> None:
    record, _, _ = quick_run
    assert [s["name"] for s in record["sections"]] == list(SECTIONS)
    for section in record["sections"]:
        assert section["status"] in suite.STATUSES and section["seconds"] >= 0
        figures = [f for f in record["figures"] if f["section"] == section["name"]]
        if section["status"] == "ran":
            assert figures and section["reason"] == "", section
        else:
            assert section["reason"], section
        for fig in figures:
            assert math.isfinite(fig["median"]) and fig["median"] > 0, fig
            assert math.isfinite(fig["iqr"]) and fig["iqr"] >= 0 and fig["n"] >= 1, fig
    assert record["sections"][0]["status"] == "ran"  # the steps come first and are cheap
    assert record["suite"]["seconds"] < record["wall"] < 60 + 15  # the budget, then writing


def test_targets_are_open_on_a_cpu_and_name_figures_the_suite_makes(quick_run) -> None:
    record, _, _ = quick_run
    made = {(f["section"], f["name"]) for f in record["figures"]}
    ran = {s["name"] for s in record["sections"] if s["status"] == "ran"}
    assert len(record["targets"]) == len(TARGETS)
    for target in record["targets"]:
        assert target["verdict"] == "not measured"  # a CPU run is not held to a GPU target
        if target["section"] in ran and target["section"] != "epochs":
            assert (target["section"], target["figure"]) in made, target
    assert ("epochs", "mnist sgt: epoch") in made or "epochs" not in ran


def test_the_markdown_names_every_section_and_the_targets(quick_run) -> None:
    record, out, _ = quick_run
    text = (out / "benchmark.md").read_text()
    for section in record["sections"]:
        assert f"## {section['name']}: {section['status'].replace('_', ' ')}" in text
    assert "## Targets" in text and "MNIST SGT loop ÷ step | ≤ 1.15×" in text
    assert record["suite"]["command"] in text


def test_compare_prints_each_figures_ratio_to_the_earlier_run(quick_run) -> None:
    record, _, printed = quick_run
    new = {(f["section"], f["name"]): f["median"] for f in record["figures"]}
    compared = printed[printed.index("new (CPU"):]
    row = next(line for line in compared.splitlines() if PLAIN[1] in line)
    assert row.rstrip(" │").endswith(f"{new[PLAIN] / 1.0:.2f}")
    gone = next(line for line in compared.splitlines() if GONE[1] in line)
    assert "2 s" in gone and gone.rstrip(" │").endswith("–")  # only in the old run


def test_compare_of_a_doctored_copy_gives_the_ratio(quick_run, tmp_path, capsys) -> None:
    _, out, _ = quick_run
    doctored = json.loads((out / "benchmark.json").read_text())
    halved = doctored["figures"][0]
    halved["median"] /= 2
    (tmp_path / "old.json").write_text(json.dumps(doctored))
    assert benchmark.main(["compare", str(out / "benchmark.json"),
                           str(tmp_path / "old.json")]) is None
    lines = capsys.readouterr().out.splitlines()
    row = next(line for line in lines if halved["name"] in line)
    assert row.rstrip(" │").endswith("2.00")
    assert all(line.rstrip(" │").endswith("1.00") for line in lines
               if any(f["name"] in line for f in doctored["figures"][1:])
               and f" {halved['name']} " not in line)


def test_past_the_deadline_no_section_starts(tmp_path) -> None:
    ctx = Context(torch.device("cpu"), True, time.monotonic() - 1, work=tmp_path)
    figures, results = suite.run_suite(ctx, SECTIONS, Console(quiet=True))
    assert figures == []
    assert {(r.status, r.reason) for r in results} == {
        ("out_of_budget", "the budget was spent before it started")}


def test_a_section_running_at_the_deadline_is_stopped_there_keeping_its_figures(
        tmp_path, monkeypatch) -> None:
    def slow(ctx):
        yield Figure("steps", "one", 1.0, 0.0, 1)
        time.sleep(30)
        yield Figure("steps", "two", 1.0, 0.0, 1)

    monkeypatch.setattr(suite, "load_section", lambda name: slow)
    ctx = Context(torch.device("cpu"), True, time.monotonic() + 0.5, work=tmp_path)
    figures, results = suite.run_suite(ctx, ["steps"], Console(quiet=True))
    assert [f.name for f in figures] == ["one"]
    assert (results[0].status, results[0].reason) == (
        "out_of_budget", "the budget ran out during it, after 1 figures")
    assert results[0].seconds < 5


def test_a_failing_section_keeps_its_figures_and_says_why(tmp_path, monkeypatch) -> None:
    def broken(ctx):
        yield Figure("steps", "one", 1.0, 0.0, 1)
        raise RuntimeError("no such kernel\nand more")

    monkeypatch.setattr(suite, "load_section", lambda name: broken)
    ctx = Context(torch.device("cpu"), True, time.monotonic() + 60, work=tmp_path)
    figures, results = suite.run_suite(ctx, ["steps"], Console(quiet=True))
    assert [f.name for f in figures] == ["one"]
    assert results[0].status == "failed" and results[0].reason == "RuntimeError: no such kernel"


@pytest.mark.parametrize("argv", [["warp"], ["suite", "--budget", "0"],
                                  ["suite", "--budget", "nan"], ["suite", "--threads", "0"],
                                  ["compare", "new.json"], ["steps", "stray.json"],
                                  ["suite", "--device", "tpu"]])
def test_bad_flags_are_refused_before_any_work(argv, capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        benchmark.parse_args(argv)
    assert exited.value.code == 2
    assert argv[-1] in capsys.readouterr().err


def test_an_earlier_run_is_never_overwritten(quick_run, capsys) -> None:
    _, out, _ = quick_run
    with pytest.raises(SystemExit):
        benchmark.parse_args(["suite", "--out", str(out)])
    assert f"--out {out} holds an earlier benchmark.json" in capsys.readouterr().err


def test_compare_refuses_a_file_that_is_not_a_benchmark_record(tmp_path) -> None:
    bad = tmp_path / "metrics.json"
    bad.write_text(json.dumps({"val/acc": 0.9}))
    with pytest.raises(SystemExit, match=re.escape(f"{bad} is not a benchmark.json")):
        benchmark.main(["compare", str(bad), str(bad)])


def test_import_seconds_sums_the_top_level_imports() -> None:
    log = ("import time: self [us] | cumulative | imported package\n"
           "import time:       100 |        200 |   torch._C\n"
           "import time:      1000 |    1500000 | torch\n"
           "import time:        50 |     250000 | hydra\n")
    assert import_seconds(log) == pytest.approx(1.75)


def test_paper_code_step_masks_the_same_count_with_the_originals_rng(monkeypatch) -> None:
    """The baseline really is the original's algorithm: numpy fills, k·H·W pixels, a step."""
    draws = []
    real_uniform = np.random.uniform

    def spy(lo, hi, size):
        draws.append(size)
        return real_uniform(lo, hi, size)

    monkeypatch.setattr(np.random, "uniform", spy)
    torch.manual_seed(0)
    net = MNISTNet()
    before = [p.detach().clone() for p in net.parameters()]
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    step = paper_code_step(net, optimizer, torch.device("cpu"), "32-true")
    step(torch.randn(3, 1, 28, 28), torch.tensor([1, 2, 3]))
    assert draws == [392] * 3  # one draw per sample and channel: 50 % of 28 × 28
    assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))
