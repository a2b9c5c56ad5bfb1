"""Evaluate a saved run: ``python -m experiments.evaluate ckpt_path=<run dir or .ckpt>``.

``eval=accuracy_drop`` (default), ``eval=sanity``, …: one config per evaluation in
``configs/eval/``. Results go to ``<run dir>/eval/<name>.*`` (see
:mod:`experiments.runs.evaluation`); this job's own folder only holds its logs.
"""

from __future__ import annotations

import shlex
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from experiments.runs.build import instantiate_list
from experiments.runs.cli import interrupted_by_sigterm, report_user_errors
from experiments.runs.evaluation import check_eval, close_loggers, evaluate_checkpoint
from experiments.runs.files import resolve_run


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Check everything, then evaluate ``cfg.ckpt_path`` with ``cfg.eval``."""
    check_eval(cfg.eval)
    resolve_run(cfg.ckpt_path)  # a bad path fails before any logger starts
    loggers = instantiate_list(cfg.get("logger"))
    try:
        with interrupted_by_sigterm(lambda: stopped_message(cfg)):
            return evaluate_checkpoint(cfg.eval, cfg.ckpt_path, loggers=loggers,
                                       data_dir=cfg.get("data_dir"))
    finally:
        close_loggers(loggers)


def stopped_message(cfg: DictConfig) -> str:
    """What a SIGTERM leaves, and the command that evaluates again."""
    overrides = (list(HydraConfig.get().overrides.task) if HydraConfig.initialized()
                 else [f"ckpt_path={cfg.ckpt_path}"])
    command = "python -m experiments.evaluate " + shlex.join(overrides)
    return (f"the evaluation {cfg.eval.name} of {cfg.ckpt_path} was stopped by SIGTERM; it "
            f"left no partial result files; run it again with {command}")


@hydra.main(version_base="1.3", config_path="../configs", config_name="evaluate.yaml")
@report_user_errors
def main(cfg: DictConfig) -> None:
    result = evaluate(cfg)
    print(f"results: {result[f'eval/{cfg.eval.name}/json']}")


if __name__ == "__main__":
    main()
