"""Accuracy against faithfulness: the Pareto front by hand, and the sweep report of a real
3-job MNIST sweep evaluated with ``eval=accuracy_drop``."""

from __future__ import annotations

import contextlib
import csv
import io
import subprocess
import sys
from pathlib import Path

import pytest

from experiments.report import main as report_main
from experiments.runs.collect import collect
from experiments.runs.tradeoff import pareto_front, tradeoff
from tests.conftest import ROOT, needs_mnist
from tests.test_sweeps import SWEEP, env

QUICK_EVAL = ["eval=accuracy_drop", "eval.methods=[grad,random]", "eval.batch_size=64",
              "eval.metric.limit_batches=1", "eval.num_examples=2", "eval.metric.progress=false"]


def test_pareto_front_of_hand_made_points() -> None:
    points = [(0.90, 0.10),   # on: nothing is as accurate and more faithful
              (0.95, 0.05),   # on: the most accurate
              (0.85, 0.20),   # on: the most faithful
              (0.80, 0.05),   # off: (0.95, 0.05) beats it in accuracy, ties in faithfulness
              (0.90, 0.10),   # on: a tie with the first is not beaten
              (0.88, 0.09)]   # off: (0.90, 0.10) beats it in both
    assert pareto_front(points) == [True, True, True, False, True, False]
    assert pareto_front([(0.5, 0.5)]) == [True]
    assert pareto_front([]) == []


@pytest.fixture(scope="module")
def evaluated_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``python -m experiments.train -m sgt.k=0,0.3,0.5 eval=accuracy_drop …``."""
    folder = tmp_path_factory.mktemp("tradeoff") / "sweep"
    done = subprocess.run(
        [sys.executable, "-m", "experiments.train", "-m", *SWEEP, *QUICK_EVAL,
         "sgt.k=0,0.3,0.5", f"hydra.sweep.dir={folder}"],
        cwd=ROOT, env=env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return folder


@needs_mnist
def test_sweep_report_shows_the_tradeoff_front_and_relative_areas(evaluated_sweep: Path
                                                                  ) -> None:
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        report_main([str(evaluated_sweep), "--html"])
    console = printed.getvalue()
    with (evaluated_sweep / "report.csv").open() as f:
        table = list(csv.DictReader(f))
    assert [float(row["k"]) for row in table] == [0.0, 0.3, 0.5]
    for row in table:
        # the area between random's curve and a method's, of the same model
        assert float(row["relative_auc/random"]) == 0.0
        assert float(row["relative_auc/grad"]) == pytest.approx(
            float(row["auc/random"]) - float(row["auc/grad"]), abs=1e-12)
    # the front column is the front of (test accuracy, grad's relative area)
    expected = pareto_front([(float(r["test/acc"]), float(r["relative_auc/grad"]))
                             for r in table])
    assert [row["front"] == "grad" for row in table] == expected and any(expected)
    assert "front" in console and "relative_auc/grad" in console
    # the same points the trade-off view draws
    points = tradeoff(collect([evaluated_sweep]), "accuracy_drop")
    assert set(points) == {"grad"}  # random is the reference, not a point
    assert [p.on_front for p in points["grad"]] == expected
    page = (evaluated_sweep / "report.html").read_text(encoding="utf-8")
    assert '<section id="tradeoff">' in page and "the Pareto front joined" in page
    assert (evaluated_sweep / "report_tradeoff.png").stat().st_size > 10_000
    assert page.count('<span class="badge front">front</span>') == sum(expected)
