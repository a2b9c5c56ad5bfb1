"""The optional sweep configs compose with their plugins: optuna over k and λ, Slurm."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from tests.conftest import CONFIGS, ROOT, SHARED_DATA, needs_mnist

OPTUNA = "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper"
SLURM = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"


def _compose(config: str, *overrides: str) -> DictConfig:
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIGS)):
        return compose(config, overrides=list(overrides), return_hydra_config=True)


def test_plugin_names_compose() -> None:
    cfg = _compose("train.yaml", "hydra/sweeper=optuna", "hydra/launcher=submitit_slurm")
    assert cfg.hydra.sweeper._target_ == OPTUNA
    assert cfg.hydra.launcher._target_ == SLURM


def test_optuna_search_searches_k_and_lam_maximising() -> None:
    cfg = _compose("train.yaml", "hparams_search=optuna")
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_ == OPTUNA and sweeper.direction == "maximize"
    assert set(sweeper.params) == {"sgt.k", "sgt.lam"}
    assert sweeper.sampler.seed == cfg.seed  # a repeatable search
    # everything else is the paper's MNIST experiment
    assert cfg.optimizer._target_ == "torch.optim.Adadelta" and cfg.sgt.fill == "uniform"


def test_slurm_launcher_config() -> None:
    cfg = _compose("train.yaml", "hparams_search=optuna", "hydra/launcher=slurm_gpu",
                   "hydra.launcher.partition=gpu")
    launcher = cfg.hydra.launcher
    assert launcher._target_ == SLURM and launcher.gpus_per_node == 1
    assert launcher.partition == "gpu"


def test_eval_group_composes_into_train_and_evaluate() -> None:
    train = _compose("train.yaml", "eval=accuracy_drop")
    assert train.eval.metric.seed == train.seed and "random" in train.eval.methods
    assert "eval" not in _compose("train.yaml")  # off unless asked for
    evaluate = _compose("evaluate.yaml", "ckpt_path=x", "logger=wandb")
    assert evaluate.eval.name == "accuracy_drop" and evaluate.eval.metric.seed == 0
    assert evaluate.logger.wandb.offline is True
    assert OmegaConf.is_missing(_compose("evaluate.yaml"), "ckpt_path")


@pytest.mark.slow
@needs_mnist
def test_optuna_sweep_runs_two_trials(tmp_path: Path) -> None:
    env = {**os.environ, "SGT_DATA_DIR": str(SHARED_DATA)}
    done = subprocess.run(
        [sys.executable, "-m", "experiments.train", "-m", "hparams_search=optuna",
         "hydra.sweeper.n_trials=2", "debug=fdr", "trainer.accelerator=cpu",
         "dataset.batch_size=32", "dataset.eval_batch_size=64", "~callbacks.rich_progress_bar",
         f"hydra.sweep.dir={tmp_path}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    results = OmegaConf.load(tmp_path / "optimization_results.yaml")
    assert set(results.best_params) == {"sgt.k", "sgt.lam"}
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["0", "1"]
