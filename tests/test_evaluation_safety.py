"""Evaluations and reports are as safe as training: they respect a run that is still
training, say when an evaluation no longer belongs to the run's checkpoint, find unwritable
folders before the work, leave no partial files, refuse bad method settings and devices,
refuse to compare runs of different data, and say what to do after a SIGTERM."""

from __future__ import annotations

import errno
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig, OmegaConf

import experiments.runs.evaluation as evaluation
import experiments.runs.views.sweep as sweep_view
from experiments import report
from experiments.evaluate import evaluate
from experiments.runs.collect import collect
from experiments.train import train
from sgt.errors import SettingError, StorageError
from tests.conftest import CPU_TEST_OVERRIDES, ROOT, SHARED_DATA, compose_config, needs_mnist
from tests.test_run_lock import start_claim

pytestmark = needs_mnist

QUICK_EVAL = ["eval.methods=[grad,random]", "eval.batch_size=32", "eval.metric.limit_batches=1",
              "eval.num_examples=2", "eval.metric.progress=false"]
FULL = "No space left on device"


def train_run(run_dir: Path, *overrides: str) -> dict:
    """A run as ``python -m experiments.train`` leaves it (with Hydra's config copy)."""
    cfg = compose_config("train.yaml", [*CPU_TEST_OVERRIDES, *overrides], run_dir)
    (run_dir / ".hydra").mkdir(parents=True, exist_ok=True)
    if not (run_dir / ".hydra" / "config.yaml").is_file():
        OmegaConf.save(cfg, run_dir / ".hydra" / "config.yaml")
    return train(cfg)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("runs") / "run"
    train_run(run_dir)
    return run_dir


@pytest.fixture
def run(trained: Path, tmp_path: Path) -> Path:
    """A copy of the trained run this test may change."""
    return Path(shutil.copytree(trained, tmp_path / "run"))


def eval_cfg(tmp_path: Path, *overrides: str) -> DictConfig:
    return compose_config("evaluate.yaml", [*QUICK_EVAL, *overrides], tmp_path / "job")


def files_in(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()} if folder.is_dir() else set()


def cli(module: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "SGT_DATA_DIR": str(SHARED_DATA), "HYDRA_FULL_ERROR": "0"}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def one_error_line(done: subprocess.CompletedProcess) -> str:
    """The CLI's stderr, which must be exactly one ``error:`` line and no traceback."""
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert "Traceback" not in done.stderr and len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def never(*args: object, **kwargs: object) -> None:
    raise AssertionError("the work started although a check should have stopped it first")


# --- a run that is still training ------------------------------------------------------

def test_a_run_still_training_is_not_evaluated(run: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    holder = start_claim(run, "flock")  # a live process holds the run, as training does
    try:
        assert holder.stdout.readline() == "claimed\n"
        before = files_in(run / "eval")
        monkeypatch.setattr(evaluation, "load_module", never)
        with pytest.raises(SettingError, match=f"{run} is still training .*evaluate it when "
                                               "that run has ended"):
            evaluate(eval_cfg(tmp_path, f"ckpt_path={run}"))
        # a checkpoint file of that run, rather than the run dir: refused the same way
        with pytest.raises(SettingError, match="is still training"):
            evaluate(eval_cfg(tmp_path, f"ckpt_path={run}/checkpoints/last.ckpt"))
        assert files_in(run / "eval") == before
    finally:
        holder.stdin.close()
        holder.wait(30)
    monkeypatch.undo()
    done = evaluate(eval_cfg(tmp_path, f"ckpt_path={run}"))  # the run ended: evaluated
    assert Path(done["eval/accuracy_drop/json"]).is_file()


# --- stale evaluations -------------------------------------------------------------------

def test_an_evaluation_of_a_run_trained_longer_is_marked_stale(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture
                                                               ) -> None:
    run_dir = tmp_path / "run"
    first = train_run(run_dir, "eval=accuracy_drop", *QUICK_EVAL)
    result = json.loads(Path(first["eval/accuracy_drop/json"]).read_text())
    best = Path(first["best_ckpt_path"])
    assert result["checkpoint"] == str(best) and result["checkpoint_epoch"] == 0
    assert len(result["checkpoint_sha256"]) == 64
    assert collect([run_dir])[0].evaluation("accuracy_drop") is not None

    second = train_run(run_dir, "trainer.max_epochs=2", "ckpt_path=auto",  # more steps:
                       "trainer.limit_train_batches=30", "allow_changed_settings=true")  # better
    assert Path(second["best_ckpt_path"]).name != best.name  # the run's checkpoint changed
    record = collect([run_dir])[0]
    assert record.evaluation("accuracy_drop") is None
    assert "(epoch 0)" in record.stale["accuracy_drop"]
    assert record.row("accuracy_drop").get("auc/grad") is None  # not shown as the run's

    report.main([str(run_dir), "--out", str(tmp_path / "sweep")])
    assert "note: left out the stale evaluation" in capsys.readouterr().out
    report.main([str(run_dir), "--html"])
    page = (run_dir / "report.html").read_text()
    assert "accuracy_drop (stale)" in page and "evaluate it again" in page

    # a variant: every checkpoint of the run is gone
    shutil.rmtree(run_dir / "checkpoints")
    record = collect([run_dir])[0]
    second_eval = run_dir / "eval" / "accuracy_drop.json"
    assert record.evaluation("accuracy_drop") is None and second_eval.is_file()
    assert "the run has no checkpoint now" in record.stale["accuracy_drop"]


def test_an_evaluation_of_the_runs_checkpoint_is_current(run: Path, tmp_path: Path) -> None:
    done = evaluate(eval_cfg(tmp_path, f"ckpt_path={run}"))
    saved = json.loads(Path(done["eval/accuracy_drop/json"]).read_text())
    assert Path(saved["checkpoint"]).name == Path(json.loads(
        (run / "metrics.json").read_text())["best_ckpt_path"]).name
    record = collect([run])[0]
    assert record.evaluation("accuracy_drop") is not None and record.stale == {}
    # an evaluation of another checkpoint than the run's is not the run's evaluation
    other = run / "checkpoints" / "other.ckpt"
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    first = next(iter(checkpoint["state_dict"]))
    checkpoint["state_dict"][first] = checkpoint["state_dict"][first] + 1
    torch.save(checkpoint, other)
    evaluate(eval_cfg(tmp_path, f"ckpt_path={other}"))
    record = collect([run])[0]
    assert record.evaluation("accuracy_drop") is None
    assert "it evaluated other.ckpt" in record.stale["accuracy_drop"]


# --- unwritable folders and full disks ----------------------------------------------------

def test_an_unwritable_eval_folder_is_found_before_the_work(run: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    shutil.rmtree(run / "eval", ignore_errors=True)
    (run / "eval").write_text("a file where the eval folder should be")
    monkeypatch.setattr(evaluation, "load_module", never)
    with pytest.raises(StorageError, match=f"cannot write to {run / 'eval'} .*make the run "
                                           "folder writable"):
        evaluate(eval_cfg(tmp_path, f"ckpt_path={run}"))
    done = cli("experiments.evaluate", f"ckpt_path={run}", *QUICK_EVAL)
    assert done.returncode == 2
    assert f"cannot write to {run / 'eval'}" in one_error_line(done)


@pytest.mark.parametrize("failing", ["write_csv", "write_json_atomic"])
def test_a_full_disk_leaves_no_partial_evaluation(run: Path, tmp_path: Path, failing: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The disk fills while the csv (first files written) or the json (the last) is
    written: nothing of the evaluation stays, and the next one takes the name."""
    before = files_in(run / "eval")

    def full(path: Path, *args: object) -> None:
        raise OSError(errno.ENOSPC, FULL, str(path))

    monkeypatch.setattr(evaluation, failing, full)
    with pytest.raises(StorageError, match=f"cannot write .* \\({FULL}\\); nothing of it was "
                                           "kept; free space in"):
        evaluate(eval_cfg(tmp_path, f"ckpt_path={run}", "eval.name=full"))
    assert files_in(run / "eval") == before
    monkeypatch.undo()
    done = evaluate(eval_cfg(tmp_path, f"ckpt_path={run}", "eval.name=full"))
    assert Path(done["eval/full/json"]).name == "full.json"


def test_report_out_is_checked_and_written_all_or_nothing(run: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    evaluate(eval_cfg(tmp_path, f"ckpt_path={run}"))
    blocked = tmp_path / "a_file"
    blocked.write_text("")
    monkeypatch.setattr(report, "collect", never)
    for view in ("sweep", "compare"):
        with pytest.raises(SystemExit) as stop:
            report.main([str(run), str(run), "--view", view, "--out", str(blocked / "out")])
        assert stop.value.code == 2
        assert f"cannot write to {blocked / 'out'}" in capsys.readouterr().err
    monkeypatch.undo()

    out = tmp_path / "out"

    def full_at_the_page(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, FULL, str(out / "report.html"))

    monkeypatch.setattr(sweep_view, "sweep_page", full_at_the_page)
    with pytest.raises(SystemExit) as stop:  # the csv is written, then the page fails
        report.main([str(run), str(run), "--out", str(out), "--html"])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: cannot write") and FULL in err and len(err.splitlines()) == 1
    assert files_in(out) == set()  # the csv written before the failure is gone too


# --- bad settings ----------------------------------------------------------------------

@pytest.mark.parametrize(("override", "message"), [
    ("+eval.method_args.smoothgrad.nt_samples=-1",
     "smoothgrad nt_samples must be a positive integer, got -1"),
    ("+eval.method_args.gradient_shap.stdevs=-0.5",
     "gradient_shap stdevs must be a finite number >= 0, got -0.5"),
    ("+eval.method_args.integrated_gradients.n_steps=0",
     "integrated_gradients n_steps must be a positive integer, got 0"),
    ("+eval.method_args.smoothgrd.nt_samples=3",
     "eval.method_args names \\['smoothgrd'\\], which are not attribution methods"),
])
def test_a_bad_method_setting_is_a_setting_error(run: Path, tmp_path: Path, override: str,
                                                 message: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(evaluation, "load_module", never)
    with pytest.raises(SettingError, match=message):
        evaluate(eval_cfg(tmp_path, f"ckpt_path={run}",
                          "eval.methods=[grad,smoothgrad,integrated_gradients,gradient_shap]",
                          override))


def test_a_bad_method_setting_exits_2_before_any_work(run: Path, tmp_path: Path) -> None:
    before = files_in(run / "eval")
    done = cli("experiments.evaluate", f"ckpt_path={run}", *QUICK_EVAL,
               "eval.methods=[grad,smoothgrad]", "+eval.method_args.smoothgrad.nt_samples=-3")
    assert done.returncode == 2
    assert "smoothgrad nt_samples must be a positive integer, got -3" in one_error_line(done)
    assert files_in(run / "eval") == before
    # the same setting given to a training run is refused before it trains
    done = cli("experiments.train", *CPU_TEST_OVERRIDES, "eval=accuracy_drop",
               "+eval.method_args.smoothgrad.nt_samples=-3", f"hydra.run.dir={tmp_path / 't'}")
    assert done.returncode == 2 and "nt_samples" in one_error_line(done)
    assert not (tmp_path / "t").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
@pytest.mark.parametrize(("device", "message"), [
    ("cuda", "eval.device=cuda but this machine has no CUDA GPU"),
    ("cuda:3", "eval.device=cuda:3 but this machine has no CUDA GPU"),
    ("tpu", "eval.device='tpu' is not a device"),
])
def test_a_device_this_machine_lacks_is_a_setting_error(run: Path, tmp_path: Path,
                                                        device: str, message: str) -> None:
    with pytest.raises(SettingError, match=message):
        evaluate(eval_cfg(tmp_path, f"ckpt_path={run}", f"eval.device={device}"))
    if device == "cuda":
        done = cli("experiments.evaluate", f"ckpt_path={run}", "eval.device=cuda")
        assert done.returncode == 2 and message in one_error_line(done)


# --- compare ---------------------------------------------------------------------------

def _as_other_data(run: Path, **dataset: object) -> None:
    config = OmegaConf.load(run / ".hydra" / "config.yaml")
    for key, value in dataset.items():
        OmegaConf.update(config, f"dataset.{key}", value, force_add=True)
    OmegaConf.save(config, run / ".hydra" / "config.yaml")


@pytest.mark.parametrize("other_data", [
    {"_target_": "sgt.data.CIFAR10DataModule"},
    {"_target_": "sgt.data.TimeSeriesDataModule", "layout": "Middle", "process": "Harmonic"},
])
def test_compare_refuses_runs_of_different_data(run: Path, tmp_path: Path, other_data: dict,
                                                capsys: pytest.CaptureFixture) -> None:
    evaluate(eval_cfg(tmp_path, f"ckpt_path={run}"))
    other = Path(shutil.copytree(run, tmp_path / "other"))
    _as_other_data(other, **other_data)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as stop:
        report.main([str(run), str(other), "--view", "compare", "--out", str(out)])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"{run} and {other} were not run on the same data (dataset._target_ " in err
    assert files_in(out) == set()


# --- SIGTERM during an evaluation -------------------------------------------------------

def test_sigterm_during_an_evaluation_says_what_to_run(run: Path) -> None:
    shutil.rmtree(run / "eval", ignore_errors=True)
    env = {**os.environ, "SGT_DATA_DIR": str(SHARED_DATA), "HYDRA_FULL_ERROR": "0"}
    args = [f"ckpt_path={run}", "eval.methods=[integrated_gradients]", "eval.batch_size=500",
            "eval.metric.progress=false"]
    job = subprocess.Popen([sys.executable, "-m", "experiments.evaluate", *args], cwd=ROOT,
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (run / "eval").is_dir() and time.monotonic() < deadline:  # checks passed
        time.sleep(0.2)
    time.sleep(3)  # reading the data, or evaluating: both must stop cleanly
    job.send_signal(signal.SIGTERM)
    _, stderr = job.communicate(timeout=120)
    assert job.returncode == 143, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr and len(lines) == 1, stderr
    assert lines[0] == (f"error: the evaluation accuracy_drop of {run} was stopped by SIGTERM; "
                        "it left no partial result files; run it again with "
                        f"python -m experiments.evaluate {shlex.join(args)}")
    assert files_in(run / "eval") == set()
