"""The time-series experiment through its command lines: a tiny subset of the Table 2 grid
as a Hydra sweep (local parallel launcher), evaluate, every architecture with SGT, bad
dataset names, and the Table 2 view of ``experiments.report``."""

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

from experiments import report
from experiments.runs.build import load_module
from experiments.runs.collect import Record, collect
from experiments.runs.files import resolve_run
from experiments.runs.views.common import poster as load_poster
from experiments.train import train
from sgt.data.timeseries_synth import LAYOUTS
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
# 2 × 2 × 2 of grid=timeseries_table2: TCN and LSTM, two processes, regular and SGT
TINY_GRID = ["grid=timeseries_table2", "model=tcn,lstm", "dataset.layout=Middle",
             "dataset.process=Gaussian,NARMA", "hydra/launcher=local_parallel",
             "hydra.launcher.n_jobs=2"]
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
                          env=_env(cache), capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The sweep folder of ``python -m experiments.train -m grid=timeseries_table2 …``
    narrowed to 8 tiny jobs, two at a time (each trains, tests, then ``eval=timeseries``)."""
    root = tmp_path_factory.mktemp("timeseries_grid")
    done = run_cli("train", "-m", *TINY_GRID, *TINY, f"hydra.sweep.dir={root / 'sweep'}",
                   cache=root / "cache")
    assert done.returncode == 0, done.stderr[-3000:]
    yield root / "sweep"


def job(grid: Path, model: str, process: str, k: float) -> Record:
    (found,) = [r for r in collect([grid]) if r.choices["model"] == model
                and r.setting("dataset.process") == process and r.k == k]
    return found


def _result(path: Path) -> TimeSeriesResult:
    return TimeSeriesResult.from_dict(json.loads(path.read_text()))


# -- (a) train, then evaluate, through the CLI -------------------------------------------


def test_train_cli_with_eval_writes_a_sane_timeseries_evaluation(grid: Path) -> None:
    records = collect([grid])
    assert len(records) == 8 and sorted(r.name for r in records) == [str(i) for i in range(8)]
    assert {(r.choices["model"], r.setting("dataset.process"), r.k) for r in records} == {
        (m, p, k) for m in ("tcn", "lstm") for p in ("Gaussian", "NARMA") for k in (0, 0.5)}
    run = job(grid, "tcn", "Gaussian", 0.5).folder
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs"] == 1 and 0 <= metrics["test/acc"] <= 1
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
    run = job(grid, "tcn", "Gaussian", 0.5).folder
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
    (["dataset.process=Gaussian,Sine"], "dataset.process must be one of"),
    pytest.param(["model=tcn,rnn"], "Could not find 'model/rnn'",
                 marks=pytest.mark.slow),  # Hydra's own check; ~16 s
    pytest.param(["dataset.time_steps=5"], "dataset.time_steps must be an integer >= 10",
                 marks=pytest.mark.slow),  # the same refusal path as the first case; ~13 s
])
def test_a_bad_job_of_the_grid_is_refused_before_any_folder(
        tmp_path: Path, args: list[str], message: str) -> None:
    """Every job of the grid, its params included, is checked before the first starts."""
    done = run_cli("train", "-m", "grid=timeseries_table2", *args,
                   f"hydra.sweep.dir={tmp_path / 'sweep'}", cache=tmp_path / "cache")
    assert done.returncode in (1, 2)  # Hydra's own composition errors exit 1
    assert message in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "sweep").exists()


def test_the_grid_has_the_posters_112_jobs() -> None:
    from hydra import compose, initialize_config_dir

    from experiments.runs.multirun import sweep_overrides
    from tests.conftest import CONFIGS

    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIGS)):
        cfg = compose("train.yaml", ["grid=timeseries_table2"], return_hydra_config=True)
        jobs = sweep_overrides(cfg)
    assert len(jobs) == 4 * 2 * 7 * 2
    assert {o.split("=")[0] for o in jobs[0]} == {"grid", "model", "dataset.layout",
                                                 "dataset.process", "sgt.k"}


# -- (d) the Table 2 view ------------------------------------------------------------------


def test_table2_view_puts_ours_beside_the_posters(grid: Path, tmp_path: Path) -> None:
    poster = load_poster("table2")
    report.main([str(grid), "--view", "table2", "--min-accuracy", "0", "--out",
                 str(tmp_path)])
    rows = json.loads((tmp_path / "table2.json").read_text())["rows"]
    assert [r["arch"] for r in rows] == ["lstm"] * 6 + ["tcn"] * 6  # the poster's order
    tcn = {r["method"]: r for r in rows if r["arch"] == "tcn"}
    assert list(tcn) == list(poster["methods"])
    for regime, k in (("regular", 0.0), ("sgt", 0.5)):
        results = [job(grid, "tcn", p, k).evaluation("timeseries") for p in ("Gaussian",
                                                                              "NARMA")]
        ours = difference_from_random(results)
        assert set(ours) == {"grad", "integrated_gradients"}  # the methods evaluated
        for method, row in tcn.items():
            for metric in ("aup", "aur"):
                if method in ours:
                    assert row[f"{regime}_{metric}"] == pytest.approx(ours[method][metric])
                else:
                    assert row[f"{regime}_{metric}"] is None
                assert row[f"poster_{regime}_{metric}"] == poster[f"diff_{metric}"]["tcn"][
                    method][regime == "sgt"]
            assert row[f"{regime}_models"] == "2/2"
    table = (tmp_path / "table2.md").read_text()
    ig = tcn["integrated_gradients"]
    assert (f"| TCN | IG | {ig['regular_aup']:.3f} / {ig['sgt_aup']:.3f} | 0.233 / 0.291 | "
            f"{ig['regular_aur']:.3f} / {ig['sgt_aur']:.3f} | 0.191 / 0.210 | 2/2, 2/2 |"
            ) in table


def test_table2_view_applies_the_threshold_without_overwriting(grid: Path,
                                                              tmp_path: Path) -> None:
    report.main([str(grid), "--view", "table2", "--min-accuracy", "0", "--out",
                 str(tmp_path)])
    before = {p.name: p.read_bytes() for p in tmp_path.glob("table2.*")}
    report.main([str(grid), "--view", "table2", "--min-accuracy", "1", "--out",
                 str(tmp_path), "--html"])
    rows = json.loads((tmp_path / "table2_2.json").read_text())["rows"]
    for model in ("tcn", "lstm"):
        for regime, k in (("regular", 0.0), ("sgt", 0.5)):
            perfect = sum(job(grid, model, p, k).metrics["test/acc"] == 1.0
                          for p in ("Gaussian", "NARMA"))
            for row in (r for r in rows if r["arch"] == model):
                assert row[f"{regime}_models"] == f"{perfect}/2"
    assert {p.name: p.read_bytes() for p in tmp_path.glob("table2.*")} == before
    assert (tmp_path / "table2_2.html").read_text().count("<tr>") == len(rows) + 1


def test_poster_file_matches_the_digest() -> None:
    """docs/poster_table2.json holds the numbers of docs/paper.md §4.2, cell by cell."""
    poster = load_poster("table2")
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
