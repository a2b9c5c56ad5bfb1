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
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from experiments.runs.build import sgt_settings
from experiments.runs.claim import claim_run_dir, release_run_dir
from experiments.runs.cli import call_library, fail
from experiments.runs.evaluation import check_eval
from experiments.runs.files import METRICS
from experiments.runs.resume import check_resume, finished, finished_message, resolve_ckpt
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
    max_epochs = OmegaConf.select(cfg, "trainer.max_epochs")
    if max_epochs is not None and max_epochs != -1:
        try:
            check_int(max_epochs, "trainer.max_epochs")
        except SettingError:
            raise SettingError("trainer.max_epochs must be a positive integer or -1 (no limit), "
                               f"got {max_epochs!r}") from None


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
    if ckpt not in (None, "last") and not Path(str(ckpt)).is_file():
        raise SettingError(f"ckpt_path={ckpt!r} is not a file; give a .ckpt path, or `last` "
                           "with hydra.run.dir=<the run to resume>")


def results_in(output_dir: Path) -> list[str]:
    """The results of an earlier run that ``output_dir`` holds."""
    return [p for p in (METRICS, "checkpoints") if (output_dir / p).exists()]


def refuse_overwrite(output_dir: Path, resuming: bool) -> None:
    """A new run never writes into a folder that already holds results."""
    taken = results_in(output_dir)
    if taken and not resuming:
        raise SettingError(
            f"{output_dir} already holds results ({', '.join(taken)}); choose another "
            "hydra.run.dir, or resume that run with ckpt_path=last"
        )


def resume_subdir(run_dir: Path) -> str:
    """Where Hydra saves a resumed start's config: ``.hydra/resume_<n>``, so the first
    start's ``.hydra/config.yaml`` (what evaluation rebuilds the run from) stays untouched."""
    n = 1
    while (run_dir / ".hydra" / f"resume_{n}").exists():
        n += 1
    return f".hydra/resume_{n}"


def _sweep_jobs(config: DictConfig) -> list[list[str]]:
    """Each multirun job's overrides (basic sweeper grammar: ``a=1,2 b=x,y``)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    overrides = OverridesParser.create().parse_overrides(list(config.hydra.overrides.task))
    return [job for batch in BasicSweeper.split_arguments(overrides, None) for job in batch]


def record_resolved_paths(config: DictConfig) -> None:
    """Store the data and cache folders as absolute paths, so the saved config finds them
    again whatever the environment (``SGT_DATA_DIR``) or working folder of a later job."""
    with read_write(config), open_dict(config):
        for key in ("data_dir", "cache_dir"):
            value = OmegaConf.select(config, f"paths.{key}")
            if value is not None:
                config.paths[key] = str(Path(value).expanduser().absolute())


def start_run(config: DictConfig, run_dir: Path) -> dict[str, Any] | None:
    """Claim ``run_dir`` for this start, then refuse what would overwrite or mix results:
    a new run into a folder with results, a resume with other settings. Returns the metrics
    of a finished run that this start would not train further (``None`` otherwise)."""
    claim_run_dir(run_dir)
    try:
        resuming = config.get("ckpt_path") is not None
        refuse_overwrite(run_dir, resuming)
        if not resuming:
            return None
        resolve_ckpt(config, run_dir)
        check_resume(config, run_dir)
        return finished(config, run_dir)
    except SGTError:
        release_run_dir(run_dir)  # and removed when this start created it
        raise


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
        if results_in(run_dir) and config.hydra.output_subdir == ".hydra":
            with read_write(config.hydra):
                config.hydra.output_subdir = resume_subdir(run_dir)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from hydra import compose

        try:
            jobs = _sweep_jobs(config)
        except Exception:  # another sweeper's grammar (optuna ranges): check the base only
            jobs = []
        try:
            validate(config)
            for overrides in jobs:
                validate(compose(config.hydra.job.config_name, overrides=overrides))
        except SGTError as err:
            fail(str(err))

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Each job of a sweep records absolute data paths too."""
        record_resolved_paths(config)
