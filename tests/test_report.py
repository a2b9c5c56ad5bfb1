"""The collector and the sweep and compare views, on small run dirs written here in the real
layout."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from experiments.report import main as report_main
from experiments.runs.collect import collect, rows
from experiments.runs.files import latest_result
from experiments.runs.views import Options
from experiments.runs.views.compare import compare
from experiments.runs.views.sweep import show as sweep_view

LEVELS = [0.0, 0.5]


def _job(root: Path, name: str, k: float, lam: float, overrides: list[str],
         test_acc: float | None, auc: dict[str, float] | None, label: str = "") -> Path:
    """A run dir as experiments.train / evaluate leave it."""
    job = root / name
    (job / ".hydra").mkdir(parents=True)
    OmegaConf.save(OmegaConf.create({"sgt": {"k": k, "lam": lam}, "seed": 1}),
                   job / ".hydra" / "config.yaml")
    OmegaConf.save(OmegaConf.create(overrides), job / ".hydra" / "overrides.yaml")
    if test_acc is not None:
        (job / "metrics.json").write_text(json.dumps({"test/acc": test_acc,
                                                      "val/acc_best": test_acc - 0.01}))
    if auc is not None:
        _evaluation(job, "accuracy_drop", auc, label or name)
    return job


def _evaluation(job: Path, stem: str, auc: dict[str, float], label: str) -> None:
    (job / "eval").mkdir(exist_ok=True)
    examples = job / "eval" / f"{stem}_examples.pt"
    torch.save({"inputs": torch.randn(2, 1, 28, 28), "labels": torch.tensor([1, 2]),
                "maps": {"grad": torch.rand(2, 784)}, "gradients": torch.randn(2, 784)},
               examples)
    accuracy = {m: [1.0, 2 * a - 1.0] for m, a in auc.items()}  # trapezoid area = a
    (job / "eval" / f"{stem}.json").write_text(json.dumps({
        "levels": LEVELS, "accuracy": accuracy, "auc": auc, "num_samples": 2, "label": label,
        "files": {"examples_pt": str(examples)}}))


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    root = tmp_path / "multirun"
    _job(root, "0", 0.0, 1.0, ["sgt.k=0.0", "trainer.max_epochs=2"], 0.98,
         {"grad": 0.45, "random": 0.47})
    _job(root, "1", 0.5, 1.0, ["sgt.k=0.5", "trainer.max_epochs=2"], 0.97, None)
    _job(root, "10", 0.5, 2.0, ["sgt.k=0.5", "sgt.lam=2", "trainer.max_epochs=2"], None, None)
    (root / "multirun.yaml").write_text("{}")  # Hydra's own files are not jobs
    return root


def test_report_collects_one_row_per_job(sweep: Path) -> None:
    assert rows(collect([sweep]), "accuracy_drop") == [
        {"job": "0", "overrides": "sgt.k=0.0", "k": 0.0, "lam": 1.0, "test/acc": 0.98,
         "val/acc_best": pytest.approx(0.97), "relative_auc/grad": pytest.approx(0.02),
         "relative_auc/random": 0.0, "auc/grad": 0.45, "auc/random": 0.47},
        {"job": "1", "overrides": "sgt.k=0.5", "k": 0.5, "lam": 1.0, "test/acc": 0.97,
         "val/acc_best": pytest.approx(0.96)},
        {"job": "10", "overrides": "sgt.k=0.5 sgt.lam=2", "k": 0.5, "lam": 2.0,
         "test/acc": None, "val/acc_best": None},
    ]


def test_every_evaluation_of_a_run_is_collected(sweep: Path) -> None:
    _evaluation(sweep / "0", "accuracy_drop_mean", {"grad": 0.5}, "0")
    (record,) = [r for r in collect([sweep]) if r.name == "0"]
    assert record.evaluation_names == ["accuracy_drop", "accuracy_drop_mean"]
    row = record.row()
    assert (row["accuracy_drop/auc/grad"], row["accuracy_drop_mean/auc/grad"]) == (0.45, 0.5)
    # any folder above runs: a run named by its path below it
    assert [r.name for r in collect([sweep.parent])] == ["multirun/0", "multirun/1",
                                                        "multirun/10"]
    assert [r.name for r in collect([sweep / "1", sweep])] == ["1", "0", "10"]


def test_report_files_are_written_and_never_overwritten(sweep: Path) -> None:
    first = sweep_view(collect([sweep]), Options(sweep))
    second = sweep_view(collect([sweep]), Options(sweep))
    assert first["csv"].name == "report.csv" and second["csv"].name == "report_2.csv"
    with first["csv"].open() as f:
        table = list(csv.DictReader(f))
    assert [r["job"] for r in table] == ["0", "1", "10"]
    assert table[0]["auc/grad"] == "0.45" and table[1]["auc/grad"] == ""
    assert all(p.stat().st_size > 0 for p in first.values())


def test_report_cli_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_:
        report_main([str(tmp_path)])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip().count("\n") == 0


def test_newest_evaluation_is_read(sweep: Path) -> None:
    _evaluation(sweep / "0", "accuracy_drop_2", {"grad": 0.40}, "0")
    assert latest_result(sweep / "0").name == "accuracy_drop_2.json"
    assert rows(collect([sweep]), "accuracy_drop")[0]["auc/grad"] == 0.40


def test_compare_regular_vs_sgt(tmp_path: Path) -> None:
    regular = _job(tmp_path, "regular", 0.0, 1.0, [], 0.99, {"grad": 0.45, "random": 0.47},
                   "regular")
    sgt = _job(tmp_path, "sgt", 0.5, 1.0, [], 0.99, {"grad": 0.30, "random": 0.46},
               "SGT k=0.5 λ=1")
    done = compare([regular, sgt], tmp_path / "cmp")
    assert done["summary"] == {
        "auc/grad": {"regular": 0.45, "SGT k=0.5 λ=1": 0.30},
        "auc/random": {"regular": 0.47, "SGT k=0.5 λ=1": 0.46},
        # the area between the random curve and grad's: SGT's removal bites harder
        "relative_auc/grad": {"regular": pytest.approx(0.02), "SGT k=0.5 λ=1": pytest.approx(0.16)},
        "relative_auc/random": {"regular": 0.0, "SGT k=0.5 λ=1": 0.0}}
    assert set(done["files"]) == {"csv", "curves", "saliency", "gradients"}
    assert all(p.stat().st_size > 0 for p in done["files"].values())
    again = compare([regular, sgt], tmp_path / "cmp", labels=["a", "b"])
    assert again["files"]["csv"].name == "compare_2.csv"
    report_main([str(regular), str(sgt), "--view", "mnist", "--html", "--out",
                 str(tmp_path / "cmp")])
    page = (tmp_path / "cmp" / "compare_3.html").read_text()
    assert page.count("<img") == 3 and "regular vs SGT k=0.5 λ=1" in page  # regular first


def test_compare_without_evaluation_says_what_to_run(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = _job(tmp_path, "run", 0.0, 1.0, [], 0.99, None)
    other = _job(tmp_path, "other", 0.5, 1.0, [], 0.99, {"grad": 0.3}, "SGT")
    with pytest.raises(SystemExit) as exit_:
        report_main([str(run), str(other), "--view", "compare", "--out", str(tmp_path / "cmp")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "python -m experiments.evaluate ckpt_path=" in err
