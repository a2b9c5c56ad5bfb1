"""Config checks that run before any work: one clear line per problem, no run dir made.

Every check is the library's own (``SaliencyGuidedModule.check_settings``, the DataModule's
and the evaluation's constructors, torch's optimizer checks): this module only calls them
with the config's values. ``validate(cfg)`` is called by the scripts (covering the compose
API and tests); :class:`ValidateConfig` runs it as a Hydra callback *before* Hydra creates
the run or sweep directory, expanding a multirun's sweep so every job is checked.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.errors import HydraException
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from experiments.runs.build import sgt_settings
from experiments.runs.claim import claim_run_dir, release_run_dir
from experiments.runs.cli import call_library, fail
from experiments.runs.evaluation import check_eval
from experiments.runs.multirun import (
    Job,
    check_sweep,
    keep_earlier_sweep_file,
    save_job_files_beside_results,
    stop_on_sigterm,
)
from experiments.runs.resume import (
    RESUMING,
    check_start,
    finished_message,
    keeps_first_config,
    resume_subdir,
)
from sgt.checks import check_int
from sgt.errors import SettingError, SGTError
from sgt.module import SaliencyGuidedModule


def check_optimizer(cfg: DictConfig) -> None:
    """Build the optimizer on one dummy parameter: torch checks lr, momentum, …"""
    if not cfg.get("optimizer"):
        return
    factory = call_library("optimizer", lambda: hydra.utils.instantiate(cfg.optimizer))
    call_library("optimizer", lambda: factory(params=[torch.zeros(1, requires_grad=True)]))


def check_trainer(cfg: DictConfig) -> None:
    accelerator = OmegaConf.select(cfg, "trainer.accelerator")
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise SettingError(f"trainer.accelerator={accelerator} but this machine has no CUDA "
                           "GPU; use trainer=cpu (or trainer.accelerator=auto)")
    for key in ("limit_train_batches", "limit_val_batches", "limit_test_batches"):
        limit = OmegaConf.select(cfg, f"trainer.{key}")
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, (int, float))
                                  or limit <= 0 or (isinstance(limit, float) and limit > 1)):
            raise SettingError(f"trainer.{key} must be a count of batches >= 1, a fraction of "
                               f"the epoch in (0, 1], or null (all), got {limit!r}")
    world = world_size(cfg)
    batch = OmegaConf.select(cfg, "dataset.batch_size")
    if world and isinstance(batch, int) and batch % world:
        raise SettingError(f"dataset.batch_size={batch} is the global batch of the {world} "
                           "DDP processes (trainer.devices × trainer.num_nodes) and must divide "
                           f"evenly between them; choose a multiple of {world}")
    max_epochs = OmegaConf.select(cfg, "trainer.max_epochs")
    if max_epochs is not None and max_epochs != -1:
        try:
            check_int(max_epochs, "trainer.max_epochs")
        except SettingError:
            raise SettingError("trainer.max_epochs must be a positive integer or -1 (no limit), "
                               f"got {max_epochs!r}") from None


def world_size(cfg: DictConfig) -> int | None:
    """How many processes a DDP config starts, when the config says (``None``: not DDP, or
    ``trainer.devices`` left to the machine)."""
    if not str(OmegaConf.select(cfg, "trainer.strategy")).startswith("ddp"):
        return None
    devices = OmegaConf.select(cfg, "trainer.devices")
    nodes = OmegaConf.select(cfg, "trainer.num_nodes") or 1
    if isinstance(devices, bool) or not isinstance(devices, (int, list, tuple)) and not (
            OmegaConf.is_list(devices)):
        return None
    count = len(devices) if not isinstance(devices, int) else devices
    return count * nodes if count > 0 and isinstance(nodes, int) else None


def validate(cfg: DictConfig) -> None:
    """Raise a :class:`SettingError` naming the first bad setting and what is allowed."""
    check_int(cfg.get("seed"), "seed", low=0, high=2**32 - 1)  # Lightning would swap it
    if cfg.get("sgt") is not None:
        SaliencyGuidedModule.check_settings(**sgt_settings(cfg.sgt))
    if cfg.get("dataset") is not None:
        call_library("dataset", lambda: hydra.utils.instantiate(cfg.dataset))
    check_optimizer(cfg)
    check_trainer(cfg)
    if cfg.get("eval"):
        check_eval(cfg.eval)
    ckpt = cfg.get("ckpt_path")
    if ckpt not in (None, *RESUMING) and not Path(str(ckpt)).is_file():
        raise SettingError(f"ckpt_path={ckpt!r} is not a file; give a .ckpt path, or `auto` "
                           "(`last`) with hydra.run.dir=<the run to resume>")


BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"
BASIC_LAUNCHER = "hydra._internal.core_plugins.basic_launcher.BasicLauncher"


def check_launcher(config: DictConfig, jobs: list[Job]) -> None:
    """What a launcher cannot do with these jobs is refused in one line: DDP runs need
    Hydra's basic launcher (Lightning starts each job's other processes from this command),
    and a Slurm job requeued after preemption needs ``ckpt_path=auto`` to resume itself."""
    launcher = str(OmegaConf.select(config, "hydra.launcher._target_"))
    ddp = [j for j in jobs if str(OmegaConf.select(j.config, "trainer.strategy")).startswith(
        "ddp")]
    if ddp and launcher != BASIC_LAUNCHER:
        raise SettingError(
            f"{ddp[0].label} is a DDP run (trainer.strategy="
            f"{ddp[0].config.trainer.strategy}), which Hydra's basic launcher runs one after "
            f"another, each on trainer.devices processes; this sweep's launcher "
            f"({launcher.rsplit('.', 1)[-1]}) cannot start them: drop hydra/launcher=…, or "
            "give each job one device (trainer=gpu_per_job)")
    requeue = (OmegaConf.select(config, "hydra.launcher.max_num_timeout") or 0) > 0
    if requeue and config.get("ckpt_path") != "auto":
        raise SettingError("a Slurm job requeued after preemption or timeout starts its job "
                           "again: add ckpt_path=auto, so it resumes from its own last.ckpt "
                           "(the grid configs set it)")


def record_resolved_paths(config: DictConfig) -> None:
    """Store the data and cache folders, and a checkpoint of another run to start from, as
    absolute paths, so the saved config finds them again whatever the environment
    (``SGT_DATA_DIR``) or working folder of a later job."""
    with read_write(config), open_dict(config):
        for key in ("data_dir", "cache_dir"):
            value = OmegaConf.select(config, f"paths.{key}")
            if value is not None:
                config.paths[key] = str(Path(value).expanduser().absolute())
        if config.get("ckpt_path") not in (None, *RESUMING):
            config.ckpt_path = str(Path(config.ckpt_path).expanduser().absolute())


def start_run(config: DictConfig, run_dir: Path) -> dict[str, Any] | None:
    """Claim ``run_dir`` for this start, then :func:`check_start`."""
    claim_run_dir(run_dir)
    try:
        return check_start(config, run_dir)
    except SGTError:
        release_run_dir(run_dir)  # and removed when this start created it
        raise


def prepare_data(jobs: list[Job]) -> None:
    """Each dataset of a sweep found (or downloaded) once, before any job: missing data fails
    the sweep before it starts, and parallel jobs never race to download."""
    seen = set()
    for job in jobs:
        key = OmegaConf.to_yaml(job.config.dataset)
        if key not in seen:
            seen.add(key)
            call_library("dataset", lambda job=job: hydra.utils.instantiate(
                job.config.dataset)).prepare_data()


class ValidateConfig(Callback):
    """Hydra callback: validate and claim the run dir before Hydra writes into it."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        run_dir = Path(config.hydra.run.dir)
        try:
            validate(config)
            done = start_run(config, run_dir)
        except SGTError as err:
            fail(str(err))
        if done is not None:  # a requeued job of a finished run: keep everything, say so
            print(finished_message(run_dir, done))
            sys.exit(0)
        record_resolved_paths(config)
        # A resume keeps the first start's .hydra/ files as they are (a DDP child process
        # started by Lightning already has a subdir of its own).
        if keeps_first_config(config, run_dir) and config.hydra.output_subdir == ".hydra":
            with read_write(config.hydra):
                config.hydra.output_subdir = resume_subdir(run_dir)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Check every job of the sweep, and its folder, before Hydra writes anything
        (:mod:`experiments.runs.multirun`)."""
        try:
            validate(config)
            if OmegaConf.select(config, "hydra.sweeper._target_") == BASIC_SWEEPER:
                jobs = check_sweep(config)
                for job in jobs:
                    validate(job.config)
                check_launcher(config, jobs)
                prepare_data(jobs)
            # another sweeper (optuna) draws its jobs as it goes: the base config is checked
        except SGTError as err:
            fail(str(err))
        except HydraException as err:  # a job that does not compose (Hydra's exit code)
            fail(str(err), exit_code=1)
        keep_earlier_sweep_file(config)
        save_job_files_beside_results(config)
        stop_on_sigterm(Path(str(config.hydra.sweep.dir)))

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Each job of a sweep records absolute data paths too."""
        record_resolved_paths(config)
