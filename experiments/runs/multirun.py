"""A sweep (``python -m experiments.train -m …``) is as safe as a single run.

Before Hydra writes anything (its sweeper saves ``multirun.yaml``, each job's ``.hydra/``
files are saved before the job runs), :func:`check_sweep` enumerates every job exactly as
Hydra's basic sweeper will (``hydra.sweeper.params`` from a grid config plus the command
line), builds its config and folder, and refuses what a single run refuses: results in a
new job's folder, a folder a live run holds, a resume with other settings, and two jobs
sharing one folder. A continued sweep (``ckpt_path=auto`` into the same ``hydra.sweep.dir``)
keeps the earlier ``multirun.yaml`` as ``multirun_<n>.yaml`` and each resumed job's first
``.hydra/`` files; finished jobs are not trained again.

A SIGTERM to the sweep's process (Slurm, ``timeout``, ``kill``) is passed on to the jobs it
started (a local-parallel launcher's workers), which save their epoch and stop; then the
command that continues the sweep is printed and the process exits 143, leaving no job behind.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from experiments.runs.claim import LOCK, held_by_another
from experiments.runs.resume import check_start, results_in, resume_subdir
from sgt.errors import SettingError

MULTIRUN = "multirun.yaml"
CONTINUE = ("ckpt_path=", "hydra.sweep.dir=")  # what the continue command sets itself


@dataclass
class Job:
    """One job of a sweep: its overrides, its composed config (``hydra`` removed, as its task
    function gets it) and the folder it will run in."""

    num: int
    overrides: list[str]
    config: DictConfig
    folder: Path
    label: str = ""  # ``job <num> (<what sets it apart>)``: how messages name it


def sweep_overrides(config: DictConfig) -> list[list[str]]:
    """Each job's overrides, in Hydra's job order: the grid's ``hydra.sweeper.params``, then
    the command line (which narrows or extends them), split as the basic sweeper splits."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = OmegaConf.select(config, "hydra.sweeper.params") or {}
    arguments = [f"{k}={v}" for k, v in params.items()]
    arguments += list(config.hydra.overrides.task)
    parser = OverridesParser.create(config_loader=GlobalHydra.instance().config_loader())
    overrides = parser.parse_overrides(arguments)
    return [job for batch in BasicSweeper.split_arguments(overrides, None) for job in batch]


def sweep_jobs(config: DictConfig) -> list[Job]:
    """Every job of the sweep, its config loaded as the launcher will load it."""
    loader = GlobalHydra.instance().config_loader()
    jobs = []
    for num, overrides in enumerate(sweep_overrides(config)):
        job_cfg = loader.load_sweep_config(config, list(overrides))
        with open_dict(job_cfg):
            job_cfg.hydra.job.num, job_cfg.hydra.job.id = num, f"job_{num}"
        folder = Path(str(job_cfg.hydra.sweep.dir)) / str(job_cfg.hydra.sweep.subdir)
        HydraConfig.instance().set_config(job_cfg)  # ${hydra:…} in the job's own values
        task = OmegaConf.masked_copy(job_cfg, [k for k in job_cfg if k != "hydra"])
        with open_dict(task):
            task.paths.output_dir = str(folder)
        jobs.append(Job(num, list(overrides), task, folder))
    HydraConfig.instance().set_config(config)
    shared = set.intersection(*(set(job.overrides) for job in jobs)) if len(jobs) > 1 else set()
    for job in jobs:
        own = " ".join(o for o in job.overrides if o not in shared)
        job.label = f"job {job.num}" + (f" ({own})" if own else "")
    return jobs


def continuing(config: DictConfig) -> bool:
    """Whether this start continues a sweep (``ckpt_path=auto`` or ``last``)."""
    return config.get("ckpt_path") in ("auto", "last")


def continue_command(sweep_dir: Path) -> str:
    """The command that continues the sweep in ``sweep_dir``: its own overrides, with
    ``ckpt_path=auto`` (resume what has a checkpoint, start what has none, skip what is
    finished)."""
    saved = OmegaConf.load(sweep_dir / MULTIRUN) if (sweep_dir / MULTIRUN).is_file() else None
    overrides = [o for o in (saved.hydra.overrides.task if saved is not None else [])
                 if not o.lstrip("+~").startswith(CONTINUE)]
    return " ".join(["python -m experiments.train -m", *overrides, "ckpt_path=auto",
                     f"hydra.sweep.dir={sweep_dir}"])


def check_sweep(config: DictConfig) -> list[Job]:
    """Refuse, before anything is written, a sweep that would overwrite or mix results; see
    the module docstring. Returns the jobs (their configs are validated by the caller)."""
    sweep_dir = Path(str(config.hydra.sweep.dir))
    if (sweep_dir / MULTIRUN).is_file() and not continuing(config):
        raise SettingError(f"{sweep_dir} already holds a sweep; choose another hydra.sweep.dir, "
                           f"or continue that sweep with {continue_command(sweep_dir)}")
    jobs = sweep_jobs(config)
    seen: dict[Path, Job] = {}
    for job in jobs:
        other = seen.setdefault(job.folder.resolve(), job)
        if other is not job:
            raise SettingError(
                f"{other.label} and {job.label} would share the folder {job.folder}; give each "
                "its own (hydra.sweep.subdir: the default ${hydra.job.num} does)")
    for job in jobs:
        if held_by_another(job.folder):
            raise SettingError(f"{job.folder} ({job.label}) is in use by another run (a live "
                               f"process holds {LOCK} there); wait for it to end, or choose "
                               "another hydra.sweep.dir")
        try:
            check_start(job.config, job.folder)
        except SettingError as err:
            raise SettingError(f"{job.label}: {err}") from None
    return jobs


def keep_earlier_sweep_file(config: DictConfig) -> None:
    """A continued sweep's ``multirun.yaml`` is new: keep the earlier one as
    ``multirun_<n>.yaml`` before Hydra's sweeper writes it."""
    sweep_dir = Path(str(config.hydra.sweep.dir))
    if not (sweep_dir / MULTIRUN).is_file():
        return
    n = 1
    while (sweep_dir / f"multirun_{n}.yaml").exists():
        n += 1
    (sweep_dir / MULTIRUN).rename(sweep_dir / f"multirun_{n}.yaml")


_subdirs: dict[str, str] = {}  # job folder -> where its Hydra files go (decided once)


def hydra_subdir() -> str:
    """Where Hydra saves the running job's config: ``.hydra``, or ``.hydra/resume_<n>`` when
    its folder already holds results (its first start's files stay as they were). Decided
    once per job, when Hydra first asks."""
    folder = HydraConfig.get().runtime.output_dir
    if folder not in _subdirs:
        path = Path(folder)
        _subdirs[folder] = resume_subdir(path) if results_in(path) else ".hydra"
    return _subdirs[folder]


OmegaConf.register_new_resolver("sgt_hydra_subdir", hydra_subdir, replace=True)


def save_job_files_beside_results(config: DictConfig) -> None:
    """Each job decides, when Hydra saves its files, where they go (:func:`hydra_subdir`):
    an override every job's config is composed with (launchers compose each job afresh from
    the sweep's ``hydra.overrides.hydra``)."""
    if config.hydra.output_subdir == ".hydra":
        with read_write(config.hydra):
            config.hydra.overrides.hydra.append("hydra.output_subdir=${sgt_hydra_subdir:}")


def in_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def sweep_dir_of_job() -> Path:
    """The sweep folder of the job this process runs."""
    return Path(HydraConfig.get().sweep.dir)


def _children(pid: int) -> list[int]:
    """The live processes whose parent is ``pid`` (Linux ``/proc``)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                out.append(int(entry.name))
    return out


def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        children = _children(todo.pop())
        found += children
        todo += children
    return found


def stop_jobs(grace_s: float = 120.0) -> None:
    """SIGTERM every process this one started, wait for them to save and stop (``grace_s``
    at most, then SIGKILL), so none outlives the sweep."""
    pending = _descendants(os.getpid())
    for pid in pending:
        with _suppress_lookup():
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while pending and time.monotonic() < deadline:
        time.sleep(0.2)
        pending = [p for p in pending if Path(f"/proc/{p}").exists() and p in
                   _descendants(os.getpid())]
    for pid in _descendants(os.getpid()):
        with _suppress_lookup():
            os.kill(pid, signal.SIGKILL)


class _suppress_lookup:
    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, err: Any, tb: Any) -> bool:
        return kind is ProcessLookupError


def stop_on_sigterm(sweep_dir: Path) -> None:
    """Install the sweep process's SIGTERM handler (see the module docstring)."""

    def handler(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stop_jobs()
        print(f"error: the sweep was stopped by SIGTERM; its jobs saved their last complete "
              f"epoch: continue it with {continue_command(sweep_dir)}", file=sys.stderr,
              flush=True)
        os._exit(128 + signal.SIGTERM)

    signal.signal(signal.SIGTERM, handler)


__all__ = ["Job", "check_sweep", "continue_command", "sweep_jobs", "stop_on_sigterm"]
