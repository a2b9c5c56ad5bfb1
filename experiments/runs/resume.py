"""Resuming a run: from its own checkpoint, with its own settings (unless asked otherwise,
and then recorded), never losing what it already wrote, and never re-doing a finished run.

A run started from another run's checkpoint (``ckpt_path=<run>/checkpoints/<name>.ckpt`` into
a new run dir) follows the same rules against that run's saved settings, and records where
its weights came from (``started_from`` in ``metrics.json``).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from experiments.runs.files import METRICS, read_metrics, saved_config
from sgt.errors import SettingError

# Keys a resume may change freely: where things are, how the run is shown or logged, the
# hardware, and max_epochs (raising it is how a finished run is trained longer); of the
# callbacks, only model selection and early stopping are part of the run's settings.
FREE_KEYS = ("paths", "hydra", "ckpt_path", "allow_changed_settings", "test", "eval", "logger",
             "task_name", "trainer.max_epochs", "trainer.enable_progress_bar",
             "trainer.enable_model_summary", "trainer.accelerator", "trainer.devices",
             "callbacks")
COMPARED_CALLBACKS = ("callbacks.model_checkpoint", "callbacks.last_checkpoint",
                      "callbacks.early_stopping")


RESUMING = ("last", "auto")  # ckpt_path values that resume this run dir's own run


def source_run(ckpt: str | Path) -> Path:
    """The run dir that wrote ``ckpt``: experiments.train saves into ``<run>/checkpoints/``."""
    return Path(ckpt).resolve().parent.parent


def from_this_run(ckpt: str | Path, run_dir: Path) -> bool:
    """Whether ``ckpt`` is one of ``run_dir``'s own checkpoints (a resume, not a start)."""
    return source_run(ckpt) == run_dir.resolve()


def origin_checkpoint(run_dir: Path) -> str | None:
    """The other run's checkpoint that ``run_dir``'s run was started from, if it was."""
    saved = saved_config(run_dir)
    ckpt = OmegaConf.load(saved).get("ckpt_path") if saved.is_file() else None
    if ckpt in (None, *RESUMING) or from_this_run(ckpt, run_dir):
        return None
    if not Path(ckpt).is_file():
        raise SettingError(f"{run_dir} was started from {ckpt}, which no longer exists, and "
                           "has no checkpoints/last.ckpt of its own yet; put that checkpoint "
                           "back, or start a new run in another hydra.run.dir")
    return str(ckpt)


def resolve_ckpt(cfg: DictConfig, run_dir: Path) -> str | None:
    """``last`` means this run dir's ``checkpoints/last.ckpt``; ``auto`` means it if there
    is one, else where the run started (what a requeued or continued job needs): the other
    run's checkpoint it was started from, or nothing (a fresh start). ``last`` falls back to
    that checkpoint too."""
    ckpt = cfg.get("ckpt_path")
    if ckpt not in RESUMING:
        return ckpt
    last = run_dir / "checkpoints" / "last.ckpt"
    if last.is_file():
        return str(last)
    origin = origin_checkpoint(run_dir)
    if origin is not None or ckpt == "auto":
        return origin
    raise SettingError(f"ckpt_path=last but {last} does not exist; pass "
                       "hydra.run.dir=<the run dir to resume>, or ckpt_path=auto to start "
                       "afresh when there is nothing to resume")


def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(tree, Mapping):
        return {prefix: tree}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        out.update(_flat(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def _under(key: str, prefixes: tuple[str, ...]) -> bool:
    return any(key == k or key.startswith(k + ".") for k in prefixes)


def _free(key: str) -> bool:
    return _under(key, FREE_KEYS) and not _under(key, COMPARED_CALLBACKS)


def changed_settings(saved: DictConfig, now: DictConfig) -> dict[str, tuple[Any, Any]]:
    """``{key: (the run's value, this start's)}`` for every setting that differs."""
    old = _flat(OmegaConf.to_container(saved, resolve=False))
    new = _flat(OmegaConf.to_container(now, resolve=False))
    return {k: (old.get(k), new.get(k)) for k in sorted(old.keys() | new.keys())
            if not _free(k) and old.get(k) != new.get(k)}


def resume_command(run_dir: Path, *changes: str) -> str:
    """The command that resumes ``run_dir`` with the overrides it was started with, and
    ``changes`` (``key=value``) in place of the run's own values of those keys."""
    replaced = tuple(change.split("=", 1)[0] + "=" for change in changes)
    overrides_file = run_dir / ".hydra" / "overrides.yaml"
    overrides = [o for o in (OmegaConf.load(overrides_file) if overrides_file.is_file() else [])
                 if not o.lstrip("+~").startswith(("ckpt_path=", "hydra.run.dir=", *replaced))]
    return " ".join(["python -m experiments.train", *overrides, *changes, "ckpt_path=auto",
                     f"hydra.run.dir={run_dir}"])


def check_resume(cfg: DictConfig, run_dir: Path, ckpt: str) -> dict[str, tuple[Any, Any]]:
    """Refuse to go on from ``ckpt`` with settings other than those of the run that wrote it
    (this run dir's own, or another run's), unless ``allow_changed_settings=true``; returns
    the changes (recorded by the caller). A checkpoint with no run config beside it cannot
    be checked (:func:`started_from` says so)."""
    source = source_run(ckpt)
    if not saved_config(source).is_file():
        return {}
    changes = changed_settings(OmegaConf.load(saved_config(source)), cfg)
    if changes and not cfg.get("allow_changed_settings"):
        shown = list(changes.items())[:6]
        listed = ", ".join(f"{k} ({old!r} → {new!r})" for k, (old, new) in shown)
        more = f" and {len(changes) - 6} more" if len(changes) > 6 else ""
        if source == run_dir.resolve():
            what = f"resuming {run_dir} with settings that differ from its own"
            fix = f"resume with its own ({resume_command(run_dir)})"
        else:
            what = (f"starting from {ckpt}, a checkpoint of the run {source}, with settings "
                    "that differ from that run's")
            fix = f"use that run's settings ({source / '.hydra' / 'overrides.yaml'})"
        raise SettingError(f"{what}: {listed}{more}; {fix}, or add "
                           "allow_changed_settings=true to accept and record them")
    return changes


def recorded(changes: Mapping[str, tuple[Any, Any]]) -> dict[str, dict[str, Any]]:
    """Changed settings as metrics.json records them."""
    return {k: {"run": old, "now": new} for k, (old, new) in changes.items()}


def started_from(ckpt: str, run_dir: Path, position: Mapping[str, Any],
                 changes: Mapping[str, tuple[Any, Any]]) -> dict[str, Any] | None:
    """What metrics.json records of a start from another run's checkpoint: the file, its
    run, where its training stood (``position``) and the settings changed from that run's;
    ``None`` for a resume of ``run_dir``'s own. A checkpoint with no run config beside it is
    accepted unchecked, with a warning."""
    if from_this_run(ckpt, run_dir):
        return None
    source = source_run(ckpt)
    checked = saved_config(source).is_file()
    if not checked:
        warnings.warn(f"{ckpt} has no run config beside it ({saved_config(source)}), so its "
                      "settings were not compared with this run's; metrics.json records it "
                      "in started_from with settings_checked: false", stacklevel=2)
    return {"checkpoint": str(Path(ckpt).resolve()), "run_dir": str(source) if checked else None,
            **position, "settings_checked": checked, "changed_settings": recorded(changes)}


def finished(cfg: DictConfig, run_dir: Path) -> dict[str, Any] | None:
    """The metrics of a finished run that this start would not train further, else ``None``.

    A run is finished once it wrote ``metrics.json``; it is trained further only when
    ``trainer.max_epochs`` now allows more epochs than it ran and it did not stop early.
    """
    done = read_metrics(run_dir)
    if not done:
        return None
    max_epochs = OmegaConf.select(cfg, "trainer.max_epochs")
    more = max_epochs == -1 or (max_epochs or 0) > done.get("epochs", 0)
    return None if more and not done.get("stopped_early") else done


def finished_message(run_dir: Path, done: Mapping[str, Any]) -> str:
    epochs = done.get("epochs")
    if done.get("stopped_early"):
        return (f"{run_dir} is a finished run: early stopping ended it after {epochs} epochs; "
                "nothing was changed (a new run in another hydra.run.dir trains afresh)")
    return (f"{run_dir} is a finished run ({epochs} epochs, max_epochs reached); nothing was "
            f"changed. To train it longer: "
            f"{resume_command(run_dir, f'trainer.max_epochs=<more than {epochs}>')}")


def results_in(output_dir: Path) -> list[str]:
    """The results of an earlier run that ``output_dir`` holds."""
    return [p for p in (METRICS, "checkpoints") if (output_dir / p).exists()]


def refuse_overwrite(output_dir: Path, resuming: bool) -> None:
    """A new run never writes into a folder that already holds results."""
    taken = results_in(output_dir)
    if taken and not resuming:
        raise SettingError(
            f"{output_dir} already holds results ({', '.join(taken)}); choose another "
            "hydra.run.dir, or resume that run with ckpt_path=auto"
        )


def resume_subdir(run_dir: Path) -> str:
    """Where Hydra saves a resumed start's config: ``.hydra/resume_<n>``, so the first
    start's ``.hydra/config.yaml`` (what evaluation rebuilds the run from) stays untouched."""
    n = 1
    while (run_dir / ".hydra" / f"resume_{n}").exists():
        n += 1
    return f".hydra/resume_{n}"


def keeps_first_config(config: DictConfig, run_dir: Path) -> bool:
    """Whether this start saves its ``.hydra/`` files in a :func:`resume_subdir`: it goes
    on with results in ``run_dir``, or resumes a run whose first start saved its settings
    (which say where its weights started, should it have no checkpoint of its own yet)."""
    return bool(results_in(run_dir)) or (config.get("ckpt_path") in RESUMING
                                         and saved_config(run_dir).is_file())


def check_start(config: DictConfig, run_dir: Path) -> dict[str, Any] | None:
    """Refuse what would overwrite or mix results: a new run (or one started from another
    run's checkpoint) into a folder with results, a resume or start from a checkpoint with
    other settings than its run's. Returns the metrics of a finished run that this start
    would not train further (``None`` otherwise)."""
    ckpt = config.get("ckpt_path")
    refuse_overwrite(run_dir, ckpt in RESUMING or (ckpt is not None
                                                   and from_this_run(ckpt, run_dir)))
    if ckpt is None:
        return None
    resolved = resolve_ckpt(config, run_dir)
    if resolved is not None:
        check_resume(config, run_dir, resolved)
    return finished(config, run_dir)
