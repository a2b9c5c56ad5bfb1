"""End to end through the real configs on the real MNIST files (CPU, a few batches)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from experiments.train import train
from sgt.errors import SettingError
from tests.conftest import CPU_TEST_OVERRIDES, ROOT, SHARED_DATA, needs_mnist

pytestmark = needs_mnist


def run_cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "SGT_DATA_DIR": str(SHARED_DATA), "HYDRA_FULL_ERROR": "0"}
    return subprocess.run([sys.executable, "-m", "experiments.train", *args], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=300)


def test_train_writes_checkpoints_config_logs_and_metrics(train_cfg):
    cfg = train_cfg("sgt.k=0.5")
    metrics = train(cfg)
    run = Path(cfg.paths.output_dir)
    assert (run / "checkpoints" / "last.ckpt").is_file()
    best = Path(metrics["best_ckpt_path"])
    assert best.is_file() and best.parent == run / "checkpoints"
    assert (run / "csv" / "version_0" / "metrics.csv").is_file()
    saved = json.loads((run / "metrics.json").read_text())
    for key in ("test/acc", "test/acc_masked", "test/ce", "test/kl", "val/acc_best",
                "train/kl"):
        assert key in saved, key
    assert 0.0 <= saved["test/acc"] <= 1.0
    assert saved["test/kl"] > 0  # SGT ran: the masked branch exists


def test_k_zero_runs_the_same_path_with_zero_kl(train_cfg):
    metrics = train(train_cfg("sgt=none"))
    assert metrics["train/kl"] == 0.0 and "test/acc_masked" not in metrics


def test_resume_from_last_continues_the_run(train_cfg):
    first = train(train_cfg("trainer.max_epochs=1"))
    assert first["epochs"] == 1
    cfg = train_cfg("trainer.max_epochs=2", "ckpt_path=last")
    resumed = train(cfg)
    assert resumed["epochs"] == 2
    ckpt = torch.load(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt",
                      weights_only=False)
    assert ckpt["global_step"] == 6  # 3 batches per epoch, two epochs in all
    assert "mask" in ckpt["sgt_rng"]
    # Each start keeps its own CSV log: resuming deletes nothing.
    logs = sorted((Path(cfg.paths.output_dir) / "csv").glob("version_*/metrics.csv"))
    assert len(logs) == 2


def test_new_run_refuses_a_dir_with_results(train_cfg):
    train(train_cfg())
    cfg = train_cfg()
    before = sorted(p.name for p in Path(cfg.paths.output_dir).rglob("*"))
    with pytest.raises(SettingError, match="already holds results"):
        train(cfg)
    assert sorted(p.name for p in Path(cfg.paths.output_dir).rglob("*")) == before


BAD_CONFIGS = [
    ("sgt.k=1.0", "sgt.k must be a fraction in [0, 1), got 1.0"),
    ("sgt.k=-0.1", "sgt.k must be a fraction in [0, 1), got -0.1"),
    ("sgt.lam=-1", "sgt.lam must be a finite number >= 0, got -1"),
    ("sgt.lam=nan", "sgt.lam must be a finite number >= 0, got nan"),
    ("sgt.fill=gauss", "unknown sgt.fill 'gauss'; allowed: background, baseline"),
    ("dataset.batch_size=0", "dataset.batch_size must be a positive integer, got 0"),
    ("dataset.batch_size=-5", "dataset.batch_size must be a positive integer, got -5"),
]


@pytest.mark.parametrize(("override", "message"), BAD_CONFIGS)
def test_bad_config_is_rejected_before_any_file(train_cfg, override, message):
    cfg = train_cfg(override)
    with pytest.raises(SettingError) as err:
        train(cfg)
    assert message in str(err.value)
    assert not Path(cfg.paths.output_dir).exists()


@pytest.mark.parametrize(
    ("override", "message"),
    [("sgt.k=1.5", "sgt.k must be a fraction in [0, 1), got 1.5"),
     # Hydra's own composition errors (~11 s each; test_reliability keeps one in the suite)
     pytest.param("dataset=imagenet", "Could not find 'dataset/imagenet'",
                  marks=pytest.mark.slow),
     pytest.param("model=resnet9000", "Could not find 'model/resnet9000'",
                  marks=pytest.mark.slow)],
)
def test_cli_bad_config_one_line_exit_code_and_no_run_dir(tmp_path, override, message):
    run_dir = tmp_path / "run"
    proc = run_cli(override, f"hydra.run.dir={run_dir}")
    assert proc.returncode != 0
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not run_dir.exists()


@pytest.mark.slow  # ~15 s; tests/test_tradeoff.py runs a real 3-job sweep
def test_cli_multirun_sweep_makes_one_run_dir_per_value(tmp_path):
    sweep = tmp_path / "sweep"
    args = [a for a in CPU_TEST_OVERRIDES if "limit_val" not in a and "limit_test" not in a]
    proc = run_cli("-m", "sgt.k=0.1,0.5", f"hydra.sweep.dir={sweep}",
                   "trainer.limit_val_batches=1", "trainer.limit_test_batches=1",
                   *[a for a in args if "limit_train" not in a],
                   "trainer.limit_train_batches=1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert [p.name for p in jobs] == ["0", "1"]
    ks = [json.loads((p / "metrics.json").read_text()) and
          (p / ".hydra" / "overrides.yaml").read_text() for p in jobs]
    assert "sgt.k=0.1" in ks[0] and "sgt.k=0.5" in ks[1]


def test_cli_multirun_with_one_bad_value_fails_before_any_job(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli("-m", "sgt.k=0.1,1.2", f"hydra.sweep.dir={sweep}")
    assert proc.returncode != 0
    assert "sgt.k must be a fraction in [0, 1), got 1.2" in proc.stderr
    assert not sweep.exists()


class AssertTrainMode(pl.Callback):
    """Fails the run if any layer trains in eval mode (dropout off, BatchNorm frozen)."""

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        assert all(m.training for m in module.net.modules()), "training in eval mode"


def test_training_runs_in_train_mode_after_the_start_up_checks(train_cfg):
    """The start-up forward that checks model and data runs in eval mode and must give the
    training mode back (Lightning 2.6 trains in whatever mode it finds)."""
    train(train_cfg("+callbacks.mode._target_=tests.test_train.AssertTrainMode"))
