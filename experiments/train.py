"""Fit, select on validation, test: ``python -m experiments.train [overrides]``.

Writes into the run dir: ``.hydra/`` (resolved config), ``checkpoints/`` (best on
validation + ``last.ckpt``), ``csv/version_N/metrics.csv`` and ``metrics.json``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, read_write
from pytorch_lightning.callbacks.progress import ProgressBar
from pytorch_lightning.utilities.exceptions import SIGTERMException

from experiments.runs.build import build, instantiate_list
from experiments.runs.checks import start_run, validate
from experiments.runs.claim import release_run_dir
from experiments.runs.cli import (
    RunInterrupted,
    call_library,
    interrupted_by_sigterm,
    report_user_errors,
)
from experiments.runs.devices import share_cpu_threads, trainer_devices
from experiments.runs.evaluation import evaluate_checkpoint
from experiments.runs.files import METRICS, read_metrics, write_json_atomic
from experiments.runs.multirun import continue_command, in_multirun, sweep_dir_of_job
from experiments.runs.resume import (
    check_resume,
    finished_message,
    recorded,
    resolve_ckpt,
    resume_command,
    started_from,
)
from experiments.runs.summary import print_run_summary
from experiments.runs.timing import EpochTimer
from sgt.checkpoint_io import check_fits, read_checkpoint
from sgt.data import InMemoryDataModule
from sgt.errors import SettingError, SGTError, StorageError
from sgt.module import SaliencyGuidedModule


class RunRecord(pl.Callback):
    """What metrics.json reports beyond the weights, kept in every checkpoint so a resumed
    run reports it too: the metrics of the epoch a checkpoint holds (a resume after the last
    epoch trains none, so its fit reports none) and where the run's weights started
    (``started_from``: another run's checkpoint)."""

    def __init__(self, origin: dict[str, Any] | None) -> None:
        self.origin = origin
        self.metrics: dict[str, float] = {}
        self._trainer: pl.Trainer | None = None

    def setup(self, trainer: pl.Trainer, module: pl.LightningModule, stage: str) -> None:
        self._trainer = trainer

    def state_dict(self) -> dict[str, Any]:
        metrics = _scalars(self._trainer.callback_metrics) if self._trainer else self.metrics
        return {"metrics": metrics, "started_from": self.origin}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.metrics = dict(state.get("metrics", {}))
        if self.origin is None:  # a resume: the origin the run recorded when it started
            self.origin = state.get("started_from")


def read_inputs(datamodule: InMemoryDataModule, module: SaliencyGuidedModule,
                ckpt_path: str | None) -> dict[str, Any]:
    """Read the data and the checkpoint, and run the model once on the data, before any
    logger or callback writes a file: bad files, a model that cannot take the data's inputs
    or a ``k`` that masks nothing fail the run with nothing written. Returns where the
    checkpoint's training stood (``epoch``, ``global_step``; empty without one)."""
    datamodule.prepare_data()
    datamodule.setup("fit")
    position: dict[str, Any] = {}
    if ckpt_path is not None:
        checkpoint = read_checkpoint(ckpt_path)
        check_fits(checkpoint, module, ckpt_path)
        position = {key: checkpoint.get(key) for key in ("epoch", "global_step")}
    example = datamodule.example_input()
    was_training = module.training
    try:
        with torch.no_grad():
            module.eval()(example)
    except RuntimeError as err:
        reason = str(err).strip().splitlines()[0]
        raise SettingError(
            f"the model ({type(module.net).__name__}) cannot take {datamodule.name}'s inputs of "
            f"shape {tuple(example.shape[1:])} ({reason}); choose a model for this data "
            "(model=...)") from None
    finally:
        module.train(was_training)  # Lightning keeps the mode it finds: dropout, BatchNorm
    module.check_masked_count(next(iter(datamodule.train_dataloader()))[0])
    module.example_input_array = example
    return position


def _scalars(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if torch.is_tensor(v) or
            isinstance(v, (int, float))}


def next_step(run_dir: Path) -> str:
    """How to go on with a run that stopped: resume it, or continue its sweep."""
    if in_multirun():
        return f"continue the sweep with {continue_command(sweep_dir_of_job())}"
    return f"resume with {resume_command(run_dir)}"


def refused_write(err: BaseException) -> StorageError | None:
    """The :class:`StorageError` behind ``err``: on a full disk, what Lightning does after a
    failed checkpoint (its loggers' last write) may fail too and raise an error of its own."""
    while err is not None and not isinstance(err, StorageError):
        err = err.__context__
    return err


def fit(trainer: pl.Trainer, module: SaliencyGuidedModule, datamodule: InMemoryDataModule,
        ckpt_path: str | None, run_dir: Path) -> None:
    """``trainer.fit``; a SIGTERM (Slurm, ``timeout``, ``docker stop``) ends the run with
    exit code 143 and the command that resumes it, instead of Lightning's silent exit 0, and
    a checkpoint the disk refuses ends it with that command too."""
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    except SIGTERMException:
        raise RunInterrupted(
            f"the run was stopped by SIGTERM in epoch {trainer.current_epoch} (step "
            f"{trainer.global_step}); checkpoints/last.ckpt holds the last complete epoch "
            f"(if one was): {next_step(run_dir)}") from None
    except OSError as err:
        refused = refused_write(err)
        if refused is None:
            raise
        raise StorageError(f"{refused}, then {next_step(run_dir)}") from None
    if trainer.global_step == 0:
        raise SettingError("the run took no training step (trainer.limit_train_batches or "
                           "the data left none), so there is nothing to test; give "
                           "trainer.limit_train_batches > 0")


# What Lightning leaves in a process that started DDP: a later job of the same sweep would
# take it for a process started by someone else, and start none of its own.
DDP_ENVIRONMENT = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE",
                   "GROUP_RANK", "RANK", "LOCAL_WORLD_SIZE")


def run_as_this_job(run_dir: Path) -> None:
    """A job of a sweep is a run of its own. Lightning would start a DDP run's other
    processes with the sweep's command (``-m`` and every job): make it this job's command, a
    single run, in a process an earlier job's DDP left clean. Jobs that run side by side on
    the CPU share its cores."""
    if in_multirun():
        for key in DDP_ENVIRONMENT:
            os.environ.pop(key, None)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        hydra_cfg = HydraConfig.get()
        overrides = [o for o in hydra_cfg.overrides.task if not o.startswith("hydra.run.dir=")]
        sys.argv = [sys.argv[0], *overrides, f"hydra.run.dir={run_dir}"]
        with read_write(hydra_cfg):  # where Lightning puts the other processes: this job's
            hydra_cfg.run.dir = str(run_dir)
        share_cpu_threads(OmegaConf.select(hydra_cfg, "launcher.n_jobs") or 1)


def train(cfg: DictConfig) -> dict[str, Any]:
    """Run one training job; returns what it writes to ``metrics.json``."""
    validate(cfg)
    run_dir = Path(cfg.paths.output_dir)
    run_as_this_job(run_dir)
    done = start_run(cfg, run_dir)  # claims the run dir (the CLI's callback already did)
    if done is not None:
        print(finished_message(run_dir, done))
        return done
    try:
        ckpt_path = resolve_ckpt(cfg, run_dir)
        changes = check_resume(cfg, run_dir, ckpt_path) if ckpt_path else {}
        earlier = read_metrics(run_dir)  # a finished run trained longer keeps them
        pl.seed_everything(cfg.seed, workers=True, verbose=False)
        datamodule, module = build(cfg)
        position = read_inputs(datamodule, module, ckpt_path)
        origin = started_from(ckpt_path, run_dir, position, changes) if ckpt_path else None
        metrics, writes = fit_test_evaluate(cfg, datamodule, module, ckpt_path, run_dir,
                                            RunRecord(origin))
    except SGTError:
        release_run_dir(run_dir)
        raise
    if changes and origin is None:  # a resume of this run (another's records them in origin)
        metrics["resumed_with_changes"] = recorded(changes)
    metrics = {**earlier, **metrics}
    if writes:
        write_json_atomic(run_dir / METRICS, metrics)
    release_run_dir(run_dir)
    return metrics


def fit_test_evaluate(cfg: DictConfig, datamodule: InMemoryDataModule,
                      module: SaliencyGuidedModule, ckpt_path: str | None, run_dir: Path,
                      record: RunRecord) -> tuple[dict[str, Any], bool]:
    """Fit, test the best checkpoint, evaluate it (``eval=…``): the run's metrics, and
    whether this process writes them (rank 0). A SIGTERM after the training says that its
    checkpoints are complete and how to test them again."""
    timer = EpochTimer()
    callbacks = [*instantiate_list(cfg.get("callbacks")), timer, record]
    if OmegaConf.select(cfg, "trainer.enable_progress_bar") is False:
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    loggers = instantiate_list(cfg.get("logger"))
    trainer: pl.Trainer = call_library("trainer", lambda: hydra.utils.instantiate(
        cfg.trainer, callbacks=callbacks, logger=loggers or False,
        devices=trainer_devices(OmegaConf.select(cfg, "trainer.devices", default="auto"))))
    for logger in loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))

    fit(trainer, module, datamodule, ckpt_path, run_dir)
    # testing the best checkpoint restores its callbacks: what the fit left is taken first
    epoch_times, origin = list(timer.times), record.origin
    metrics: dict[str, Any] = {**record.metrics, **_scalars(trainer.callback_metrics)}
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    with interrupted_by_sigterm(lambda: (
            f"the run was stopped by SIGTERM after its training ({trainer.current_epoch} "
            "epochs), while testing or evaluating its best checkpoint, so no metrics.json "
            f"was written; its checkpoints are complete: {next_step(run_dir)} (that trains "
            "no further: it tests the best checkpoint and writes metrics.json)")):
        if cfg.get("test"):
            tested = trainer.test(module, datamodule=datamodule, ckpt_path=best or None,
                                  verbose=False)
            metrics.update(_scalars(tested[0]) if tested else {})
        if cfg.get("eval") and trainer.is_global_zero:  # the evaluation suite on the best
            ckpt = best or str(run_dir / "checkpoints" / "last.ckpt")
            metrics.update(evaluate_checkpoint(cfg.eval, ckpt, run_cfg=cfg, loggers=loggers,
                                               datamodule=datamodule))
    if origin is not None:
        metrics["started_from"] = origin
    stopping = trainer.early_stopping_callback
    metrics.update(
        best_ckpt_path=best,
        epochs=trainer.current_epoch,
        stopped_early=bool(stopping is not None and stopping.stopped_epoch > 0),
        epoch_time_s=epoch_times,
        skipped_batches=module.skipped_batches,
        seed=cfg.seed,
        world_size=trainer.world_size,
        batch_size=datamodule.batch_size,  # global: each process takes its share
    )
    return metrics, trainer.is_global_zero


@hydra.main(version_base="1.3", config_path="../configs", config_name="train.yaml")
@report_user_errors
def main(cfg: DictConfig) -> float | None:
    """CLI: returns the best validation accuracy (what an optuna sweep maximises: never test)."""
    metrics = train(cfg)
    print_run_summary(cfg, metrics)
    return metrics.get("val/acc_best")


if __name__ == "__main__":
    main()
