"""Hostile inputs: bad settings, data files and checkpoints each stop a run with one line
naming the problem and the fix, a non-zero exit, no traceback, and nothing half-written.

Every case runs ``train(cfg)`` in-process (the body the CLI wraps); a representative subset
also runs the real CLI, in parallel subprocesses. Data cases write small files in the real
on-disk layouts (MNIST idx ``.gz``, CIFAR-10 pickles, class-folder PNGs) under ``tmp_path``.
Unknown group options (``dataset=imagenet``) fail inside Hydra's composition with its own
message listing the options; ``tests/test_train.py`` checks those through the CLI.
"""

from __future__ import annotations

import gzip
import os
import pickle
import shutil
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from experiments.runs.cli import fail
from experiments.train import train
from sgt.data.in_memory import InMemoryDataModule, Split
from sgt.data.mnist import FILES, IMAGE_MAGIC, LABEL_MAGIC
from sgt.errors import SGTError
from tests.conftest import CPU_TEST_OVERRIDES, ROOT, compose_config

TRAIN_IMAGES, TRAIN_LABELS = FILES[True]
TEST_IMAGES, TEST_LABELS = FILES[False]
TINY = ["dataset.val_size=16"]  # tiny MNIST: 64 training images, 32 test images
Builder = Callable[[Path, Path], list[str]]  # (tmp dir, a finished run) -> extra overrides


# -- files in the real on-disk layouts ---------------------------------------------------
def idx(magic: int, array: np.ndarray) -> bytes:
    """An idx file: magic number, one big-endian uint32 per dimension, then uint8 data."""
    dims = b"".join(d.to_bytes(4, "big") for d in array.shape)
    return magic.to_bytes(4, "big") + dims + array.astype(np.uint8).tobytes()


def tiny_mnist(root: Path, n_train: int = 64, n_test: int = 32) -> Path:
    """A valid ``MNIST/raw/`` of random images under ``root``; returns ``root``."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for (images, labels), n in ((FILES[True], n_train), (FILES[False], n_test)):
        pixels = rng.integers(0, 256, (n, 28, 28))
        (raw / images).write_bytes(gzip.compress(idx(IMAGE_MAGIC, pixels)))
        (raw / labels).write_bytes(gzip.compress(idx(LABEL_MAGIC, rng.integers(0, 10, n))))
    return root


def png_folder(root: Path, size: int = 8) -> Path:
    """``bird260/{train,valid,test}/{a,b}/`` with two ``size``-pixel PNGs per class."""
    for split in ("train", "valid", "test"):
        for label in ("a", "b"):
            folder = root / "bird260" / split / label
            folder.mkdir(parents=True)
            for i in range(2):
                Image.new("RGB", (size, size), (60 * i, 0, 0)).save(folder / f"{i}.png")
    return root / "bird260" / "train" / "a" / "0.png"


class NonFiniteImages(InMemoryDataModule):
    """Float images with one non-finite value (training image 5), as preprocessed data has."""

    name, num_classes = "nonfinite", 10

    def __init__(self, *args, value: float = float("nan"), **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.value = value

    def load_split(self, train: bool) -> Split:
        x = torch.zeros(64 if train else 32, 1, 28, 28)
        if train:
            x[5, 0, 3, 3] = self.value
        return x, torch.zeros(len(x), dtype=torch.long)


# -- case builders: make the hostile files, return the overrides that point at them -------
def settings(*overrides: str) -> Builder:
    return lambda tmp, trained: list(overrides)


def mnist_file(name: str, content: Callable[[bytes], bytes], *overrides: str) -> Builder:
    """Replace one tiny-MNIST file with ``content(its valid .gz bytes)``."""

    def build(tmp: Path, trained: Path) -> list[str]:
        path = tmp / "data" / "MNIST" / "raw" / name
        path.write_bytes(content(path.read_bytes()))
        return list(overrides)

    return build


def idx_gz(magic: int, *shape: int, fill: int = 0) -> Callable[[bytes], bytes]:
    return lambda _: gzip.compress(idx(magic, np.full(shape, fill)))


def relabel(gz: bytes) -> bytes:
    labels = np.frombuffer(gzip.decompress(gz), np.uint8, offset=8).copy()
    labels[3] = 10
    return gzip.compress(idx(LABEL_MAGIC, labels))


def empty_test_set(tmp: Path, trained: Path) -> list[str]:
    raw = tmp / "data" / "MNIST" / "raw"
    (raw / TEST_IMAGES).write_bytes(idx_gz(IMAGE_MAGIC, 0, 28, 28)(b""))
    (raw / TEST_LABELS).write_bytes(idx_gz(LABEL_MAGIC, 0)(b""))
    return []


def broken_image(damage: Callable[[Path], None]) -> Builder:
    def build(tmp: Path, trained: Path) -> list[str]:
        damage(png_folder(tmp / "data"))
        return ["dataset=bird", "model=resnet20", "dataset.image_size=8",
                "dataset.cache_dir=null"]

    return build


def cifar_batch(content: bytes) -> Builder:
    """The torchvision CIFAR-10 pickles, tiny and valid except ``data_batch_3``."""

    def build(tmp: Path, trained: Path) -> list[str]:
        folder = tmp / "data" / "cifar-10-batches-py"
        folder.mkdir(parents=True)
        batch = pickle.dumps({"data": np.zeros((4, 3072), np.uint8), "labels": [0, 1, 2, 3]})
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            (folder / name).write_bytes(batch)
        (folder / "data_batch_3").write_bytes(content)
        return ["dataset=cifar10", "dataset.source=torchvision", "dataset.download=false",
                "dataset.val_size=4", "dataset.cache_dir=null"]

    return build


def resume_from(damage: Callable[[Path], None]) -> Builder:
    """This test's run dir: a copy of a run killed before it ended (no metrics.json), its
    ``last.ckpt`` damaged."""

    def build(tmp: Path, trained: Path) -> list[str]:
        shutil.copytree(trained, tmp / "run")
        (tmp / "run" / "metrics.json").unlink()
        damage(tmp / "run" / "checkpoints" / "last.ckpt")
        return ["ckpt_path=last"]

    return build


def missing_data(tmp: Path, trained: Path) -> list[str]:
    return [f"paths.data_dir={tmp / 'nowhere'}", "dataset.download=false"]


def garbage_checkpoint(tmp: Path, trained: Path) -> list[str]:
    (tmp / "garbage.ckpt").write_bytes(os.urandom(4096))
    return [f"ckpt_path={tmp / 'garbage.ckpt'}"]


def other_model(tmp: Path, trained: Path) -> list[str]:
    return [f"ckpt_path={trained / 'checkpoints' / 'last.ckpt'}", "model=resnet20"]


def run_with_results(tmp: Path, trained: Path) -> list[str]:
    shutil.copytree(trained, tmp / "run")
    return []


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")

# id: (builder, the key part of the one-line message)
CASES: dict[str, tuple[Builder, str]] = {
    "k=1": (settings("sgt.k=1"), "sgt.k must be a fraction in [0, 1), got 1"),
    "k=-0.1": (settings("sgt.k=-0.1"), "sgt.k must be a fraction in [0, 1), got -0.1"),
    "lam<0": (settings("sgt.lam=-1"), "sgt.lam must be a finite number >= 0, got -1"),
    "lam=nan": (settings("sgt.lam=nan"), "sgt.lam must be a finite number >= 0, got nan"),
    "unknown fill": (settings("sgt.fill=gauss"), "unknown sgt.fill 'gauss'; allowed: "),
    "unknown nan policy": (settings("sgt.nan_policy=ignore"), "sgt.nan_policy must be one of"),
    "batch size 0": (settings("dataset.batch_size=0"),
                     "dataset.batch_size must be a positive integer, got 0"),
    "eval batch size <0": (settings("dataset.eval_batch_size=-3"),
                           "dataset.eval_batch_size must be a positive integer, got -3"),
    "val size <0": (settings("dataset.val_size=-1"),
                    "dataset.val_size must be an integer >= 0, got -1"),
    "val size >= data": (settings("dataset.val_size=64"),
                         "dataset.val_size=64 leaves no training data (64 samples); set "),
    "seed not a number": (settings("seed=abc"), "seed must be an integer in [0, 4294967295]"),
    "max epochs 0": (settings("trainer.max_epochs=0"),
                     "trainer.max_epochs must be a positive integer or -1 (no limit), got 0"),
    "gpu without gpu": (settings("trainer.accelerator=gpu"),
                        "trainer.accelerator=gpu but this machine has no CUDA GPU; use "),
    "missing data dir": (missing_data, "MNIST not found: looked for train-images-idx3-ubyte.gz "
                                       "in"),
    "bad gzip": (mnist_file(TEST_LABELS, lambda gz: b"this is not gzip data"),
                 "cannot decompress"),
    "truncated gzip": (mnist_file(TRAIN_IMAGES, lambda gz: gz[: len(gz) // 2]),
                       "cannot decompress"),
    "wrong idx magic": (mnist_file(TEST_LABELS, idx_gz(IMAGE_MAGIC, 32, 1, 1)),
                        "is not an idx file: magic number 2051, expected 2049; replace it"),
    "truncated idx": (mnist_file(TRAIN_IMAGES,
                                 lambda gz: gzip.compress(gzip.decompress(gz)[:-100])),
                      "is truncated: 50076 data bytes for shape [64, 28, 28]"),
    "label out of range": (mnist_file(TRAIN_LABELS, relabel),
                           "mnist training labels must be in [0, 9], found 10 (at index"),
    "labels and images differ": (mnist_file(TRAIN_LABELS, idx_gz(LABEL_MAGIC, 60)),
                                 "mnist training set has 64 inputs but 60 labels; restore"),
    "empty test set": (empty_test_set, "mnist test set under"),
    "NaN input": (settings(f"dataset._target_={__name__}.NonFiniteImages"),
                  "nonfinite training inputs contain NaN or inf (first at index 5); fix"),
    "inf input": (settings(f"dataset._target_={__name__}.NonFiniteImages", "+dataset.value=inf"),
                  "nonfinite training inputs contain NaN or inf (first at index 5); fix"),
    "broken PNG": (broken_image(truncate), "cannot decode image"),
    "image of another size": (broken_image(lambda p: Image.new("RGB", (9, 8)).save(p)),
                              "is 9×8 pixels but 8×8 were expected; resize the images"),
    "wrong pickle": (cifar_batch(pickle.dumps(["not", "a", "batch"])),
                     "data_batch_3 is not a CIFAR-10 batch"),
    "corrupt pickle": (cifar_batch(b"\x80\x04garbage"), "cannot unpickle"),
    "checkpoint of another model": (
        other_model, "last.ckpt was trained with sgt.models.mnist_cnn.MNISTNet, which does not "
                     "fit this run's sgt.models.resnet.ResNet (the checkpoint has no net."),
    "garbage checkpoint": (garbage_checkpoint, "it is truncated or not a PyTorch checkpoint"),
    "truncated last.ckpt": (resume_from(truncate),
                            "last.ckpt: it is truncated or not a PyTorch checkpoint"),
    "resume without last.ckpt": (resume_from(Path.unlink),
                                 "ckpt_path=last but"),
    "ckpt_path not a file": (settings("ckpt_path=/nonexistent.ckpt"),
                             "ckpt_path='/nonexistent.ckpt' is not a file; give a .ckpt path"),
    "new run into a run with results": (run_with_results,
                                        "already holds results (metrics.json, checkpoints)"),
}
CLI_CASES = ["k=1", "bad gzip", "wrong pickle", "checkpoint of another model",
             "truncated last.ckpt", "new run into a run with results"]
MARKS = {"gpu without gpu": no_gpu}


def params(ids: list[str]) -> list:
    return [pytest.param(i, id=i, marks=MARKS.get(i, ())) for i in ids]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished one-epoch run on tiny MNIST (checkpoints, metrics.json)."""
    tmp = tmp_path_factory.mktemp("trained")
    cfg = compose_config("train.yaml", [*CPU_TEST_OVERRIDES, *TINY], tmp / "run",
                         tiny_mnist(tmp / "data"))
    train(cfg)
    return tmp / "run"


def prepare(case: str, tmp: Path, trained: Path) -> list[str]:
    """Tiny MNIST in ``tmp/data``, then the case's damage; returns the case's overrides."""
    tiny_mnist(tmp / "data")
    return CASES[case][0](tmp, trained)


def snapshot(run: Path) -> dict[str, bytes] | None:
    """Every file of a run dir and its content (``None``: no run dir). Hydra's job log is
    left out: it is append-only and records each start."""
    if not run.exists():
        return None
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*"))
            if p.is_file() and p.suffix != ".log"}


@pytest.mark.parametrize("case", params(list(CASES)))
def test_train_api_rejects(case: str, tmp_path: Path, trained: Path) -> None:
    overrides = prepare(case, tmp_path, trained)
    # compose_config sets paths.data_dir after composing, so a case's own one goes there
    data_dir = next((Path(o.split("=", 1)[1]) for o in overrides
                     if o.startswith("paths.data_dir=")), tmp_path / "data")
    cfg = compose_config("train.yaml", [*CPU_TEST_OVERRIDES, *TINY, *overrides],
                         tmp_path / "run", data_dir)
    before = snapshot(tmp_path / "run")
    with pytest.raises(SGTError) as err:
        train(cfg)
    message = str(err.value)
    assert CASES[case][1] in message
    assert "\n" not in message
    assert snapshot(tmp_path / "run") == before


def run_cli(case: str, tmp: Path, trained: Path) -> tuple[subprocess.CompletedProcess, dict | None]:
    overrides = prepare(case, tmp, trained)
    before = snapshot(tmp / "run")
    env = {**os.environ, "SGT_DATA_DIR": str(tmp / "data"), "HYDRA_FULL_ERROR": "0"}
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.train", *CPU_TEST_OVERRIDES, *TINY,
         f"paths.data_dir={tmp / 'data'}", *overrides, f"hydra.run.dir={tmp / 'run'}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    return proc, before


@pytest.fixture(scope="module")
def cli_results(tmp_path_factory: pytest.TempPathFactory, trained: Path) -> dict:
    """The CLI cases, run two at a time (each start costs seconds of imports)."""
    dirs = {case: tmp_path_factory.mktemp("cli") for case in CLI_CASES}
    with ThreadPoolExecutor(2) as pool:
        futures = {case: pool.submit(run_cli, case, dirs[case], trained) for case in CLI_CASES}
        return {case: (*f.result(), dirs[case]) for case, f in futures.items()}


@pytest.mark.parametrize("case", params(CLI_CASES))
def test_cli_rejects_with_one_line(case: str, cli_results: dict) -> None:
    proc, before, tmp = cli_results[case]
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and CASES[case][1] in errors[0], proc.stderr[-2000:]
    assert snapshot(tmp / "run") == before


def test_fail_folds_a_many_line_message_onto_one_line(capsys: pytest.CaptureFixture) -> None:
    """A message quoting another library's error (e.g. a failed download) stays one line."""
    with pytest.raises(SystemExit) as exit_:
        fail("MNIST not found (download failed: Error downloading:\nTried a, got:\n<no net>)")
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err == ("error: MNIST not found (download failed: Error downloading: Tried a, "
                   "got: <no net>)\n")
