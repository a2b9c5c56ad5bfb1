"""Which device a job runs on: one GPU per job of a sweep, and a CPU job's share of the cores.

``trainer=gpu_per_job`` (``trainer.devices: free_gpu``) takes the first GPU that no other sgt
run on this machine holds, through one lock file per GPU in a folder of this machine's
temporary directory; the lock lasts as long as the process, so a job of a local-parallel sweep
(``hydra/launcher=gpu_per_job``, as many jobs at once as GPUs) never shares its GPU.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch
from filelock import BaseFileLock
from omegaconf import OmegaConf

from experiments.runs.claim import try_lock
from sgt.errors import SettingError

FREE_GPU = "free_gpu"
# "gpu" -> (the GPU this process holds, its lock, held until the process ends)
_held: dict[str, tuple[int, BaseFileLock]] = {}


def gpu_count() -> int:
    """GPUs to share out: ``SGT_GPU_COUNT`` when set (the first n), else all visible."""
    given = os.environ.get("SGT_GPU_COUNT")
    if given is None:
        return torch.cuda.device_count()
    if not given.isdigit():
        raise SettingError(f"SGT_GPU_COUNT must be a whole number of GPUs, got {given!r}")
    return int(given)


def lock_folder() -> Path:
    folder = Path(tempfile.gettempdir()) / f"sgt-gpus-{os.getuid()}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def claim_free_gpu() -> int:
    """The index of a GPU no other sgt run on this machine holds, now held by this process."""
    if "gpu" in _held:
        return _held["gpu"][0]
    count = gpu_count()
    for index in range(count):
        lock = try_lock(lock_folder() / f"gpu{index}.lock")
        if lock is not None:
            _held["gpu"] = (index, lock)
            return index
    raise SettingError(f"trainer.devices=free_gpu: all {count} GPU(s) of this machine are held "
                       "by other sgt runs; run fewer jobs at once (hydra.launcher.n_jobs) or "
                       "wait for one to end" if count else
                       "trainer.devices=free_gpu but this machine has no CUDA GPU; use "
                       "trainer=cpu")


def trainer_devices(devices: object) -> object:
    """``trainer.devices`` as Lightning takes it: ``free_gpu`` becomes ``[<a free GPU>]``."""
    return [claim_free_gpu()] if devices == FREE_GPU else devices


def share_cpu_threads(parallel_jobs: int) -> None:
    """A CPU job among ``parallel_jobs`` running at once takes its share of the cores."""
    if parallel_jobs > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // parallel_jobs))


OmegaConf.register_new_resolver("sgt_gpu_count", lambda: max(1, gpu_count()), replace=True)

__all__ = ["FREE_GPU", "claim_free_gpu", "gpu_count", "share_cpu_threads", "trainer_devices"]
