"""Config checks that run before any work: one clear line per problem, no run dir made.

``validate(cfg)`` is called by ``train``/``evaluate`` (covering the compose API and tests);
:class:`ValidateConfig` runs the same checks as a Hydra callback *before* Hydra creates
the run or sweep directory, expanding a multirun's sweep so every job is checked.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, read_write

from sgt.errors import SGTError
from sgt.module import check_sgt_args


class ConfigError(SGTError, ValueError):
    """A setting is out of range or unknown."""


INT_SETTINGS = {  # key: (lowest, highest) allowed value
    "seed": (0, 2**32 - 1),  # Lightning would silently swap a seed outside for a random one
    "dataset.batch_size": (1, None),
    "dataset.eval_batch_size": (1, None),
    "dataset.val_size": (0, None),
}


def _check_int(cfg: DictConfig, key: str, low: int, high: int | None) -> None:
    value = OmegaConf.select(cfg, key)
    if value is None:
        return
    if (not isinstance(value, int) or isinstance(value, bool) or value < low
            or (high is not None and value > high)):
        if high is not None:
            allowed = f"an integer in [{low}, {high}]"
        else:
            allowed = "a positive integer" if low == 1 else f"an integer >= {low}"
        raise ConfigError(f"{key} must be {allowed}, got {value!r}")


def validate(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` naming the first bad setting and what is allowed."""
    sgt = cfg.get("sgt")
    if sgt is not None:
        try:
            check_sgt_args(sgt.get("k"), sgt.get("lam"), sgt.get("fill"),
                           sgt.get("saliency_mode"), sgt.get("saliency_output"),
                           sgt.get("nan_policy"))
        except ValueError as err:
            raise ConfigError(str(err)) from None
        if sgt.get("concat_forward") and sgt.get("saliency_mode") != "eval":
            raise ConfigError("sgt.concat_forward=true needs sgt.saliency_mode=eval "
                              f"(got {sgt.get('saliency_mode')!r})")
    for key, (low, high) in INT_SETTINGS.items():
        _check_int(cfg, key, low, high)
    accelerator = OmegaConf.select(cfg, "trainer.accelerator")
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(f"trainer.accelerator={accelerator} but this machine has no CUDA GPU; "
                          "use trainer=cpu (or trainer.accelerator=auto)")
    max_epochs = OmegaConf.select(cfg, "trainer.max_epochs")
    if max_epochs is not None and (not isinstance(max_epochs, int) or max_epochs < -1
                                   or max_epochs == 0):
        raise ConfigError(f"trainer.max_epochs must be a positive integer (or -1), "
                          f"got {max_epochs!r}")
    ckpt = cfg.get("ckpt_path")
    if ckpt not in (None, "last") and not Path(str(ckpt)).is_file():
        raise ConfigError(f"ckpt_path={ckpt!r} is not a file; give a .ckpt path, or `last` "
                          "with hydra.run.dir=<the run to resume>")


def results_in(output_dir: Path) -> list[str]:
    """The results of an earlier run that ``output_dir`` holds."""
    return [p for p in ("metrics.json", "checkpoints") if (output_dir / p).exists()]


def refuse_overwrite(output_dir: Path, resuming: bool) -> None:
    """A new run never writes into a folder that already holds results."""
    taken = results_in(output_dir)
    if taken and not resuming:
        raise ConfigError(
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


def fail(message: str) -> None:
    """Print one line to stderr and exit 2: what CLIs do with a user error (a message
    quoting another library's many-line error is folded onto that line)."""
    print("error: " + " ".join(message.split()), file=sys.stderr)
    sys.exit(2)


def _sweep_jobs(config: DictConfig) -> list[list[str]]:
    """Each multirun job's overrides (basic sweeper grammar: ``a=1,2 b=x,y``)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    overrides = OverridesParser.create().parse_overrides(list(config.hydra.overrides.task))
    return [job for batch in BasicSweeper.split_arguments(overrides, None) for job in batch]


class ValidateConfig(Callback):
    """Hydra callback: validate before the run/sweep dir exists."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        run_dir = Path(config.hydra.run.dir)
        try:
            validate(config)
            refuse_overwrite(run_dir, config.get("ckpt_path") is not None)
        except SGTError as err:
            fail(str(err))
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
