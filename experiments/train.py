"""Fit, select on validation, test: ``python -m experiments.train [overrides]``.

Writes into the run dir: ``.hydra/`` (resolved config), ``checkpoints/`` (best on
validation + ``last.ckpt``), ``csv/version_N/metrics.csv`` and ``metrics.json``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks.progress import ProgressBar

from experiments.runs.build import build, instantiate_list
from experiments.runs.checks import refuse_overwrite, validate
from experiments.runs.cli import call_library, report_user_errors
from experiments.runs.evaluation import evaluate_checkpoint
from experiments.runs.files import METRICS, write_json_atomic
from experiments.runs.summary import print_run_summary
from sgt.checkpoint_io import check_fits, read_checkpoint
from sgt.data import InMemoryDataModule
from sgt.errors import SettingError
from sgt.module import SaliencyGuidedModule


class EpochTimer(pl.Callback):
    """Wall time of each training epoch (validation excluded), for metrics.json."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def on_train_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.times.append(time.perf_counter() - self._start)


def resolve_ckpt(cfg: DictConfig, output_dir: Path) -> str | None:
    """``last`` means this run dir's ``checkpoints/last.ckpt``."""
    if cfg.get("ckpt_path") != "last":
        return cfg.get("ckpt_path")
    last = output_dir / "checkpoints" / "last.ckpt"
    if not last.is_file():
        raise SettingError(f"ckpt_path=last but {last} does not exist; pass "
                           "hydra.run.dir=<the run dir to resume>")
    return str(last)


def read_inputs(datamodule: InMemoryDataModule, module: SaliencyGuidedModule,
                ckpt_path: str | None) -> None:
    """Read the data and the checkpoint before any logger or callback writes a file, so
    bad files fail the run with nothing written (Lightning reads both only inside ``fit``)."""
    datamodule.prepare_data()
    datamodule.setup("fit")
    module.example_input_array = datamodule.example_input()
    if ckpt_path is not None:
        check_fits(read_checkpoint(ckpt_path), module, ckpt_path)


def _scalars(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if torch.is_tensor(v) or
            isinstance(v, (int, float))}


def train(cfg: DictConfig) -> dict[str, Any]:
    """Run one training job; returns what it writes to ``metrics.json``."""
    validate(cfg)
    output_dir = Path(cfg.paths.output_dir)
    ckpt_path = resolve_ckpt(cfg, output_dir)
    refuse_overwrite(output_dir, resuming=ckpt_path is not None)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)

    datamodule, module = build(cfg)
    read_inputs(datamodule, module, ckpt_path)
    timer = EpochTimer()
    callbacks = [*instantiate_list(cfg.get("callbacks")), timer]
    if OmegaConf.select(cfg, "trainer.enable_progress_bar") is False:
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    loggers = instantiate_list(cfg.get("logger"))
    trainer: pl.Trainer = call_library("trainer", lambda: hydra.utils.instantiate(
        cfg.trainer, callbacks=callbacks, logger=loggers or False))
    for logger in loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))

    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    metrics: dict[str, Any] = _scalars(trainer.callback_metrics)
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    if cfg.get("test"):
        tested = trainer.test(module, datamodule=datamodule, ckpt_path=best or None,
                              verbose=False)
        metrics.update(_scalars(tested[0]) if tested else {})
    if cfg.get("eval") and trainer.is_global_zero:  # the evaluation suite on the best checkpoint
        ckpt = best or str(output_dir / "checkpoints" / "last.ckpt")
        metrics.update(evaluate_checkpoint(cfg.eval, ckpt, run_cfg=cfg, loggers=loggers))
    metrics.update(
        best_ckpt_path=best,
        epochs=trainer.current_epoch,
        epoch_time_s=timer.times,
        skipped_batches=module.skipped_batches,
        seed=cfg.seed,
    )
    if trainer.is_global_zero:
        write_json_atomic(output_dir / METRICS, metrics)
    return metrics


@hydra.main(version_base="1.3", config_path="../configs", config_name="train.yaml")
@report_user_errors
def main(cfg: DictConfig) -> float | None:
    """CLI: returns the best validation accuracy (what an optuna sweep maximises: never test)."""
    metrics = train(cfg)
    print_run_summary(cfg, metrics)
    return metrics.get("val/acc_best")


if __name__ == "__main__":
    main()
