"""Checkpoints from elsewhere, and interruptions (issue 28).

A run started from another run's checkpoint is checked against that run's settings and
records where its weights came from; a disk that refuses a checkpoint ends the run with one
line whose resume command works; a SIGTERM after training says how to test the complete
checkpoints, and that command writes metrics.json without training again.

The CLI cases inject their fault through a callback given as a Hydra override
(``+callbacks.<name>._target_=tests.test_foreign_checkpoints.<Class>``), in the real
``python -m experiments.train`` process.
"""

from __future__ import annotations

import copy
import csv
import errno
import json
import os
import re
import shlex
import shutil
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import pytest
import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf, open_dict
from pytorch_lightning.loggers import csv_logs

import sgt.checkpoint_io as checkpoint_io
from experiments.runs.checks import ValidateConfig
from experiments.train import train
from sgt.checkpoint_io import AtomicCheckpointIO, read_checkpoint, temporary_path
from sgt.errors import SettingError, StorageError
from tests.conftest import compose_config
from tests.test_hostile_inputs import snapshot, tiny_mnist
from tests.test_reliability import QUICK, cli, one_error


# -- faults, injected into the CLI process through its callbacks --------------------------
class _FullFile:
    """A file on a disk with ``room`` bytes left: a write beyond them fails with ``code``."""

    def __init__(self, file: IO[bytes], code: int, room: int = 1000) -> None:
        self.file, self.code, self.room = file, code, room

    def write(self, data: bytes) -> int:
        if len(data) > self.room:
            raise OSError(self.code, os.strerror(self.code))
        self.room -= len(data)
        return self.file.write(data)

    def flush(self) -> None:
        self.file.flush()


class FullDisk(pl.Callback):
    """From epoch ``epoch`` on, the disk is full (``code``, an errno): the next write of the
    checkpoint ``name`` fails after its first bytes, and so does every later write of the
    CSV logger. ``flag`` is made then; once it exists the disk has room again, so the same
    command (the printed resume command) runs normally."""

    def __init__(self, name: str, epoch: int, code: int, flag: str) -> None:
        self.name, self.epoch, self.code, self.flag = name, epoch, code, Path(flag)
        self.now = 0
        real = checkpoint_io.atomic_write

        @contextmanager
        def atomic_write(path: Path, *args: Any, **kwargs: Any) -> Iterator[Any]:
            with real(path, *args, **kwargs) as f:
                yield _FullFile(f, self.code) if self._full(Path(path)) else f

        checkpoint_io.atomic_write = atomic_write

    def _full(self, path: Path) -> bool:
        if path.name != self.name or self.now < self.epoch or self.flag.exists():
            return False
        self.flag.touch()

        def refuse(*args: Any, **kwargs: Any) -> None:
            raise OSError(self.code, os.strerror(self.code))

        csv_logs.ExperimentWriter.save = refuse
        return True

    def on_train_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.now = trainer.current_epoch


class SigtermAtTest(pl.Callback):
    """Sends this process SIGTERM when testing starts (after training), once: ``flag`` is
    made then, and the same command later tests without a signal."""

    def __init__(self, flag: str) -> None:
        self.flag = Path(flag)

    def on_test_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if not self.flag.exists():
            self.flag.touch()
            os.kill(os.getpid(), signal.SIGTERM)


def printed_overrides(line: str, until: str | None = None) -> list[str]:
    """The overrides of the ``python -m experiments.train`` command an ``error:`` line gives
    after ``resume with`` (and before ``until``): what a user would paste."""
    command = line.split("resume with ", 1)[1]
    words = shlex.split(command.split(until, 1)[0] if until else command)
    assert words[:3] == ["python", "-m", "experiments.train"], command
    return words[3:]


def logged(run: Path, key: str) -> float:
    """The last value of ``key`` that the run's CSV logs hold (each start adds a version)."""
    values = []
    for log in sorted((run / "csv").glob("version_*/metrics.csv"),
                      key=lambda path: int(path.parent.name.split("_")[1])):
        with log.open() as f:
            values += [float(row[key]) for row in csv.DictReader(f) if row.get(key)]
    return values[-1]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_mnist(tmp_path_factory.mktemp("data"))


# -- 1. a start from another run's checkpoint ----------------------------------------------
@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory, data: Path) -> Path:
    """A finished one-epoch run (k = 0) with its saved settings, as the CLI leaves them."""
    run = tmp_path_factory.mktemp("source") / "run"
    cfg = compose_config("train.yaml", [*QUICK, "sgt=none"], run, data)
    train(cfg)
    (run / ".hydra").mkdir()
    OmegaConf.save(cfg, run / ".hydra" / "config.yaml")
    return run


def start_from(ckpt: Path | str, run: Path, data: Path, *overrides: str) -> dict[str, Any]:
    """Train ``run`` from ``ckpt`` (the source's one epoch: one more with max_epochs=2)."""
    return train(compose_config("train.yaml", [*QUICK, f"ckpt_path={ckpt}", *overrides], run,
                                data))


def test_other_settings_than_the_checkpoints_run_are_refused_naming_them(
        source: Path, data: Path, tmp_path: Path) -> None:
    before = snapshot(source)
    ckpt = source / "checkpoints" / "last.ckpt"
    with pytest.raises(SettingError) as refused:
        start_from(ckpt, tmp_path / "new", data, "sgt.k=0.3", "sgt.lam=0.5",
                   "trainer.max_epochs=2")
    line = str(refused.value)
    assert f"starting from {ckpt}, a checkpoint of the run {source.resolve()}" in line
    assert "sgt.k (0.0 → 0.3), sgt.lam (1.0 → 0.5)" in line
    assert "allow_changed_settings=true" in line and "\n" not in line
    assert not (tmp_path / "new").exists()
    assert snapshot(source) == before


def test_changed_settings_when_asked_are_recorded_with_where_the_weights_came_from(
        source: Path, data: Path, tmp_path: Path) -> None:
    before = snapshot(source)
    ckpt = source / "checkpoints" / "last.ckpt"
    metrics = start_from(ckpt, tmp_path / "new", data, "sgt.k=0.3", "trainer.max_epochs=2",
                         "allow_changed_settings=true")
    origin = {"checkpoint": str(ckpt.resolve()), "run_dir": str(source.resolve()),
              "epoch": 0, "global_step": 2, "settings_checked": True,
              "changed_settings": {"sgt.k": {"run": 0.0, "now": 0.3}}}
    assert metrics["started_from"] == origin and "resumed_with_changes" not in metrics
    assert metrics["epochs"] == 2  # the other run's epoch, then one more
    # the new run's checkpoints carry it, so its own resume records it too
    last = read_checkpoint(tmp_path / "new" / "checkpoints" / "last.ckpt", weights_only=False)
    assert last["callbacks"]["RunRecord"]["started_from"] == origin
    assert snapshot(source) == before  # the other run's files are never touched


def test_a_bare_checkpoint_is_accepted_unchecked_with_a_warning(
        source: Path, data: Path, tmp_path: Path) -> None:
    bare = tmp_path / "downloads" / "model.ckpt"
    bare.parent.mkdir()
    shutil.copy(source / "checkpoints" / "last.ckpt", bare)
    with pytest.warns(UserWarning, match="model.ckpt has no run config beside it"):
        metrics = start_from(bare, tmp_path / "new", data, "sgt.k=0.3")  # tests only
    assert metrics["started_from"] == {
        "checkpoint": str(bare.resolve()), "run_dir": None, "epoch": 0, "global_step": 2,
        "settings_checked": False, "changed_settings": {}}


def test_another_runs_checkpoint_into_a_folder_with_results_is_refused(
        source: Path, data: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    (other / "checkpoints").mkdir(parents=True)
    (other / "metrics.json").write_text("{}")
    with pytest.raises(SettingError, match="already holds results .*choose another "
                                           "hydra.run.dir"):
        start_from(source / "checkpoints" / "last.ckpt", other, data, "sgt=none")


def test_a_resume_before_its_first_checkpoint_starts_again_from_the_other_runs(
        source: Path, data: Path, tmp_path: Path) -> None:
    """Killed in its first epoch, a run started from another's checkpoint has no last.ckpt:
    ``ckpt_path=auto`` (the printed resume command) starts it from that checkpoint again,
    not afresh."""
    ckpt, run = source / "checkpoints" / "last.ckpt", tmp_path / "new"
    first = compose_config("train.yaml", [*QUICK, "sgt=none", "trainer.max_epochs=2",
                                          f"ckpt_path={ckpt}"], run, data)
    (run / ".hydra").mkdir(parents=True)
    OmegaConf.save(first, run / ".hydra" / "config.yaml")  # what the killed start left
    resumed = compose_config("train.yaml", [*QUICK, "sgt=none", "trainer.max_epochs=2",
                                            "ckpt_path=auto"], run, data)
    cli_config = copy.deepcopy(resumed)  # as Hydra's callback sees it, before saving .hydra/
    with open_dict(cli_config):
        cli_config.hydra = {"run": {"dir": str(run)}, "output_subdir": ".hydra"}
    ValidateConfig().on_run_start(cli_config)
    assert cli_config.hydra.output_subdir == ".hydra/resume_1"  # the first config is kept
    metrics = train(resumed)
    assert metrics["started_from"]["checkpoint"] == str(ckpt.resolve())
    assert metrics["epochs"] == 2


# -- 2. a disk that refuses a checkpoint ---------------------------------------------------
@pytest.mark.parametrize(("code", "fix"), [
    (errno.EDQUOT, "Disk quota exceeded (EDQUOT); any checkpoint written before it is "
                   "intact: free space for"),
    (errno.EROFS, "Read-only file system (EROFS); any checkpoint written before it is "
                  "intact: make"),
    (errno.EIO, "Input/output error (EIO); any checkpoint written before it is intact: "
                "check the disk that holds"),
])
def test_a_refused_write_inside_torch_save_is_known_by_its_errno(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int, fix: str) -> None:
    """torch's zip writer turns the file's OSError into a RuntimeError without the errno;
    the errno still decides the message, and the earlier file stays whole."""
    io, path = AtomicCheckpointIO(), tmp_path / "last.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}}, path)
    real = checkpoint_io.atomic_write

    @contextmanager
    def full(target: Path, *args: Any, **kwargs: Any) -> Iterator[Any]:
        with real(target, *args, **kwargs) as f:
            yield _FullFile(f, code)

    monkeypatch.setattr(checkpoint_io, "atomic_write", full)
    with pytest.raises(RuntimeError), open(os.devnull, "wb") as devnull:
        torch.save({"w": torch.ones(10_000)}, _FullFile(devnull, code))  # torch's own error
    with pytest.raises(StorageError,
                       match=re.escape(f"cannot write checkpoint {path}: {fix} {tmp_path}")):
        io.save_checkpoint({"state_dict": {"w": torch.ones(10_000)}}, path)
    assert torch.equal(io.load_checkpoint(path)["state_dict"]["w"], torch.zeros(3))
    assert not temporary_path(path).exists()
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_the_best_checkpoint_replaced_in_a_failed_epoch_is_kept(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Lightning's order at an epoch's end: the new best, the old best removed, last.ckpt.
    The removal waits for last.ckpt; if that write fails, the files stay those that the
    previous last.ckpt names."""
    io = AtomicCheckpointIO()

    def epoch_end(epoch: int) -> None:
        state = {"state_dict": {"w": torch.full((3,), float(epoch))}, "epoch": epoch,
                 "global_step": 2 * (epoch + 1)}
        io.save_checkpoint(state, tmp_path / f"epoch_{epoch:03d}.ckpt")
        if epoch:
            io.remove_checkpoint(tmp_path / f"epoch_{epoch - 1:03d}.ckpt")
            assert (tmp_path / f"epoch_{epoch - 1:03d}.ckpt").exists()  # not yet
        io.save_checkpoint(state, tmp_path / "last.ckpt")

    epoch_end(0)
    epoch_end(1)  # a good epoch: the old best goes once last.ckpt is written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch_001.ckpt", "last.ckpt"]
    real = checkpoint_io.atomic_write

    @contextmanager
    def full(target: Path, *args: Any, **kwargs: Any) -> Iterator[Any]:
        with real(target, *args, **kwargs) as f:
            yield _FullFile(f, errno.ENOSPC) if Path(target).name == "last.ckpt" else f

    monkeypatch.setattr(checkpoint_io, "atomic_write", full)
    with pytest.raises(StorageError, match="No space left on device"):
        epoch_end(2)
    io.teardown()  # what Lightning does after the error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch_001.ckpt", "last.ckpt"]
    assert io.load_checkpoint(tmp_path / "last.ckpt")["epoch"] == 1


def test_an_error_of_torch_with_no_refused_write_behind_it_keeps_its_traceback(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Known by errno, not by words: a RuntimeError that merely says "write" is a bug."""
    def save(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed")

    monkeypatch.setattr(checkpoint_io.torch, "save", save)
    with pytest.raises(RuntimeError, match="file write failed") as raised:
        AtomicCheckpointIO().save_checkpoint({"state_dict": {}}, tmp_path / "x.ckpt")
    assert not isinstance(raised.value, StorageError)
    assert list(tmp_path.iterdir()) == []


# -- 3. SIGTERM after training ------------------------------------------------------------
def test_a_trained_run_without_metrics_resumes_to_the_same_metrics(
        data: Path, tmp_path: Path) -> None:
    """The in-process variant: metrics.json lost after a complete training (a SIGTERM in the
    test, a full disk at the end); the resume writes what the uninterrupted run wrote."""
    cfg = compose_config("train.yaml", QUICK, tmp_path / "run", data)
    first = train(cfg)
    (tmp_path / "run" / "metrics.json").unlink()
    checkpoints = snapshot(tmp_path / "run" / "checkpoints")
    again = train(compose_config("train.yaml", [*QUICK, "ckpt_path=auto"], tmp_path / "run",
                                 data))
    assert again == first
    assert snapshot(tmp_path / "run" / "checkpoints") == checkpoints


# -- 2 and 3 through the CLI: a full disk, then SIGTERM while testing -----------------------
def test_a_full_disk_then_a_sigterm_while_testing_each_print_the_command_that_goes_on(
        data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 28's examples in one run: the disk fills while epoch 1's last.ckpt is written
    (the CSV logger's last write fails too); the printed command resumes, trains epoch 1
    and is stopped by SIGTERM as testing starts; that printed command (run here, in this
    process, to keep the test short) tests without training and writes metrics.json."""
    run, full, termed = tmp_path / "run", tmp_path / "full", tmp_path / "termed"
    proc = cli("train", *QUICK, "trainer.max_epochs=2", f"hydra.run.dir={run}",
               "+callbacks.full._target_=tests.test_foreign_checkpoints.FullDisk",
               "+callbacks.full.name=last.ckpt", "+callbacks.full.epoch=1",
               f"+callbacks.full.code={errno.ENOSPC}", f"+callbacks.full.flag={full}",
               "+callbacks.term._target_=tests.test_foreign_checkpoints.SigtermAtTest",
               f"+callbacks.term.flag={termed}", data=data)
    line = one_error(proc)  # exit 2, one line, no traceback
    assert full.exists() and not termed.exists()  # the disk filled, in training
    assert line.startswith(f"error: cannot write checkpoint {run}/checkpoints/last.ckpt: No "
                           "space left on device (ENOSPC); any checkpoint written before it "
                           f"is intact: free space for {run}/checkpoints")
    assert line.endswith(f"ckpt_path=auto hydra.run.dir={run}")
    checkpoints = run / "checkpoints"
    assert read_checkpoint(checkpoints / "last.ckpt")["epoch"] == 0  # complete, loadable
    assert sorted(p.name for p in checkpoints.iterdir()) == ["epoch_000.ckpt", "last.ckpt"]

    line = one_error(cli("train", *printed_overrides(line), data=data),
                     code=128 + signal.SIGTERM)
    assert termed.exists() and read_checkpoint(checkpoints / "last.ckpt")["epoch"] == 1
    assert line.startswith("error: the run was stopped by SIGTERM after its training "
                           "(2 epochs), while testing or evaluating its best checkpoint")
    assert f"ckpt_path=auto hydra.run.dir={run} (that trains no further" in line
    assert not (run / "metrics.json").exists()
    trained = snapshot(checkpoints)

    monkeypatch.setattr(checkpoint_io, "atomic_write", checkpoint_io.atomic_write)  # FullDisk
    train(compose_config("train.yaml", printed_overrides(line, until=" (that trains"), run,
                         data))
    assert snapshot(checkpoints) == trained  # not trained again
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0 <= metrics["test/acc"] <= 1 and metrics["epochs"] == 2
    assert len(metrics["epoch_time_s"]) == 2
    # what the fit reported, though this last start trained nothing
    assert metrics["val/acc_best"] == pytest.approx(logged(run, "val/acc_best"))
    assert metrics["train/loss"] == pytest.approx(logged(run, "train/loss"))
