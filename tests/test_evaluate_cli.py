"""Evaluation of a real (tiny) checkpoint: in-process, as a CLI, and after training."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig, OmegaConf

from experiments.evaluate import evaluate
from experiments.runs.build import load_module
from experiments.runs.files import resolve_run
from experiments.train import train
from sgt.errors import SettingError
from tests.conftest import CPU_TEST_OVERRIDES, ROOT, SHARED_DATA, compose_config, needs_mnist

pytestmark = needs_mnist

QUICK_EVAL = ["eval.methods=[grad,random]", "eval.batch_size=32", "eval.metric.limit_batches=1",
              "eval.num_examples=2", "eval.metric.progress=false"]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run dir as `python -m experiments.train` leaves it, from one short epoch."""
    run_dir = tmp_path_factory.mktemp("runs") / "run"
    cfg = compose_config("train.yaml", CPU_TEST_OVERRIDES, run_dir)
    train(cfg)
    (run_dir / ".hydra").mkdir()
    OmegaConf.save(cfg, run_dir / ".hydra" / "config.yaml")  # Hydra's copy, made by the CLI
    return run_dir


def _eval_cfg(tmp_path: Path, *overrides: str) -> DictConfig:
    return compose_config("evaluate.yaml", [*QUICK_EVAL, *overrides], tmp_path / "job")


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "SGT_DATA_DIR": str(SHARED_DATA), "HYDRA_FULL_ERROR": "0"}
    return subprocess.run([sys.executable, "-m", "experiments.evaluate", *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)


def test_evaluation_writes_results_next_to_the_checkpoint(run: Path, tmp_path: Path) -> None:
    done = evaluate(_eval_cfg(tmp_path, f"ckpt_path={run}"))
    result_file = Path(done["eval/accuracy_drop/json"])
    assert result_file == run / "eval" / "accuracy_drop.json"
    result = json.loads(result_file.read_text())
    assert result["levels"] == pytest.approx([i / 10 for i in range(10)])
    assert set(result["accuracy"]) == {"grad", "random"} and result["num_samples"] == 32
    assert done["eval/accuracy_drop/auc/grad"] == result["auc"]["grad"]
    # level 0 is the checkpoint's own accuracy on those 32 test images
    ckpt, _ = resolve_run(run)
    datamodule, module = load_module(OmegaConf.load(run / ".hydra" / "config.yaml"), ckpt,
                                     torch.device("cpu"))
    datamodule.setup("test")
    x, y = (t[:32] for t in next(iter(datamodule.test_dataloader())))
    with torch.no_grad():
        plain = (module(x).argmax(1) == y).double().mean().item()
    assert result["accuracy"]["grad"][0] == pytest.approx(plain)
    assert result["accuracy"]["random"][0] == pytest.approx(plain)
    for kind in ("csv", "config", "curves", "examples", "gradients", "examples_pt"):
        assert Path(result["files"][kind]).stat().st_size > 0, kind
    assert OmegaConf.load(result["files"]["config"]).metric.seed == 0  # saved resolved


def test_rerunning_keeps_every_earlier_evaluation(run: Path, tmp_path: Path) -> None:
    first = evaluate(_eval_cfg(tmp_path, f"ckpt_path={run}", "eval.name=again"))
    before = {p.name: p.read_bytes() for p in (run / "eval").glob("again*")}
    second = evaluate(_eval_cfg(tmp_path, f"ckpt_path={run}", "eval.name=again",
                                "eval.methods=[random]", "eval.num_examples=0"))
    assert Path(first["eval/again/json"]).name == "again.json"
    assert Path(second["eval/again/json"]).name == "again_2.json"
    assert len(before) == 7  # every file of the first evaluation, byte for byte unchanged
    assert all((run / "eval" / name).read_bytes() == data for name, data in before.items())


def test_cli_end_to_end_on_a_checkpoint_file(run: Path, tmp_path: Path) -> None:
    done = run_cli(f"ckpt_path={run}/checkpoints/last.ckpt", *QUICK_EVAL, "eval.name=cli",
                   f"hydra.run.dir={tmp_path / 'job'}")
    assert done.returncode == 0, done.stderr[-2000:]
    assert (run / "eval" / "cli.json").is_file()
    assert f"results: {run / 'eval' / 'cli.json'}" in done.stdout


@pytest.mark.slow  # a CLI start, ~15 s; test_evaluation_safety checks evaluate's one-line refusals
def test_cli_missing_run_dir_is_one_line_and_exit_2(tmp_path: Path) -> None:
    missing = tmp_path / "no_such_run"
    done = run_cli(f"ckpt_path={missing}", f"hydra.run.dir={tmp_path / 'job'}")
    assert done.returncode == 2
    assert done.stderr.strip() == (f"error: ckpt_path='{missing}' is neither a checkpoint file "
                                   "nor a run dir; give <run dir> or "
                                   "<run dir>/checkpoints/<name>.ckpt")
    assert not (tmp_path / "job").exists()  # a failed start leaves nothing behind


def test_run_dir_problems_are_named(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(SettingError, match="has no checkpoint"):
        resolve_run(tmp_path / "empty")
    (tmp_path / "bare" / "checkpoints").mkdir(parents=True)
    (tmp_path / "bare" / "checkpoints" / "last.ckpt").write_bytes(b"")
    cfg = _eval_cfg(tmp_path, f"ckpt_path={tmp_path / 'bare'}")
    with pytest.raises(SettingError, match=r"\.hydra/config\.yaml not found"):
        evaluate(cfg)


@pytest.mark.parametrize(("override", "message"), [
    ("eval.methods=[grad,ig]", "eval.methods: unknown attribution method 'ig'; known: deeplift"),
    ("eval.metric.levels=[0.5,1.0]",
     r"eval.metric: each of levels must be a fraction in \[0, 1\), got 1.0"),
    ("eval.metric.fill=gauss", "eval.metric: unknown fill 'gauss'; allowed: background"),
    ("eval.batch_size=0", "eval.batch_size must be a positive integer, got 0"),
    ("eval.methods=[]", "no attribution methods to evaluate"),
    ("eval.name=../../escape", "eval.name names files inside <run dir>/eval/"),
    ("+eval.method_args.smoothgrad={samples:3}", "unexpected keyword argument 'samples'"),
])
def test_bad_eval_settings_fail_before_training(train_cfg, override: str, message: str) -> None:
    cfg = train_cfg("eval=accuracy_drop", override)
    with pytest.raises(SettingError, match=message):
        train(cfg)
    assert not (Path(cfg.paths.output_dir) / "checkpoints").exists()


def test_train_with_eval_evaluates_the_best_checkpoint(train_cfg) -> None:
    cfg = train_cfg("eval=accuracy_drop", *QUICK_EVAL[:-2], "eval.num_examples=0",
                    "eval.metric.progress=false", "eval.methods=[grad]")
    metrics = train(cfg)
    run_dir = Path(cfg.paths.output_dir)
    result = json.loads((run_dir / "eval" / "accuracy_drop.json").read_text())
    assert result["checkpoint"] == metrics["best_ckpt_path"]
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert saved["eval/accuracy_drop/auc/grad"] == result["auc"]["grad"]


@pytest.mark.slow
def test_wandb_offline_run_holds_the_table_and_figures_and_syncs(run: Path,
                                                                 tmp_path: Path) -> None:
    done = run_cli(f"ckpt_path={run}", *QUICK_EVAL, "eval.name=wandb", "logger=wandb",
                   f"hydra.run.dir={tmp_path / 'job'}")
    assert done.returncode == 0, done.stderr[-2000:]
    (offline,) = (tmp_path / "job" / "wandb").glob("offline-run-*")
    media = offline / "files" / "media"
    assert list(media.rglob("*.table.json"))
    assert len(list((media / "images").rglob("*.png"))) == 3
    dry = subprocess.run(["wandb", "sync", "--dry-run", str(offline)], capture_output=True,
                         text=True, timeout=120)
    assert dry.returncode == 0 and "Would sync 1 run" in dry.stdout + dry.stderr


def test_sanity_check_end_to_end_through_the_cli(run: Path, tmp_path: Path) -> None:
    """`eval=sanity`: cascading randomisation with its table and figure, like the drop."""
    done = run_cli(f"ckpt_path={run}", "eval=sanity", "eval.methods=[grad,random]",
                   "eval.metric.num_samples=16", "eval.batch_size=16",
                   f"hydra.run.dir={tmp_path / 'job'}")
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((run / "eval" / "sanity.json").read_text())
    assert result["kind"] == "sanity" and result["num_samples"] == 16
    grad = [r for r in result["rows"] if r["method"] == "grad"]
    assert [r["layer"] for r in grad] == ["original", "classifier.3", "classifier.0",
                                          "features.2", "features.0"]
    assert grad[-1]["spearman"] < 0.9  # the maps follow the weights
    assert all(abs(r["spearman"] - 1) < 1e-5 for r in result["rows"] if r["method"] == "random")
    with (run / "eval" / "sanity.csv").open() as f:
        assert next(csv.reader(f)) == ["method", "step", "layer", "spearman", "spearman_std"]
    assert Path(result["files"]["curves"]).stat().st_size > 0
