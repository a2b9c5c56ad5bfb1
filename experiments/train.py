"""Fit, select on validation, test: ``python -m experiments.train [overrides]``.

Writes into the run dir: ``.hydra/`` (resolved config), ``checkpoints/`` (best on
validation + ``last.ckpt``), ``csv/metrics.csv`` and ``metrics.json``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf

from experiments.evaluate import check_eval, evaluate_checkpoint
from experiments.utils import instantiate_list, report_user_errors, write_json_atomic
from experiments.validation import ConfigError, refuse_overwrite, validate
from sgt.checkpoint_io import check_fits, read_checkpoint
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


def build(cfg: DictConfig) -> tuple[pl.LightningDataModule, SaliencyGuidedModule]:
    """The DataModule and the SGT module a config describes (shared with evaluation)."""
    datamodule = hydra.utils.instantiate(cfg.dataset)
    net = hydra.utils.instantiate(cfg.model, num_classes=datamodule.num_classes)
    optimizer = hydra.utils.instantiate(cfg.optimizer) if cfg.get("optimizer") else None
    scheduler = hydra.utils.instantiate(cfg.scheduler) if cfg.get("scheduler") else None
    module = hydra.utils.instantiate(cfg.sgt)(
        net=net,
        optimizer=optimizer,
        scheduler=scheduler,
        num_classes=datamodule.num_classes,
        modality=datamodule.modality,
        seed=cfg.seed,
    )
    return datamodule, module


def resolve_ckpt(cfg: DictConfig, output_dir: Path) -> str | None:
    """``last`` means this run dir's ``checkpoints/last.ckpt``."""
    if cfg.get("ckpt_path") != "last":
        return cfg.get("ckpt_path")
    last = output_dir / "checkpoints" / "last.ckpt"
    if not last.is_file():
        raise ConfigError(f"ckpt_path=last but {last} does not exist; pass "
                          "hydra.run.dir=<the run dir to resume>")
    return str(last)


def read_inputs(datamodule: pl.LightningDataModule, module: SaliencyGuidedModule,
                ckpt_path: str | None) -> None:
    """Read the data and the checkpoint before any logger or callback writes a file, so
    bad files fail the run with nothing written (Lightning reads both only inside ``fit``)."""
    datamodule.prepare_data()
    datamodule.setup("fit")
    if ckpt_path is not None:
        check_fits(read_checkpoint(ckpt_path), module, ckpt_path)


def _scalars(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if torch.is_tensor(v) or
            isinstance(v, (int, float))}


def train(cfg: DictConfig) -> dict[str, Any]:
    """Run one training job; returns what it writes to ``metrics.json``."""
    validate(cfg)
    if cfg.get("eval"):
        check_eval(cfg.eval)
    output_dir = Path(cfg.paths.output_dir)
    ckpt_path = resolve_ckpt(cfg, output_dir)
    refuse_overwrite(output_dir, resuming=ckpt_path is not None)
    pl.seed_everything(cfg.seed, workers=True)

    datamodule, module = build(cfg)
    read_inputs(datamodule, module, ckpt_path)
    timer = EpochTimer()
    callbacks = [*instantiate_list(cfg.get("callbacks")), timer]
    loggers = instantiate_list(cfg.get("logger"))
    trainer: pl.Trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks,
                                                  logger=loggers or False)
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
        write_json_atomic(output_dir / "metrics.json", metrics)
    return metrics


def _run_dir(cfg: DictConfig) -> Path | None:
    return Path(cfg.paths.output_dir) if OmegaConf.select(cfg, "paths.output_dir") else None


@hydra.main(version_base="1.3", config_path="../configs", config_name="train.yaml")
@report_user_errors(_run_dir)
def main(cfg: DictConfig) -> float | None:
    """CLI: returns the best validation accuracy (what an optuna sweep maximises: never test)."""
    return train(cfg).get("val/acc_best")


if __name__ == "__main__":
    main()
