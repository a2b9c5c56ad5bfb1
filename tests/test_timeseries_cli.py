"""The time-series experiment through its command lines: train + evaluate, every architecture
with SGT, bad dataset names, and the poster Table 2 script on a tiny grid."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from experiments.runs.build import load_module
from experiments.runs.files import resolve_run
from experiments.timeseries_table import load_poster
from experiments.timeseries_table import main as table_main
from experiments.train import train
from sgt.data.timeseries_synth import LAYOUTS, PROCESSES
from sgt.evaluation import TimeSeriesResult, difference_from_random
from sgt.saliency import Explainer, ModalityForward
from tests.conftest import ROOT

ARCHS = ("lstm", "lstm_cell_attention", "tcn", "transformer")
# A few samples of the 50 × 50 Middle_Gaussian dataset, one CPU epoch, two jobs at once,
# three of the evaluation's methods.
METHODS = ["grad", "integrated_gradients", "random"]
TINY = ["trainer.accelerator=cpu", "eval.device=cpu", "trainer.max_epochs=1",
        "dataset.num_train=60", "dataset.val_size=10", "dataset.num_test=20",
        "dataset.batch_size=25", f"eval.methods=[{','.join(METHODS)}]", "eval.num_examples=0"]
TINY_GRID = ["--archs", "tcn", "--layouts", "Middle", "--processes", "Gaussian", "--jobs", "2"]
BOX_FRACTION = 30 * 30 / (50 * 50)  # the Middle layout's box: 30 × 30 of 50 × 50 cells


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Tiny models: a second thread only spins (it doubled this file's CPU time)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _env(cache: Path) -> dict[str, str]:
    return {**os.environ, "SGT_CACHE_DIR": str(cache), "HYDRA_FULL_ERROR": "0",
            "OMP_NUM_THREADS": "1"}


def run_cli(script: str, *args: str, cache: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", f"experiments.{script}", *args], cwd=ROOT,
                          env=_env(cache), capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The Table 2 script's folder after a tiny grid: TCN on Middle_Gaussian, regular and
    SGT, each job a ``python -m experiments.train ... eval=timeseries`` subprocess."""
    root = tmp_path_factory.mktemp("timeseries_table")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SGT_CACHE_DIR", str(root / "cache"))
        patch.setenv("HYDRA_FULL_ERROR", "0")
        patch.setenv("OMP_NUM_THREADS", "1")  # each job's torch threads
        table_main([*TINY_GRID, "--min-accuracy", "0", "--out-root", str(root / "out"),
                    *TINY])
    (out_dir,) = (root / "out").iterdir()
    yield out_dir


def _result(path: Path) -> TimeSeriesResult:
    return TimeSeriesResult.from_dict(json.loads(path.read_text()))


# -- (a) train, then evaluate, through the CLI -------------------------------------------


def test_train_cli_with_eval_writes_a_sane_timeseries_evaluation(grid: Path) -> None:
    jobs = {j["regime"]: j for j in json.loads((grid / "jobs.json").read_text())["jobs"]}
    assert {r: j["returncode"] for r, j in jobs.items()} == {"regular": 0, "sgt": 0}
    run = grid / "runs" / "tcn" / "Middle" / "Gaussian" / "sgt"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs"] == 1 and 0 <= metrics["test/acc"] <= 1
    assert metrics["test/acc"] == jobs["sgt"]["test_acc"]
    for name in ("timeseries.json", "timeseries.csv", "timeseries.yaml",
                 "timeseries_precision_recall.png", "timeseries_masked_accuracy.png"):
        assert (run / "eval" / name).stat().st_size > 0, name
    result = _result(run / "eval" / "timeseries.json")
    assert result.num_samples == 20 and result.methods == [*METHODS, "random_iid"]
    for method in result.methods:  # level 0 masks nothing: the model's own test accuracy
        assert result.masked_accuracy[method][0] == pytest.approx(metrics["test/acc"])
    # random is the benchmark's: grad's or IG's map, features permuted (which, it says)
    assert result.random_baseline == "permuted"
    assert result.random_source in ("grad", "integrated_gradients")
    assert sorted(result.random_permutation) == list(range(50))
    # An i.i.d. uniform map ignores the box: weighted precision ≈ the box's share of the
    # cells at every level, recall ≈ the saliency mass p selected (AUR ≈ ∫ p dp over .1–.9).
    random = result.areas("random_iid")
    assert random["aup"] == pytest.approx(0.8 * BOX_FRACTION, abs=0.02)
    assert random["aur"] == pytest.approx((0.9**2 - 0.1**2) / 2, abs=0.02)


def test_evaluate_cli_on_the_run_adds_a_second_result(grid: Path, tmp_path: Path) -> None:
    run = grid / "runs" / "tcn" / "Middle" / "Gaussian" / "sgt"
    done = run_cli("evaluate", f"ckpt_path={run}", "eval=timeseries",
                   "eval.methods=[grad,random]", "eval.num_examples=0", "eval.device=cpu",
                   "eval.metric.progress=false", f"hydra.run.dir={tmp_path / 'job'}",
                   cache=grid.parent / "cache")
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"results: {run / 'eval' / 'timeseries_2.json'}" in done.stdout
    first, second = (_result(run / "eval" / f) for f in ("timeseries.json",
                                                         "timeseries_2.json"))
    assert second.methods == ["grad", "random", "random_iid"]
    assert second.random_source == "grad"  # the only method to permute
    for curve in ("precision", "recall", "time_precision", "feature_recall"):
        assert second.curves[curve]["grad"] == pytest.approx(first.curves[curve]["grad"])


# -- (b) every architecture trains SGT steps ---------------------------------------------


@pytest.mark.parametrize("arch", ARCHS)
def test_each_architecture_trains_sgt_steps_with_input_shaped_saliency(
        train_cfg, cache_dir: Path, arch: str) -> None:
    cfg = train_cfg("experiment=timeseries", f"model={arch}", "dataset.num_train=48",
                    "dataset.val_size=16", "dataset.num_test=16", "dataset.batch_size=16",
                    "dataset.eval_batch_size=16", "trainer.limit_train_batches=2",
                    f"paths.cache_dir={cache_dir}")
    metrics = train(cfg)
    # two SGT steps: the masked branch ran (only then is train/acc_masked logged), no NaN
    assert metrics["epochs"] == 1 and "train/acc_masked" in metrics
    assert metrics["skipped_batches"] == 0 and metrics["train/kl"] > 0
    datamodule, module = load_module(cfg, resolve_run(cfg.paths.output_dir)[0],
                                     torch.device("cpu"))
    datamodule.setup("test")
    x, y, *_ = next(iter(datamodule.test_dataloader()))
    explainer = Explainer(ModalityForward(module.net, module.modality, "logit"), ["grad"], 0)
    _, attribution = explainer.attribute("grad", x, y)
    _, scores = explainer("grad", x, y)
    assert x.shape == (16, 50, 50) and attribution.shape == x.shape
    assert scores.shape == (16, 50 * 50) and bool(scores.isfinite().all())
    assert bool((scores > 0).any())


# -- (c) bad dataset names ---------------------------------------------------------------


def test_train_cli_bad_layout_is_one_line_naming_the_layouts(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    done = run_cli("train", "experiment=timeseries", "dataset.layout=Centre",
                   f"hydra.run.dir={run_dir}", cache=tmp_path / "cache")
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: dataset.layout must be one of {list(LAYOUTS)}, got 'Centre'"]
    assert not run_dir.exists()


@pytest.mark.parametrize(("args", "message"), [
    (["--processes", "Gaussian,Sine"], "--processes: unknown ['Sine']; allowed "
     f"(comma-separated): {', '.join(PROCESSES.names())}"),
    (["--layouts", "Moving"], "--layouts: unknown ['Moving']; allowed (comma-separated): "
     f"{', '.join(LAYOUTS)}"),
    (["--archs", "tcn,rnn"], "--archs: unknown ['rnn']; allowed (comma-separated): "
     f"{', '.join(ARCHS)}"),
    (["dataset.process=Sine"], "dataset.process=Sine: the grid sets dataset.process in every "
     "job; use --processes"),
    (["dataset.time_steps=5"], "dataset.time_steps must be an integer >= 10"),
    (["sgt.k=0"], "the SGT jobs would train with sgt.k=0"),
])
def test_table_script_refuses_bad_settings_before_any_folder(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str],
        message: str) -> None:
    with pytest.raises(SystemExit) as exit_:
        table_main(["--out-root", str(tmp_path / "out"), *args])
    assert exit_.value.code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"error: {message}")
    assert not (tmp_path / "out").exists()


# -- (d) the Table 2 script --------------------------------------------------------------


def test_table_puts_ours_beside_the_posters(grid: Path) -> None:
    poster = load_poster()
    rows = {r["method"]: r for r in json.loads((grid / "table2.json").read_text())["rows"]}
    assert list(rows) == list(poster["methods"])  # TCN's six rows, in the poster's order
    runs = grid / "runs" / "tcn" / "Middle" / "Gaussian"
    for regime in ("regular", "sgt"):
        ours = difference_from_random(_result(runs / regime / "eval" / "timeseries.json"))
        assert set(ours) == {"grad", "integrated_gradients"}  # the methods evaluated
        for method, row in rows.items():
            for metric in ("aup", "aur"):
                if method in ours:
                    assert row[f"{regime}_{metric}"] == pytest.approx(ours[method][metric])
                else:
                    assert row[f"{regime}_{metric}"] is None
                assert row[f"poster_{regime}_{metric}"] == poster[f"diff_{metric}"]["tcn"][
                    method][regime == "sgt"]
            assert row[f"{regime}_models"] == "1/1"
    table = (grid / "table2.md").read_text()
    ig = rows["integrated_gradients"]
    assert (f"| TCN | IG | {ig['regular_aup']:.3f} / {ig['sgt_aup']:.3f} | 0.233 / 0.291 | "
            f"{ig['regular_aur']:.3f} / {ig['sgt_aur']:.3f} | 0.191 / 0.210 | 1/1, 1/1 |"
            ) in table
    jobs = (grid / "jobs.csv").read_text().splitlines()
    assert len(jobs) == 3 and jobs[0].startswith("arch,layout,process,regime,test_acc")


def test_collect_applies_the_threshold_without_overwriting(grid: Path) -> None:
    before = {p.name: p.read_bytes() for p in grid.glob("table2.*")}
    rows = table_main(["--collect", str(grid), "--min-accuracy", "1"])
    accuracies = [json.loads((run / "metrics.json").read_text())["test/acc"]
                  for run in sorted((grid / "runs" / "tcn" / "Middle" / "Gaussian").iterdir())]
    perfect = dict(zip(("regular", "sgt"), (int(a == 1.0) for a in accuracies), strict=True))
    for row in rows:
        for regime, n in perfect.items():
            assert row[f"{regime}_models"] == f"{n}/1"
            assert (row[f"{regime}_aup"] is None) == (n == 0)
    assert {p.name: p.read_bytes() for p in grid.glob("table2.*")} == before
    assert (grid / "table2_2.md").is_file() and (grid / "jobs_2.csv").is_file()


def test_poster_file_matches_the_digest() -> None:
    """docs/poster_table2.json holds the numbers of docs/paper.md §4.2, cell by cell."""
    poster = load_poster()
    section = (ROOT / "docs" / "paper.md").read_text().split("### 4.2")[1].split("### 4.3")[0]
    archs = {name: key for key, name in poster["archs"].items()}
    methods = list(poster["methods"])
    tables = section.split("Diff(AUR):")
    for metric, text in zip(("diff_aup", "diff_aur"), tables, strict=True):
        rows = [line for line in text.splitlines() if line.startswith("| ")
                and line.split("|")[1].strip() in archs]
        assert len(rows) == 4
        for line in rows:
            arch, *cells = (c.strip() for c in line.strip("|").split("|"))
            for method, cell in zip(methods, cells, strict=True):
                pair = [float(v.replace("−", "-").strip("* "))
                        for v in re.split(r"\s*/\s*", cell)]
                assert poster[metric][archs[arch]][method] == pair, (arch, method)
