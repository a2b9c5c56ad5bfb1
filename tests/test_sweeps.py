"""Grids as Hydra sweeps: each job as safe as a single run, interrupted sweeps continue, a
requeued job resumes itself, DDP jobs and one-GPU-per-job launchers, the grid configs."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from experiments.runs.multirun import _descendants
from experiments.train import train
from tests.conftest import (
    CONFIGS,
    CPU_TEST_OVERRIDES,
    ROOT,
    SHARED_DATA,
    compose_config,
    needs_mnist,
)
from tests.test_reproducibility import results
from tests.test_resume import RUN, sigterm_when_paused, start_cli, wait_for

pytestmark = needs_mnist
SWEEP = [*CPU_TEST_OVERRIDES, "trainer.deterministic=true"]
PAUSE = ["+callbacks.pause._target_=tests.test_resume.PauseAt", "+callbacks.pause.batch=1"]


def env() -> dict[str, str]:
    return {**os.environ, "SGT_DATA_DIR": str(SHARED_DATA), "HYDRA_FULL_ERROR": "0",
            "OMP_NUM_THREADS": "1"}


def sweep(*overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "experiments.train", "-m", *SWEEP, *overrides],
                          cwd=ROOT, env=env(), capture_output=True, text=True, timeout=600)


def start_sweep(log: Path, *overrides: str) -> subprocess.Popen:
    with log.open("w") as out:
        return subprocess.Popen([sys.executable, "-m", "experiments.train", "-m", *SWEEP,
                                 *overrides], cwd=ROOT, env=env(), stdout=out,
                                stderr=subprocess.STDOUT)


def files(folder: Path) -> dict[str, str]:
    """Every file below ``folder`` and a hash of its bytes (lock files are not content)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".sgt.lock"}


def error_line(done: subprocess.CompletedProcess) -> str:
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    return errors[0]


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished two-job sweep (k = 0 and 0.5)."""
    folder = tmp_path_factory.mktemp("sweeps") / "done"
    done = sweep("sgt.k=0,0.5", f"hydra.sweep.dir={folder}")
    assert done.returncode == 0, done.stderr[-3000:]
    return folder


# -- a sweep never touches what is already there -------------------------------------------


def test_a_new_sweep_into_an_existing_one_changes_no_byte(finished: Path) -> None:
    before = files(finished)
    done = sweep("sgt.k=0.3,0.5", f"hydra.sweep.dir={finished}")
    assert done.returncode == 2
    assert error_line(done).startswith(f"error: {finished} already holds a sweep; choose "
                                       "another hydra.sweep.dir, or continue that sweep with")
    assert files(finished) == before


def test_two_jobs_sharing_one_folder_are_refused_before_any_file(finished: Path,
                                                                 tmp_path: Path) -> None:
    before = files(finished)
    done = sweep("sgt.k=0.1,0.3", f"hydra.sweep.dir={tmp_path / 'new'}",
                 f"hydra.sweep.subdir={finished / '0'}")
    assert done.returncode == 2
    assert "would share the folder" in error_line(done)
    assert files(finished) == before and not (tmp_path / "new").exists()


def test_continuing_with_changed_settings_is_refused_as_a_single_resume(finished: Path) -> None:
    before = files(finished)
    done = sweep("sgt.k=0,0.5", "sgt.lam=0.5", "ckpt_path=auto", f"hydra.sweep.dir={finished}")
    assert done.returncode == 2
    line = error_line(done)
    assert line.startswith("error: job 0 (sgt.k=0") and "sgt.lam (1.0 → 0.5)" in line
    assert files(finished) == before


def test_continuing_a_finished_sweep_retrains_nothing_and_keeps_its_files(
        finished: Path) -> None:
    before = files(finished)
    done = sweep("sgt.k=0,0.5", "ckpt_path=auto", f"hydra.sweep.dir={finished}")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("is a finished run") == 2
    after = files(finished)
    kept = {k: v for k, v in before.items() if k != "multirun.yaml"}
    assert {k: v for k, v in after.items() if k in kept} == kept  # nothing rewritten
    assert after["multirun_1.yaml"] == before["multirun.yaml"]  # the first start's, kept
    new = sorted(set(after) - set(before))
    assert all(k == "multirun_1.yaml" or "/.hydra/resume_1/" in k or k.endswith(".log")
               for k in new), new


# -- interrupted sweeps, requeued jobs ----------------------------------------------------


def test_sigterm_to_a_sweep_then_continuing_retrains_only_the_unfinished_job(
        tmp_path: Path) -> None:
    """Job 0 finishes; job 1 pauses in epoch 0 until the sweep's SIGTERM. The continue
    command it prints finishes job 1 and leaves job 0 as it was."""
    folder, flag, log = tmp_path / "sweep", tmp_path / "paused", tmp_path / "sweep.log"
    overrides = ["+callbacks.pause.epoch=5,0", *PAUSE, f"+callbacks.pause.flag={flag}",
                 f"hydra.sweep.dir={folder}"]
    sigterm_when_paused(start_sweep(log, *overrides), flag, log)
    text = log.read_text()
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "stopped by SIGTERM" in errors[0] and "Traceback" not in text
    assert f"ckpt_path=auto hydra.sweep.dir={folder}" in errors[0]
    assert (folder / "0" / "metrics.json").is_file() and not (folder / "1" / "metrics.json"
                                                               ).exists()
    job0 = files(folder / "0")
    done = sweep(*overrides, "ckpt_path=auto")  # the flag exists: no pause this time
    assert done.returncode == 0, done.stderr[-3000:]
    assert "is a finished run" in done.stdout  # job 0 is not trained again
    assert {k: v for k, v in files(folder / "0").items() if k in job0} == job0
    assert (folder / "1" / "metrics.json").is_file()


@pytest.mark.slow  # ~35 s: three trainings
def test_a_requeued_job_resumes_itself_to_the_uninterrupted_numbers(tmp_path: Path) -> None:
    """SIGTERM after the first epoch (Slurm's preemption); the same command, with
    ckpt_path=auto as a requeued job has it, finishes the run."""
    run, flag = tmp_path / "run", tmp_path / "paused"
    command = [f"hydra.run.dir={run}", "ckpt_path=auto", "+callbacks.pause.epoch=1",
               "+callbacks.pause._target_=tests.test_resume.PauseAt",
               "+callbacks.pause.batch=2", f"+callbacks.pause.flag={flag}"]
    train(compose_config("train.yaml", RUN, tmp_path / "reference"))  # uninterrupted
    sigterm_when_paused(start_cli(tmp_path / "first.log", *command), flag,
                        tmp_path / "first.log")
    assert (run / "checkpoints" / "last.ckpt").is_file() and not (run / "metrics.json").exists()
    again = start_cli(tmp_path / "again.log", *command)
    assert again.wait(timeout=300) == 0, (tmp_path / "again.log").read_text()[-2000:]
    assert results(run) == results(tmp_path / "reference")


@pytest.mark.slow  # ~150 s on 2 CPU cores
def test_sigterm_to_a_local_parallel_sweep_leaves_no_job_behind(tmp_path: Path) -> None:
    folder, log = tmp_path / "sweep", tmp_path / "sweep.log"
    flags = [tmp_path / f"paused{k}" for k in ("0", "0.5")]  # ${sgt.k} of each job
    proc = start_sweep(log, "hydra/launcher=local_parallel", f"hydra.sweep.dir={folder}",
                       "+callbacks.pause.epoch=0", *PAUSE,
                       f"+callbacks.pause.flag={tmp_path}/paused${{sgt.k}}", "sgt.k=0,0.5")
    try:
        for flag in flags:  # both jobs are training, each in its own process
            wait_for(flag, proc, log)
        workers = _descendants(proc.pid)
        assert len(workers) >= 2
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=300) == 128 + signal.SIGTERM
    finally:
        proc.kill()
    deadline = time.monotonic() + 30
    while any(Path(f"/proc/{pid}").exists() for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    alive = [pid for pid in workers if Path(f"/proc/{pid}/stat").exists()
             and Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] != "Z"]
    assert alive == []
    assert "continue it with python -m experiments.train -m" in log.read_text()


# -- DDP runs in a sweep, one GPU per job, Slurm --------------------------------------------


@pytest.mark.slow  # ~40 s: four processes (tests/test_ddp.py covers one DDP run)
def test_a_ddp_sweep_is_two_runs_of_two_processes_each(tmp_path: Path) -> None:
    folder = tmp_path / "sweep"
    done = sweep("sgt.k=0,0.5", "trainer=ddp", "trainer.accelerator=cpu",
                 "trainer.max_epochs=1", "trainer.limit_train_batches=2",
                 "trainer.limit_val_batches=1", "trainer.limit_test_batches=1",
                 "dataset.batch_size=16", f"hydra.sweep.dir={folder}")
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == ["0", "1"]
    for job in ("0", "1"):
        assert (folder / job / "train_ddp_process_1.log").is_file()  # its second process
        metrics = json.loads((folder / job / "metrics.json").read_text())
        assert (metrics["world_size"], metrics["batch_size"]) == (2, 16)
    assert done.stdout.count("on 2 processes (global batch 16, 8 each)") == 2
    assert done.stdout.count("GLOBAL_RANK: 1, MEMBER: 2/2") + done.stderr.count(
        "GLOBAL_RANK: 1, MEMBER: 2/2") == 2  # no DDP child started a sweep of its own


@pytest.mark.slow  # two CLI starts, ~23 s
def test_ddp_with_a_parallel_launcher_or_an_uneven_batch_is_refused(tmp_path: Path) -> None:
    done = sweep("sgt.k=0,0.5", "trainer=ddp", "hydra/launcher=local_parallel",
                 f"hydra.sweep.dir={tmp_path / 'a'}")
    assert done.returncode == 2 and "basic launcher" in error_line(done)
    done = sweep("sgt.k=0,0.5", "trainer=ddp", "dataset.batch_size=15",
                 f"hydra.sweep.dir={tmp_path / 'b'}")
    assert done.returncode == 2
    assert "dataset.batch_size=15 is the global batch of the 2 DDP processes" in error_line(done)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


CLAIM = """
import sys, time
from experiments.runs.devices import claim_free_gpu
try:
    print(claim_free_gpu(), flush=True)
except Exception as err:
    print("refused:", err, flush=True)
time.sleep(float(sys.argv[1]))
"""


@pytest.mark.slow  # ~35 s: two jobs side by side
def test_each_job_at_once_takes_its_own_gpu(tmp_path: Path) -> None:
    """Two GPUs (faked), three jobs at once: two distinct GPUs, the third refused; a GPU is
    free again once its job ends."""
    fake = {**env(), "SGT_GPU_COUNT": "2", "TMPDIR": str(tmp_path)}
    jobs = [subprocess.Popen([sys.executable, "-c", CLAIM, "3"], cwd=ROOT, env=fake,
                             stdout=subprocess.PIPE, text=True) for _ in range(2)]
    time.sleep(1.5)
    third = subprocess.run([sys.executable, "-c", CLAIM, "0"], cwd=ROOT, env=fake,
                           capture_output=True, text=True)
    taken = sorted(int(job.communicate()[0]) for job in jobs)
    assert taken == [0, 1]
    assert third.stdout.startswith("refused: trainer.devices=free_gpu: all 2 GPU(s)")
    later = subprocess.run([sys.executable, "-c", CLAIM, "0"], cwd=ROOT, env=fake,
                           capture_output=True, text=True)
    assert later.stdout.strip() == "0"
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIGS)):
        os.environ["SGT_GPU_COUNT"] = "3"
        try:
            cfg = compose("train.yaml", ["hydra/launcher=gpu_per_job", "trainer=gpu_per_job"],
                          return_hydra_config=True)
            assert cfg.hydra.launcher.n_jobs == 3 and cfg.trainer.devices == "free_gpu"
        finally:
            del os.environ["SGT_GPU_COUNT"]


@pytest.mark.slow  # ~11 s
def test_slurm_config_requeues_and_a_requeued_sweep_needs_ckpt_path_auto(tmp_path: Path) -> None:
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIGS)):
        cfg = compose("train.yaml", ["hydra/launcher=slurm_gpu", "grid=timeseries_table2"],
                      return_hydra_config=True)
    assert cfg.hydra.launcher._target_.endswith("SlurmLauncher")
    assert cfg.hydra.launcher.max_num_timeout == 3 and cfg.ckpt_path == "auto"
    done = sweep("sgt.k=0,0.5", "hydra/launcher=slurm_gpu", f"hydra.sweep.dir={tmp_path / 's'}")
    assert done.returncode == 2 and "add ckpt_path=auto" in error_line(done)
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize(("grid", "jobs"), [("mnist_comparison", 2), ("cifar10_k", 4),
                                           ("timeseries_table2", 112), ("eraser_table1", 2)])
def test_every_grid_composes_into_its_jobs(grid: str, jobs: int) -> None:
    from experiments.runs.multirun import sweep_overrides

    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIGS)):
        cfg = compose("train.yaml", [f"grid={grid}"], return_hydra_config=True)
        assert len(sweep_overrides(cfg)) == jobs and cfg.ckpt_path == "auto"
