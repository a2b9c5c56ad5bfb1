"""Stored data that cannot be read exactly stops a run with one line naming the file (and
where in it) instead of a traceback, a silent cut or NaN results: ERASER text that is not
UTF-8, pretrained vectors that are not finite numbers, images of more than 8 bits per
channel, class folders reached through links (followed, loops and broken links refused), and
non-finite tensors an evaluation would consume (the time-series background sample)."""

from __future__ import annotations

import os
import re
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image
from torch import Tensor, nn

from experiments.train import train
from sgt.data import ImageFolderDataModule, TimeSeriesDataModule
from sgt.data.eraser import EraserDataModule, _tokens_of_file
from sgt.data.images import read_rgb
from sgt.errors import DatasetCorruptError, ModelError
from sgt.evaluation import AccuracyDrop, TimeSeriesMetrics
from sgt.models import BiLSTM
from tests.conftest import ROOT
from tests.eraser_corpus import write_corpus


def cli(script: str, *args: str, data_dir: Path, cache_dir: Path
        ) -> subprocess.CompletedProcess:
    env = {**os.environ, "SGT_DATA_DIR": str(data_dir), "SGT_CACHE_DIR": str(cache_dir),
           "HYDRA_FULL_ERROR": "0", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", f"experiments.{script}", *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600)


def error_lines(done: subprocess.CompletedProcess) -> list[str]:
    return [line for line in done.stderr.splitlines() if line.startswith("error:")]


def insert_byte(path: Path, after: int, byte: bytes = b"\xff") -> tuple[int, int]:
    """Put ``byte`` just after the ``after``-th byte of ``path``; returns its offset and
    line number (1-based)."""
    data = path.read_bytes()
    path.write_bytes(data[:after] + byte + data[after:])
    return after, data[:after].count(b"\n") + 1


# -- ERASER: every text file the loader reads is UTF-8 -------------------------------------
ERASER_FIX = ("restore the file from ERASER's release (https://www.eraserbenchmark.com) or "
              "save it as UTF-8")


@pytest.mark.parametrize(("task", "file", "byte"), [
    ("fever", "train.jsonl", b"\xff"),  # the example
    ("fever", "test.jsonl", b"\xc3"),  # a two-byte sequence cut short
    ("fever", "docs/Doc_val_1", b"\xe9"),  # a Latin-1 'é' in a document
    ("esnli", "docs.jsonl", b"\x80"),  # a continuation byte with no start
])
def test_bytes_that_are_not_utf8_name_the_file_byte_and_offset(tmp_path: Path, task: str,
                                                                file: str, byte: bytes) -> None:
    root = tmp_path / "eraser" / task
    write_corpus(root, task, sizes=(9, 6, 6))
    path = root / file
    offset, line = insert_byte(path, min(250, path.stat().st_size - 10), byte)
    dm = EraserDataModule(data_dir=tmp_path, task=task)
    with pytest.raises(DatasetCorruptError) as err:
        dm.setup()
    assert str(err.value) == (f"{path} is not UTF-8 text: byte 0x{byte[0]:02x} at offset "
                              f"{offset} (line {line}); {ERASER_FIX}")


def test_documents_still_split_lines_at_any_newline(tmp_path: Path) -> None:
    path = tmp_path / "doc"
    path.write_bytes("a b\r\nc\rd é\n\n e \n".encode())
    assert _tokens_of_file(path) == ["a", "b", "c", "d", "é", "e"]


# -- pretrained vectors: UTF-8, finite float32, the right number of columns ----------------
VOCAB = ["[PAD]", "[UNK]", "[SEP]", "the", "film", "zzz"]


@pytest.mark.parametrize(("line2", "message"), [
    ("film 1 nan 3 4", "line 2: the vector of 'film' holds nan, which is not a finite"),
    ("film 1 2 inf 4", "line 2: the vector of 'film' holds inf, which is not a finite"),
    ("film 1e39 2 3 4", "line 2: the vector of 'film' holds 1e39, which is not a finite"),
    ("film 1 2 3 -4e38", "line 2: the vector of 'film' holds -4e38, which is not a finite"),
    ("film 1 2 3 4 5", "line 2: the word 'film' has 5 numbers, expected 4; fix or remove"),
    ("film 1 2 3", r"line 2: expected the word 'film' and 4 numbers \(3 numbers\)"),
])
def test_vectors_that_are_not_finite_float32_numbers_name_the_line(
        tmp_path: Path, line2: str, message: str) -> None:
    path = tmp_path / "vectors.txt"
    path.write_text(f"the 1 2 3 4\n{line2}\nzzz 1 2 3 4\n")
    with pytest.raises(ModelError, match=rf"^{path}, {message}"):
        BiLSTM(num_classes=2, vocab_size=6, vocabulary=VOCAB, embedding_dim=4,
               embeddings_path=path)


def test_binary_vectors_name_the_file_offset_and_line(tmp_path: Path) -> None:
    path = tmp_path / "vectors.bin"
    path.write_bytes(b"the 1 2 3 4\n" + bytes(range(256)) * 4)
    make = partial(BiLSTM, num_classes=2, vocab_size=6, vocabulary=VOCAB, embedding_dim=4)
    with pytest.raises(ModelError) as err:
        make(embeddings_path=path)
    assert str(err.value) == (
        f"{path} is not UTF-8 text: byte 0x80 at offset {12 + 0x80} (line 3); point "
        "model.embeddings_path at a GloVe-format text file (a word and its 4 numbers per line)")
    path.write_text("the 1 2 3 4\nfilm 1 2 3 4\nnew york 5 6 7 8\n")  # a word with a space
    vectors = make(embeddings_path=path, freeze_embeddings=True).embedding.weight
    assert torch.equal(vectors[4], torch.tensor([1.0, 2, 3, 4]))


# -- both through the command line: one line, exit 2, no run folder ------------------------
@pytest.mark.parametrize("case", ["document", "vectors"])
def test_bad_text_files_stop_training_with_one_line_and_no_run_folder(tmp_path: Path,
                                                                      case: str) -> None:
    root = tmp_path / "data" / "eraser" / "fever"
    write_corpus(root, "fever", sizes=(9, 6, 6))
    run = tmp_path / "run"
    if case == "document":
        path, overrides = root / "docs" / "Doc_train_0", []
        offset, line = insert_byte(path, 5)
        expected = (f"error: {path} is not UTF-8 text: byte 0xff at offset {offset} "
                    f"(line {line}); {ERASER_FIX}")
    else:
        path = tmp_path / "glove.txt"
        path.write_text("the " + " ".join(["0.5"] * 8) + "\nfilm " + " ".join(["nan"] * 8))
        overrides = [f"model.embeddings_path={path}", "model.embedding_dim=8"]
        expected = (f"error: {path}, line 2: the vector of 'film' holds nan, which is not a "
                    "finite float32 number (NaN, infinite or beyond ±3.4e38); fix or remove "
                    "that line")
    done = cli("train", "experiment=fever", "model=bilstm", "trainer.accelerator=cpu",
               *overrides, f"hydra.run.dir={run}", data_dir=tmp_path / "data",
               cache_dir=tmp_path / "cache")
    assert done.returncode == 2, done.stderr[-3000:]
    assert error_lines(done) == [expected], done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert not run.exists()


# -- images: more than 8 bits per channel is refused, whatever the channel count -----------
def png(path: Path, pixels: np.ndarray) -> Path:
    """Write ``pixels`` ((H, W) grey, (H, W, 2) grey-alpha, (H, W, 3) RGB or (H, W, 4) RGBA;
    uint8 or uint16) as a PNG of that bit depth, chunk by chunk: Pillow cannot write 16-bit
    RGB."""
    height, width = pixels.shape[:2]
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    big_endian = pixels.astype(pixels.dtype.newbyteorder(">")).reshape(height, -1)
    raw = b"".join(b"\x00" + row.tobytes() for row in big_endian)  # filter 0 per row

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    header = struct.pack(">IIBBBBB", width, height, 8 * pixels.dtype.itemsize, colour_type,
                         0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    return path


def pixels(channels: int, dtype: type, size: int = 8, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (size, size) if channels == 1 else (size, size, channels)
    out = rng.integers(0, np.iinfo(dtype).max + 1, shape).astype(dtype)
    if channels in (2, 4):
        out[..., -1] = np.iinfo(dtype).max  # opaque: only the depth can be wrong
    return out


def test_the_png_writer_is_exact_at_8_bits_and_writes_16(tmp_path: Path) -> None:
    rgb = pixels(3, np.uint8)
    assert np.array_equal(read_rgb(png(tmp_path / "rgb8.png", rgb)), rgb)
    grey = pixels(1, np.uint16)
    assert np.array_equal(np.array(Image.open(png(tmp_path / "grey16.png", grey))), grey)


def pillow(mode: str, suffix: str) -> Callable[[Path], Path]:
    """A writer of an 8 × 8 image in Pillow ``mode`` (formats Pillow can write)."""

    def write(path: Path) -> Path:
        path = path.with_suffix(suffix)
        Image.new(mode, (8, 8), 7).save(path)
        return path

    return write


@pytest.mark.parametrize(("write", "why"), [
    (lambda p: png(p, pixels(3, np.uint16)),  # the issue: Pillow opens it as 8-bit RGB
     "has 16 or more bits per channel (Pillow mode RGB, stored as RGB;16B)"),
    (lambda p: png(p, pixels(4, np.uint16)),
     "has 16 or more bits per channel (Pillow mode RGBA, stored as RGBA;16B)"),
    (lambda p: png(p, pixels(2, np.uint16)),
     "has 16 or more bits per channel (Pillow mode RGBA, stored as LA;16B)"),
    (lambda p: png(p, pixels(1, np.uint16)),
     "has 16 or more bits per channel (Pillow mode I;16, stored as I;16B)"),
    (pillow("F", ".tif"), "has 16 or more bits per channel (Pillow mode F, stored as F;32F)"),
    (pillow("I", ".tif"), "has 16 or more bits per channel (Pillow mode I, stored as I;32"),
    (pillow("CMYK", ".jpg"), "is in Pillow mode CMYK (e.g. 16-bit grey, 32-bit, float or "
                             "CMYK)"),
])
def test_images_not_read_exactly_are_refused_naming_file_and_depth(
        tmp_path: Path, write: Callable[[Path], Path], why: str) -> None:
    path = write(tmp_path / "deep.png")
    with pytest.raises(DatasetCorruptError, match=rf"^image {path} {re.escape(why)}.*, which "
                                                  "8-bit RGB cannot hold exactly; convert it "
                                                  "to 8-bit RGB or greyscale$"):
        read_rgb(path)


def class_folder(folder: Path, count: int, mark: int = 0, size: int = 8) -> Path:
    """``count`` 8-bit RGB PNGs in ``folder``, each with ``mark`` as its first pixel's red."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        image = pixels(3, np.uint8, size, seed=i)
        image[0, 0, 0] = mark
        png(folder / f"{mark:03d}_{i}.png", image)
    return folder


def image_folder(root: Path, counts: dict[str, int]) -> Path:
    """``root/bird260/{train,valid,test}/<class>/`` with ``counts[class]`` images each."""
    for split in ("train", "valid", "test"):
        for name, count in counts.items():
            class_folder(root / "bird260" / split / name, count)
    return root / "bird260"


def setup(root: Path) -> ImageFolderDataModule:
    dm = ImageFolderDataModule(data_dir=root, image_size=8, batch_size=2, eval_batch_size=4)
    dm.setup()
    return dm


def test_a_16_bit_rgb_png_in_a_class_folder_stops_setup(tmp_path: Path) -> None:
    bird = image_folder(tmp_path, {"a": 2, "b": 2})
    deep = png(bird / "test" / "b" / "deep.png", pixels(3, np.uint16))
    with pytest.raises(DatasetCorruptError, match=rf"^image {deep} has 16 or more bits per "
                                                  r"channel \(Pillow mode RGB, stored as RGB;"):
        setup(tmp_path)


# -- links: followed, a loop or a broken link refused by name ----------------------------
def test_images_in_a_linked_sub_folder_are_loaded(tmp_path: Path) -> None:
    bird = image_folder(tmp_path / "data", {"a": 2, "b": 2})
    (bird / "train" / "a" / "more").symlink_to(class_folder(tmp_path / "elsewhere", 3, 200))
    x, y = setup(tmp_path / "data").splits["train"]
    assert y.tolist() == [0] * 5 + [1] * 2
    assert int((x[:, 0, 0, 0] == 200).sum()) == 3  # the linked images themselves


def test_a_linked_class_folder_is_a_class(tmp_path: Path) -> None:
    bird = image_folder(tmp_path / "data", {"a": 2, "b": 2})
    for split in ("train", "valid", "test"):
        (bird / split / "c").symlink_to(class_folder(tmp_path / split, 4, 100))
    dm = setup(tmp_path / "data")
    x, y = dm.splits["train"]
    assert dm.classes == ["a", "b", "c"] and y.tolist() == [0, 0, 1, 1, 2, 2, 2, 2]
    assert int((x[:, 0, 0, 0] == 100).sum()) == 4


@pytest.mark.parametrize("loop", ["itself", "its split", "through another link"])
def test_a_link_loop_is_refused_naming_the_link(tmp_path: Path, loop: str) -> None:
    bird = image_folder(tmp_path / "data", {"a": 2, "b": 2})
    folder = bird / "valid" / "b"
    if loop == "itself":
        link = made = folder / "again"
        target = folder
    elif loop == "its split":
        link = made = folder / "sub" / "up"
        target = folder.parent
        link.parent.mkdir()
    else:  # b/out -> elsewhere, whose back -> b: the walk reaches back as b/out/back
        (folder / "out").symlink_to(class_folder(tmp_path / "elsewhere", 1, 50))
        made, link, target = tmp_path / "elsewhere" / "back", folder / "out" / "back", folder
    made.symlink_to(target)
    with pytest.raises(DatasetCorruptError) as err:
        setup(tmp_path / "data")
    assert str(err.value) == (f"{link} links to {os.path.realpath(target)}, a folder that "
                              "contains it, so the class folder would never end; remove that "
                              "link")


@pytest.mark.parametrize("where", ["class folder", "split folder"])
def test_a_broken_link_is_refused_naming_it(tmp_path: Path, where: str) -> None:
    bird = image_folder(tmp_path / "data", {"a": 2, "b": 2})
    link = bird / "test" / ("a/gone.png" if where == "class folder" else "c")
    link.symlink_to(tmp_path / "missing")
    with pytest.raises(DatasetCorruptError) as err:
        setup(tmp_path / "data")
    assert str(err.value) == f"{link} is a broken link (to {tmp_path / 'missing'}); fix or " \
                             "remove it"


# -- every tensor an evaluation consumes is finite -----------------------------------------
class Counting(nn.Module):
    """A linear classifier that counts its calls: a refused batch must cost none."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.linear, self.calls = nn.Linear(features, 2), 0

    def forward(self, x: Tensor) -> Tensor:
        self.calls += 1
        return self.linear(x.flatten(1))


BATCH_FIX = ("fix the data (a NaN or inf input makes every score computed from it "
             "meaningless), or delete a stale cache of it")


def test_a_non_finite_background_stops_time_series_metrics_before_any_work() -> None:
    x = torch.rand(2, 4, 6, 5)  # two batches of 4 series, 6 steps × 5 features
    truth = torch.zeros(2, 4, 6, 5, dtype=torch.bool)
    truth[..., 1:3, 2] = True
    background = torch.rand(2, 4, 6, 5)
    background[1, :, 0, 0] = float("nan")  # the one background row beside each sample
    loader = [(x[i], torch.tensor([0, 1, 0, 1]), truth[i], background[i]) for i in range(2)]
    net = Counting(30)
    with pytest.raises(DatasetCorruptError) as err:
        TimeSeriesMetrics(progress=False)(net, loader, ["grad", "random"])
    assert str(err.value) == ("time-series metrics, batch 1, background: 4 of 120 values are "
                              f"NaN or infinite; {BATCH_FIX}")
    assert net.calls == 0


def test_an_infinite_pixel_stops_accuracy_drop_before_any_work() -> None:
    x = torch.rand(3, 8, 1, 4, 4)
    x[2, 5, 0, 1, 1] = float("inf")
    loader = [(x[i], torch.zeros(8, dtype=torch.long)) for i in range(3)]
    net = Counting(16)
    with pytest.raises(DatasetCorruptError) as err:
        AccuracyDrop(progress=False)(net, loader, ["grad"])
    assert str(err.value) == (f"accuracy drop, batch 2, inputs: 1 of 128 values are NaN or "
                              f"infinite; {BATCH_FIX}")
    assert net.calls == 0
    assert AccuracyDrop(progress=False, limit_batches=2)(net, loader, ["grad"]).num_samples == 16


TINY_SERIES = ["experiment=timeseries", "dataset.num_train=40", "dataset.val_size=8",
               "dataset.num_test=8", "dataset.batch_size=16", "dataset.eval_batch_size=8",
               "dataset.time_steps=10", "dataset.num_features=10", "model=lstm",
               "model.hidden_size=4"]


def poison_background(cache: Path) -> tuple[Path, int]:
    """Put NaN into the cached dataset's background sample; returns the file and count."""
    (path,) = cache.glob("timeseries-*.pt")
    tensors = list(torch.load(path, weights_only=True))
    tensors[-1][2:5, 3] = float("nan")
    torch.save(tuple(tensors), path)
    return path, 3


def test_a_cached_background_that_is_not_finite_is_refused_at_setup(tmp_path: Path) -> None:
    make = partial(TimeSeriesDataModule, num_train=40, num_test=8, val_size=8,
                   time_steps=10, num_features=10, batch_size=16, cache_dir=tmp_path)
    make().setup()
    _, count = poison_background(tmp_path)
    with pytest.raises(DatasetCorruptError) as err:
        make().setup()
    assert str(err.value) == (
        f"Middle_Gaussian's background sample: {count} of 100 values are NaN or infinite; "
        f"delete its cache (timeseries-Middle_Gaussian-*.pt in dataset.cache_dir={tmp_path}) "
        "to generate it again")


def files_in(folder: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_evaluate_refuses_a_nan_background_with_one_line_and_writes_nothing(
        tmp_path: Path, train_cfg) -> None:
    cache = tmp_path / "cache"
    cfg = train_cfg(*TINY_SERIES, f"paths.cache_dir={cache}")
    train(cfg)
    run = Path(cfg.paths.output_dir)
    (run / ".hydra").mkdir()
    OmegaConf.save(cfg, run / ".hydra" / "config.yaml")  # Hydra's copy, made by the CLI
    _, count = poison_background(cache)
    before = files_in(run)
    job = tmp_path / "job"
    done = cli("evaluate", f"ckpt_path={run}", "eval=timeseries", "eval.device=cpu",
               f"hydra.run.dir={job}", data_dir=tmp_path, cache_dir=cache)
    assert done.returncode == 2, done.stderr[-3000:]
    assert error_lines(done) == [
        f"error: Middle_Gaussian's background sample: {count} of 100 values are NaN or "
        f"infinite; delete its cache (timeseries-Middle_Gaussian-*.pt in dataset.cache_dir="
        f"{cache}) to generate it again"], done.stderr[-3000:]
    assert not job.exists() and files_in(run) == before
