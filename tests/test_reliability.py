"""Reliability, second round: no lost or mixed results, no success reported for what did
not happen, one line (exit 2) instead of a traceback, and inputs read exactly or refused.

CLI cases run the real ``python -m experiments.train``/``evaluate`` in parallel
subprocesses and assert the exit code, the single ``error:`` line, and that no folder or
file was left behind or changed (earlier files byte for byte).
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from experiments.train import train
from sgt.data.image_folder import ImageFolderDataModule
from sgt.errors import DatasetCorruptError, DatasetNotFoundError, StorageError
from tests.conftest import CPU_TEST_OVERRIDES, ROOT, compose_config
from tests.test_hostile_inputs import TINY, png_folder, snapshot, tiny_mnist

QUICK = [*CPU_TEST_OVERRIDES, *TINY, "trainer.limit_val_batches=1", "trainer.limit_test_batches=1"]


def cli(script: str, *args: str, data: Path, cwd: Path = ROOT,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    environment = {**os.environ, "SGT_DATA_DIR": str(data), "HYDRA_FULL_ERROR": "0",
                   **(env or {})}
    return subprocess.run([sys.executable, "-m", f"experiments.{script}", *args], cwd=cwd,
                          env=environment, capture_output=True, text=True, timeout=300)


def one_error(proc: subprocess.CompletedProcess, code: int = 2) -> str:
    """The single ``error:`` line of a refused start (and no traceback)."""
    assert proc.returncode == code, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr[-2000:]
    return errors[0]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_mnist(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory, data: Path) -> Path:
    """A regular (k = 0) one-epoch run finished through the CLI."""
    run = tmp_path_factory.mktemp("finished") / "run"
    proc = cli("train", *QUICK, "sgt=none", f"hydra.run.dir={run}", data=data)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return run


# -- results lost or mixed -----------------------------------------------------------------
def test_two_starts_into_one_folder_one_wins_the_other_is_refused(tmp_path: Path,
                                                                  data: Path) -> None:
    run = tmp_path / "run"

    def start(k: str) -> subprocess.CompletedProcess:
        return cli("train", *QUICK, f"sgt.k={k}", f"hydra.run.dir={run}", data=data)

    with ThreadPoolExecutor(2) as pool:
        a, b = pool.map(start, ["0.5", "0.2"])
    (won, k), (lost, _) = sorted([(a, "0.5"), (b, "0.2")], key=lambda p: p[0].returncode)
    assert won.returncode == 0, won.stderr[-2000:]
    line = one_error(lost)
    assert "is in use by another run" in line or "already holds results" in line
    saved_k = float(next(line.split(":")[1] for line in
                         (run / ".hydra" / "config.yaml").read_text().splitlines()
                         if line.strip().startswith("k:")))
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert saved_k == float(k) == ckpt["hyper_parameters"]["k"]  # one run's files only


def test_resuming_a_finished_run_changes_nothing_and_says_so(finished: Path,
                                                             data: Path) -> None:
    before = snapshot(finished)
    proc = cli("train", *QUICK, "sgt=none", "ckpt_path=last", f"hydra.run.dir={finished}",
               data=data)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "is a finished run" in proc.stdout and "trainer.max_epochs=<more than 1>" in proc.stdout
    assert proc.stdout.count("trainer.max_epochs=") == 1  # the suggestion replaces the run's own
    assert snapshot(finished) == before  # byte for byte, and no new file


def test_a_finished_run_trained_longer_keeps_what_it_had(tmp_path: Path, data: Path) -> None:
    cfg = compose_config("train.yaml", [*QUICK, "sgt=none"], tmp_path / "run", data)
    first = train(cfg)
    # an evaluation made after the run ended put its summary into metrics.json
    first["eval/accuracy_drop/auc/grad"] = 0.25
    (tmp_path / "run" / "metrics.json").write_text(json.dumps(first))
    longer = compose_config("train.yaml", [*QUICK, "sgt=none", "ckpt_path=last",
                                           "trainer.max_epochs=2"], tmp_path / "run", data)
    metrics = train(longer)
    assert metrics["epochs"] == 2 and len(metrics["epoch_time_s"]) == 2
    assert metrics["epoch_time_s"][0] == first["epoch_time_s"][0]  # kept, not re-measured
    assert "val/acc_best" in metrics and "train/loss" in metrics
    assert metrics["eval/accuracy_drop/auc/grad"] == 0.25
    assert json.loads((tmp_path / "run" / "metrics.json").read_text()) == metrics


def test_resuming_with_changed_settings_is_refused_naming_them(finished: Path,
                                                               data: Path) -> None:
    before = snapshot(finished)
    proc = cli("train", *QUICK, "sgt.k=0.3", "sgt.lam=0.5", "sgt.fill=mean", "ckpt_path=last",
               "trainer.max_epochs=2", f"hydra.run.dir={finished}", data=data)
    line = one_error(proc)
    assert "differ from its own: sgt.fill ('uniform' → 'mean'), sgt.k (0.0 → 0.3), " \
           "sgt.lam (1.0 → 0.5)" in line and "allow_changed_settings=true" in line
    assert snapshot(finished) == before


def test_changed_settings_when_asked_are_recorded(tmp_path: Path, data: Path) -> None:
    cfg = compose_config("train.yaml", [*QUICK, "sgt=none"], tmp_path / "run", data)
    train(cfg)
    (tmp_path / "run" / ".hydra").mkdir()  # what the CLI saves: the run's own settings
    OmegaConf.save(cfg, tmp_path / "run" / ".hydra" / "config.yaml")
    metrics = train(compose_config("train.yaml", [*QUICK, "sgt.k=0.3", "ckpt_path=last",
                                                  "trainer.max_epochs=2",
                                                  "allow_changed_settings=true"],
                                   tmp_path / "run", data))
    assert metrics["resumed_with_changes"] == {"sgt.k": {"run": 0.0, "now": 0.3}}


def test_disk_full_while_checkpointing_keeps_the_last_good_checkpoint(
        tmp_path: Path, data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    saved = []
    real_save = torch.save

    def save(obj, f, *args, **kwargs):  # the third checkpoint hits a full disk
        if len(saved) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        saved.append(1)
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr("sgt.checkpoint_io.torch.save", save)
    cfg = compose_config("train.yaml", [*QUICK, "trainer.max_epochs=2"], tmp_path / "run", data)
    with pytest.raises(StorageError, match="cannot write checkpoint .*No space left on "
                                           "device"):
        train(cfg)
    last = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=False)
    assert last["epoch"] == 0  # epoch 0's complete checkpoint, still loadable


def test_last_checkpoint_is_the_last_epoch_whatever_validation_says(
        tmp_path: Path, data: Path) -> None:
    """Lightning 2.6 saves its own `last` only in epochs that improve the monitored value;
    resuming from an older epoch would redo epochs. sgt's last.ckpt follows every epoch."""
    cfg = compose_config("train.yaml", [*QUICK, "trainer.max_epochs=3",
                                        "optimizer.lr=0"], tmp_path / "run", data)
    train(cfg)  # lr 0: validation accuracy never improves after epoch 0
    checkpoints = tmp_path / "run" / "checkpoints"
    assert [p.name for p in sorted(checkpoints.glob("*.ckpt"))] == ["epoch_000.ckpt", "last.ckpt"]
    assert torch.load(checkpoints / "last.ckpt", weights_only=False)["epoch"] == 2
    assert not list((tmp_path / "run" / "checkpoints").glob(".*.tmp"))


# -- one line, exit code 2, nothing left behind -------------------------------------------
def _rgb_folder(tmp: Path) -> list[str]:
    png_folder(tmp / "rgb")
    return [f"paths.data_dir={tmp / 'rgb'}", "dataset=bird", "model=mnist_cnn",
            "dataset.image_size=8", "dataset.cache_dir=null", "dataset.batch_size=2"]


def _one_class(tmp: Path) -> list[str]:
    png_folder(tmp / "one")
    for split in ("train", "valid", "test"):
        for path in (tmp / "one" / "bird260" / split / "b").iterdir():
            path.unlink()
        (tmp / "one" / "bird260" / split / "b").rmdir()
    return [f"paths.data_dir={tmp / 'one'}", "dataset=bird", "model=resnet20",
            "dataset.image_size=8", "dataset.cache_dir=null", "dataset.batch_size=2"]


CLI_REFUSALS = {
    "unknown sgt key": (["+sgt.foo=1"], "unknown setting sgt.foo; allowed: k, lam"),
    "unknown fill argument": (["+sgt.fill_args.value=1"],
                              "sgt.fill 'uniform' takes no argument 'value'"),
    "k as a boolean": (["sgt.k=true"], "sgt.k must be a fraction in [0, 1), got True"),
    "k masks nothing": (["sgt.k=0.001"], "sgt.k=0.001 masks no feature"),
    "negative learning rate": (["optimizer.lr=-1"], "optimizer: Invalid learning rate: -1"),
    "no training step": (["trainer.limit_train_batches=0"],
                         "trainer.limit_train_batches must be a count of batches >= 1"),
    "no validation data": (["dataset.val_size=0"], "has no validation data"),
    "batch larger than the data": (["dataset.batch_size=100000"],
                                   "dataset.batch_size=100000 is larger than the 48 training"),
    "one class": (_one_class, "holds 1 class folder(s) ['a']; a classifier needs"),
    "model does not fit the data": (_rgb_folder, "the model (MNISTNet) cannot take"),
    "unwritable run folder": (["hydra.run.dir=/proc/sgt_run"],
                              "cannot write to the run folder /proc/sgt_run"),
}


@pytest.fixture(scope="module")
def refusals(tmp_path_factory: pytest.TempPathFactory, data: Path) -> dict:
    def start(case: str):
        tmp = tmp_path_factory.mktemp("refused")
        overrides, _ = CLI_REFUSALS[case]
        overrides = overrides(tmp) if callable(overrides) else overrides
        run = [] if any(o.startswith("hydra.run.dir") for o in overrides) else [
            f"hydra.run.dir={tmp / 'run'}"]
        return cli("train", *QUICK, *overrides, *run, data=data), tmp

    with ThreadPoolExecutor(3) as pool:
        return dict(zip(CLI_REFUSALS, pool.map(start, CLI_REFUSALS), strict=True))


@pytest.mark.parametrize("case", list(CLI_REFUSALS))
def test_cli_refuses_with_one_line_and_leaves_no_folder(case: str, refusals: dict) -> None:
    proc, tmp = refusals[case]
    assert CLI_REFUSALS[case][1] in one_error(proc)
    assert not (tmp / "run").exists()


def test_hydra_composition_errors_keep_hydras_exit_code(data: Path, tmp_path: Path) -> None:
    """Documented in the README: Hydra's own errors (an unknown group option) exit 1."""
    proc = cli("train", "dataset=imagenet", f"hydra.run.dir={tmp_path / 'run'}", data=data)
    assert proc.returncode == 1 and "Could not find 'dataset/imagenet'" in proc.stderr
    assert not (tmp_path / "run").exists()


# -- inputs read exactly or refused ---------------------------------------------------------
def _folder(tmp: Path, write) -> ImageFolderDataModule:
    png_folder(tmp, size=4)
    write(tmp / "bird260" / "train" / "a")
    return ImageFolderDataModule(data_dir=tmp, image_size=4, val_dir="valid", batch_size=2,
                                 eval_batch_size=2, val_size=0)


@pytest.mark.parametrize(("name", "image", "exact"), [
    ("grey.png", Image.fromarray(np.arange(16, dtype=np.uint8).reshape(4, 4) * 16, "L"), True),
    ("bits.png", Image.fromarray(np.eye(4, dtype=bool)), True),
    ("palette.png", Image.new("RGB", (4, 4), (10, 200, 30)).quantize(4), True),
    ("opaque.png", Image.new("RGBA", (4, 4), (1, 2, 3, 255)), True),
    ("sixteen.png", Image.fromarray(np.full((4, 4), 40000, dtype=np.uint16)), False),
    ("clear.png", Image.new("RGBA", (4, 4), (1, 2, 3, 0)), False),
    ("cmyk.jpg", Image.new("CMYK", (4, 4), (0, 0, 0, 0)), False),
])
def test_unusual_images_are_read_exactly_or_refused_by_name(tmp_path: Path, name: str,
                                                            image: Image.Image,
                                                            exact: bool) -> None:
    dm = _folder(tmp_path, lambda folder: image.save(folder / name))
    if not exact:
        with pytest.raises(DatasetCorruptError, match=name):
            dm.setup("fit")
        return
    dm.setup("fit")
    x = dm.splits["train"][0]
    expected = np.asarray(image.convert("RGB")).transpose(2, 0, 1)
    assert any(torch.equal(row, torch.from_numpy(expected)) for row in x)


def test_hidden_entries_are_skipped_links_followed_other_files_refused(tmp_path: Path) -> None:
    def write(folder: Path) -> None:
        (folder / ".DS_Store").write_bytes(b"\0\1")
        (folder.parent / ".ipynb_checkpoints").mkdir()
        (folder / "link.png").symlink_to(folder / "0.png")

    dm = _folder(tmp_path / "ok", write)
    dm.setup("fit")
    assert dm.classes == ["a", "b"] and len(dm.splits["train"][1]) == 5  # 4 + the link

    dm = _folder(tmp_path / "notes", lambda f: (f / "notes.txt").write_text("hi"))
    with pytest.raises(DatasetCorruptError, match=r"notes.txt is not an image"):
        dm.setup("fit")
    dm = _folder(tmp_path / "broken", lambda f: (f / "gone.png").symlink_to(f / "nowhere.png"))
    with pytest.raises(DatasetCorruptError, match=r"gone.png is a broken link"):
        dm.setup("fit")


def test_a_failed_download_creates_nothing_in_the_data_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from torchvision.datasets import MNIST

    def offline(self):
        raise OSError("no network")

    monkeypatch.setattr(MNIST, "download", offline)
    cfg = compose_config("train.yaml", [*QUICK], tmp_path / "run", tmp_path / "data")
    (tmp_path / "data").mkdir()
    with pytest.raises(DatasetNotFoundError, match="download failed: OSError: no network"):
        train(cfg)
    assert list((tmp_path / "data").iterdir()) == []
    assert not (tmp_path / "run").exists()


@pytest.mark.slow  # ~45 s: a training and two CLI starts
def test_saved_config_records_the_data_dir_and_evaluate_suggests_data_dir(
        tmp_path: Path, data: Path) -> None:
    run = tmp_path / "run"
    proc = cli("train", *QUICK, f"hydra.run.dir={run}", data=data)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"data_dir: {data}" in (run / ".hydra" / "config.yaml").read_text()
    quick_eval = ["eval.methods=[grad]", "eval.metric.limit_batches=1", "eval.batch_size=8",
                  "eval.num_examples=0", f"hydra.run.dir={tmp_path / 'job'}"]
    elsewhere = {"SGT_DATA_DIR": str(tmp_path / "nothing")}  # the variable no longer matters
    done = cli("evaluate", f"ckpt_path={run}", *quick_eval, data=data, env=elsewhere)
    assert done.returncode == 0, done.stderr[-2000:]
    moved = tmp_path / "moved"
    data.rename(moved)
    try:
        line = one_error(cli("evaluate", f"ckpt_path={run}", *quick_eval, data=moved))
        assert "MNIST not found" in line and "pass data_dir=<a folder holding MNIST" in line
        again = cli("evaluate", f"ckpt_path={run}", *quick_eval, f"data_dir={moved}",
                    data=moved)
        assert again.returncode == 0, again.stderr[-2000:]
    finally:
        moved.rename(data)


def test_a_method_that_cannot_explain_the_model_is_skipped_the_rest_kept(
        tmp_path: Path) -> None:
    """captum's DeepLift cannot explain torchvision ResNets (they reuse one ReLU module):
    the evaluation leaves it out with its reason and keeps every other method's results."""
    from experiments.evaluate import evaluate

    png_folder(tmp_path / "data", size=16)
    cfg = compose_config("train.yaml", [*CPU_TEST_OVERRIDES, "dataset=bird", "model=torchvision",
                                        "model.name=resnet18", "dataset.image_size=16",
                                        "dataset.cache_dir=null", "dataset.batch_size=2",
                                        "trainer.limit_train_batches=1"],
                         tmp_path / "run", tmp_path / "data")
    train(cfg)
    (tmp_path / "run" / ".hydra").mkdir()
    OmegaConf.save(cfg, tmp_path / "run" / ".hydra" / "config.yaml")
    with pytest.warns(UserWarning, match="deeplift cannot explain this model"):
        done = evaluate(compose_config("evaluate.yaml", [
            f"ckpt_path={tmp_path / 'run'}", "eval.methods=[grad,deeplift,random]",
            "eval.batch_size=4", "eval.num_examples=0", "eval.metric.progress=false"],
            tmp_path / "job", tmp_path / "data"))
    result = json.loads(Path(done["eval/accuracy_drop/json"]).read_text())
    assert set(result["accuracy"]) == {"grad", "random"}
    assert "used more than once" in result["skipped_methods"]["deeplift"]
