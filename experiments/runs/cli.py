"""What every command-line entry point does with a user error: one line, exit code 2, and
no partial run folder left behind."""

from __future__ import annotations

import shutil
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from functools import wraps
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from lightning_fabric.utilities.exceptions import MisconfigurationException
from omegaconf import DictConfig, OmegaConf

from experiments.runs.claim import LOCK, release_run_dir
from sgt.errors import SettingError, SGTError

F = TypeVar("F", bound=Callable[..., Any])
USER_ERROR = 2  # exit code of every sgt CLI for a user error (Hydra's own errors exit 1)


class RunInterrupted(SGTError):
    """A run stopped by a signal (SIGTERM from Slurm, ``timeout``, ``docker stop``)."""

    exit_code = 128 + 15  # the shell's code for a process ended by SIGTERM


class Terminated(BaseException):
    """A SIGTERM arrived. Not an ``Exception``: no ``except Exception`` on the way (a
    checkpoint reader's, a method trial's) takes it for an error of its own."""


@contextmanager
def interrupted_by_sigterm(message: Callable[[], str]) -> Iterator[None]:
    """Inside the block, a SIGTERM (Slurm, ``timeout``, ``docker stop``) stops the work,
    cleanup on the way runs, and :class:`RunInterrupted` with ``message()`` (what happened,
    what to run next) comes out: the CLI prints it and exits 143 instead of dying silently."""

    def stop(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # one line, however many signals
        raise Terminated

    earlier = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    except Terminated:
        raise RunInterrupted(message()) from None
    finally:
        signal.signal(signal.SIGTERM, earlier)


def fail(message: str, exit_code: int = USER_ERROR) -> NoReturn:
    """Print one line to stderr and exit 2: what CLIs do with a user error (a message
    quoting another library's many-line error is folded onto that line)."""
    print("error: " + " ".join(message.split()), file=sys.stderr)
    sys.exit(exit_code)


def user_error(err: BaseException) -> SGTError | None:
    """The :class:`SGTError` behind ``err`` (Hydra wraps what a ``_target_`` raises), if any."""
    while err is not None:
        if isinstance(err, SGTError):
            return err
        if not isinstance(err, InstantiationException):
            return None
        err = err.__cause__
    return None


def call_library(what: str, build: Callable[[], Any]) -> Any:
    """Run a library constructor (or call) for its checks; a user error it raises surfaces
    unwrapped, and torch's or Lightning's own complaints about arguments (an optimizer's lr,
    a trainer option) become a SettingError naming ``what``."""
    try:
        return build()
    except Exception as err:
        problem = user_error(err)
        if problem is not None:
            message = str(problem)
            if message.startswith(what.split(".")[0]):  # it names the setting already
                raise problem from None
            raise type(problem)(f"{what}: {message}") from None
        cause = err.__cause__ if isinstance(err, InstantiationException) else err
        if isinstance(cause, (ValueError, TypeError, MisconfigurationException)):
            raise SettingError(f"{what}: {cause}") from None
        raise


def _only_hydra_files(run_dir: Path) -> bool:
    return run_dir.is_dir() and all(p.name in (".hydra", LOCK) or p.suffix == ".log"
                                    for p in run_dir.iterdir())


def undo_start(run_dir: Path) -> None:
    """Remove what Hydra wrote for a start that failed: the run dir when it holds nothing
    else, or a resumed start's own ``.hydra/resume_<n>`` (the earlier results stay)."""
    if _only_hydra_files(run_dir):
        release_run_dir(run_dir, remove=True)
    elif HydraConfig.initialized() and HydraConfig.get().output_subdir not in (None, ".hydra"):
        subdir = run_dir / HydraConfig.get().output_subdir
        shutil.rmtree(subdir, ignore_errors=True)
        with suppress(OSError):  # .hydra/ itself, if this start created it
            subdir.parent.rmdir()


def output_dir_of(cfg: DictConfig) -> Path | None:
    """The job's folder, when Hydra set one."""
    return Path(cfg.paths.output_dir) if OmegaConf.select(cfg, "paths.output_dir") else None


def report_user_errors(task: F) -> F:
    """CLI wrapper: a :class:`SGTError` becomes one line and exit 2, and a run dir holding
    nothing but Hydra's bookkeeping is removed, so a failed start leaves no partial results."""

    @wraps(task)
    def run(cfg: DictConfig) -> Any:
        try:
            return task(cfg)
        except Exception as err:
            problem = user_error(err)
            if problem is None:
                raise
            run_dir = output_dir_of(cfg)
            if run_dir is not None and not isinstance(problem, RunInterrupted):
                undo_start(run_dir)
            fail(str(problem), getattr(problem, "exit_code", USER_ERROR))

    return run  # type: ignore[return-value]
