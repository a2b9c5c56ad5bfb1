"""A run killed with SIGKILL resumes (``ckpt_path=last``) to the numbers of an uninterrupted
run, and no kill ever leaves a half-written checkpoint that a later run trusts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import hydra
import pytorch_lightning as pl
import torch

from experiments.train import train
from sgt.checkpoint_io import AtomicCheckpointIO, read_checkpoint, temporary_path
from sgt.models import MNISTNet
from sgt.module import SaliencyGuidedModule
from tests.conftest import CPU_TEST_OVERRIDES, ROOT, SHARED_DATA, compose_config, needs_mnist
from tests.test_reproducibility import results

# Two epochs of four batches; deterministic, so two runs agree to the last digit.
RUN = [*CPU_TEST_OVERRIDES, "trainer.deterministic=true", "trainer.max_epochs=2",
       "trainer.limit_train_batches=4", "trainer.limit_val_batches=1",
       "trainer.limit_test_batches=1"]


class PauseAt(pl.Callback):
    """Creates ``flag`` when training reaches ``batch`` of ``epoch``, then waits there (at
    most 10 minutes) until the process is killed or Lightning has received SIGTERM: a stop
    at a known point in the middle of an epoch. Once ``flag`` exists it never pauses again,
    so the same command continues the run."""

    def __init__(self, epoch: int, batch: int, flag: str) -> None:
        self.at, self.flag = (epoch, batch), Path(flag)

    def on_train_batch_start(self, trainer: pl.Trainer, module: pl.LightningModule,
                             batch: object, batch_idx: int) -> None:
        if (trainer.current_epoch, batch_idx) == self.at and not self.flag.exists():
            self.flag.touch()
            deadline = time.monotonic() + 600
            while not trainer.received_sigterm and time.monotonic() < deadline:
                time.sleep(0.05)


def start_cli(log: Path, *overrides: str) -> subprocess.Popen:
    """``python -m experiments.train`` in the background, its output going to ``log``."""
    env = {**os.environ, "SGT_DATA_DIR": str(SHARED_DATA), "HYDRA_FULL_ERROR": "0"}
    with log.open("w") as out:
        return subprocess.Popen([sys.executable, "-m", "experiments.train", *RUN, *overrides],
                                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


def wait_for(path: Path, proc: subprocess.Popen, log: Path, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, log.read_text()[-2000:]
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.2)


def sigterm_when_paused(proc: subprocess.Popen, flag: Path, log: Path) -> None:
    """SIGTERM ``proc`` once it has paused (``flag``), and check it exits 143."""
    try:
        wait_for(flag, proc, log)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=300) == 128 + signal.SIGTERM
    finally:
        proc.kill()


@needs_mnist
def test_killed_mid_epoch_resumes_to_the_uninterrupted_numbers(tmp_path: Path) -> None:
    run, flag = tmp_path / "run", tmp_path / "paused"
    log = tmp_path / "killed.log"
    killed = start_cli(log, f"hydra.run.dir={run}", "+callbacks.pause.epoch=1",
                       "+callbacks.pause._target_=tests.test_resume.PauseAt",
                       "+callbacks.pause.batch=2", f"+callbacks.pause.flag={flag}")
    try:  # meanwhile, the same run uninterrupted, in this process
        train(compose_config("train.yaml", RUN, tmp_path / "reference"))
        wait_for(flag, killed, log)
    finally:
        killed.kill()  # SIGKILL: no handler, no cleanup
        killed.wait()
    assert killed.returncode == -signal.SIGKILL
    assert not (run / "metrics.json").exists()
    last = read_checkpoint(run / "checkpoints" / "last.ckpt")  # complete, loadable
    assert (last["epoch"], last["global_step"]) == (0, 4)  # epoch 0 done; 1 was cut short
    first_config = (run / ".hydra" / "config.yaml").read_text()

    log = tmp_path / "resumed.log"
    resumed = start_cli(log, f"hydra.run.dir={run}", "ckpt_path=last")
    assert resumed.wait(timeout=300) == 0, log.read_text()[-2000:]
    assert results(run) == results(tmp_path / "reference")
    assert (run / ".hydra" / "config.yaml").read_text() == first_config
    assert "ckpt_path=last" in (run / ".hydra" / "resume_1" / "overrides.yaml").read_text()


# Dies (SIGKILL) after writing the temporary file, before renaming it over the target.
SAVE_AND_DIE = """
import os, signal, sys, torch
from sgt.checkpoint_io import AtomicCheckpointIO
os.fsync = lambda fd: os.kill(os.getpid(), signal.SIGKILL)
AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.ones(3)}}, sys.argv[1])
"""


def test_kill_while_saving_keeps_the_previous_checkpoint(tmp_path: Path) -> None:
    io, path = AtomicCheckpointIO(), tmp_path / "last.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}}, path)
    proc = subprocess.run([sys.executable, "-c", SAVE_AND_DIE, str(path)], cwd=ROOT)
    assert proc.returncode == -signal.SIGKILL
    assert torch.equal(io.load_checkpoint(path)["state_dict"]["w"], torch.zeros(3))
    leftover = temporary_path(path)
    assert leftover.is_file()  # the interrupted write is there, but never as a *.ckpt
    assert [p.name for p in tmp_path.glob("*.ckpt")] == ["last.ckpt"]
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}}, path)
    assert not leftover.exists()  # the next save of that name replaces it
    assert torch.equal(io.load_checkpoint(path)["state_dict"]["w"], torch.ones(3))


def test_the_trainer_saves_through_atomic_io(train_cfg) -> None:
    trainer = hydra.utils.instantiate(train_cfg().trainer)
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)


def test_best_validation_accuracy_survives_a_checkpoint() -> None:
    saved = SaliencyGuidedModule(MNISTNet(), k=0.0)
    saved.val_acc_best(torch.tensor(0.75))
    restored = SaliencyGuidedModule(MNISTNet(), k=0.0)
    restored.load_state_dict(saved.state_dict())
    restored.val_acc_best(torch.tensor(0.5))  # a worse epoch after the resume
    assert float(restored.val_acc_best.compute()) == 0.75


@needs_mnist
def test_sigterm_exits_non_zero_and_says_how_to_resume(tmp_path: Path) -> None:
    """What Slurm, `timeout` and `docker stop` send: the run must not report success."""
    run, flag, log = tmp_path / "run", tmp_path / "paused", tmp_path / "term.log"
    proc = start_cli(log, f"hydra.run.dir={run}", "trainer.enable_progress_bar=false",
                     "+callbacks.pause._target_=tests.test_resume.PauseAt",
                     "+callbacks.pause.epoch=1", "+callbacks.pause.batch=2",
                     f"+callbacks.pause.flag={flag}")
    sigterm_when_paused(proc, flag, log)
    errors = [line for line in log.read_text().splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "stopped by SIGTERM in epoch 1" in errors[0], log.read_text()
    assert f"ckpt_path=auto hydra.run.dir={run}" in errors[0]
    assert "Traceback" not in log.read_text()
    assert not (run / "metrics.json").exists()
    last = read_checkpoint(run / "checkpoints" / "last.ckpt")  # as after SIGKILL: epoch 0
    assert (last["epoch"], last["global_step"]) == (0, 4)
