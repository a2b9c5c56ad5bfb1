"""CIFAR-10 (Krizhevsky 2009) from either of two on-disk layouts, held as uint8 tensors.

- ``torchvision``: the official pickles in ``<data_dir>/cifar-10-batches-py/``
  (``data_batch_1..5``, ``test_batch``), downloaded by torchvision when missing and allowed.
- ``png``: the same pixels as PNG files: the 50 000 training images as ConvNetJS sprite
  sheets in ``<data_dir>/cifar10-convnetjs/`` (``cifar10_batch_{0..49}.png``, one image
  per 1024-pixel row, labels in ``cifar10_labels.txt``) and the 10 000 test images as
  ``<data_dir>/cifar10-test-png/test/<index>_<class>.png`` with ``labels.txt``.
PNGs are decoded once into a uint8 cache file (``cache_dir``), never into ``data_dir``.
Normalisation and augmentation follow the original ``train_CIFAR.py``: ImageNet mean/std,
random 32×32 crop of the 4-pixel zero-padded image, horizontal flip.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from sgt.data.cache import cached_split, fingerprint
from sgt.data.download import download_into
from sgt.data.images import read_rgb_stack
from sgt.data.in_memory import ImageDataModule, Split
from sgt.data.transforms import random_crop_flip
from sgt.errors import DatasetCorruptError, DatasetNotFoundError

SOURCES = ("torchvision", "png")
PICKLE_DIR = "cifar-10-batches-py"
PICKLE_FILES = {True: [f"data_batch_{i}" for i in range(1, 6)], False: ["test_batch"]}
SHEET_DIR, SHEETS, SHEET_LABELS = "cifar10-convnetjs", 50, "cifar10_labels.txt"
TEST_PNG_DIR = "cifar10-test-png"
TRAIN_SIZE, SIDE = 50_000, 32
PNG_FIX = "restore the file from cifar10-convnetjs/ or cifar10-test-png/ (see their SOURCE.md)"


def read_pickle_batch(path: Path) -> tuple[Tensor, Tensor]:
    """One torchvision/official batch file -> ``(uint8 (N, 3, 32, 32), int64 (N,))``."""
    try:
        with path.open("rb") as f:
            entry = pickle.load(f, encoding="latin1")
    except Exception as err:  # any unpickling failure means the file is not a batch
        raise DatasetCorruptError(
            f"cannot unpickle {path} ({type(err).__name__}: {err}); replace it with the "
            "original CIFAR-10 python batch file"
        ) from None
    if isinstance(entry, dict):  # Python-3 pickles may have bytes keys
        entry = {k.decode() if isinstance(k, bytes) else k: v for k, v in entry.items()}
    data = entry.get("data") if isinstance(entry, dict) else None
    labels = entry.get("labels") if isinstance(entry, dict) else None
    if (not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2
            or data.shape[1] != 3 * SIDE * SIDE or labels is None
            or len(labels) != data.shape[0]):
        raise DatasetCorruptError(
            f"{path} is not a CIFAR-10 batch: expected a dict with 'data' (uint8, N×3072) "
            "and N 'labels'; replace it with the original CIFAR-10 python batch file"
        )
    # Rows are CHW planes: 1024 red, 1024 green, 1024 blue values.
    x = torch.from_numpy(data.copy()).view(-1, 3, SIDE, SIDE)
    return x, torch.as_tensor(np.asarray(labels, dtype=np.int64))


def read_labels(path: Path, count: int) -> Tensor:
    """The first ``count`` integer labels of a one-label-per-line file."""
    try:
        labels = np.loadtxt(path, dtype=np.int64, ndmin=1)
    except ValueError as err:
        raise DatasetCorruptError(f"{path} must hold one integer label per line ({err}); "
                                  f"{PNG_FIX}") from None
    if len(labels) < count:
        raise DatasetCorruptError(f"{path} has {len(labels)} labels, {count} are needed; "
                                  f"{PNG_FIX}")
    return torch.from_numpy(labels[:count].copy())


def test_png_files(folder: Path, classes: list[str]) -> tuple[list[Path], Tensor]:
    """``test/<index>_<class>.png`` files in index order, and their labels."""
    found: dict[int, tuple[Path, int]] = {}
    for path in (folder / "test").iterdir():
        index, _, name = path.stem.partition("_")
        if path.suffix != ".png" or not index.isdigit() or name not in classes:
            raise DatasetCorruptError(
                f"unexpected file {path}: test images are named <index>_<class>.png with a "
                f"class from {folder / 'labels.txt'} ({', '.join(classes)}); remove it"
            )
        if int(index) in found:
            raise DatasetCorruptError(f"{path} and {found[int(index)][0]} are both test image "
                                      f"{int(index)}; remove one")
        found[int(index)] = (path, classes.index(name))
    if not found:
        raise DatasetCorruptError(f"{folder / 'test'} holds no test images; {PNG_FIX}")
    missing = sorted(set(range(max(found) + 1)) - set(found))
    if missing:
        raise DatasetCorruptError(
            f"{folder / 'test'} lacks test image {missing[0]} ({len(missing)} of the indices "
            f"0..{max(found)} missing); {PNG_FIX}"
        )
    paths, labels = zip(*(found[i] for i in range(len(found))), strict=True)
    return list(paths), torch.tensor(labels)


def decode_sheets(paths: list[Path]) -> Tensor:
    """ConvNetJS sheets (1000 rows × 1024 RGB pixels each) -> uint8 ``(N, 3, 32, 32)``."""
    sheets = read_rgb_stack(paths, (1000, SIDE * SIDE), fix=PNG_FIX)  # (S, 3, 1000, 1024)
    # (S, 3, 1000, 32·32) -> (S·1000, 3, 32, 32): each sheet row is one row-major image.
    return sheets.permute(0, 2, 1, 3).reshape(-1, 3, SIDE, SIDE).contiguous()


class CIFAR10DataModule(ImageDataModule):
    """CIFAR-10 with the paper's normalisation and augmentation; 10 000 official test images.

    Args (beyond :class:`~sgt.data.in_memory.InMemoryDataModule`'s):
        source: ``torchvision`` or ``png`` (see the module docstring); ``None`` picks the
            first complete layout under ``data_dir``, else downloads the torchvision one.
        cache_dir: where decoded PNGs are cached as uint8 tensors; ``None`` disables it.
        crop_padding: zero padding of the random crop (0 disables the crop).
        flip: random horizontal flips.
    """

    name = "cifar10"
    num_classes = 10
    mean = (0.485, 0.456, 0.406)  # ImageNet statistics, as the original train_CIFAR.py
    std = (0.229, 0.224, 0.225)

    def __init__(self, *args, source: str | None = None, cache_dir: str | Path | None = None,
                 crop_padding: int = 4, flip: bool = True, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if source not in (None, *SOURCES):
            raise ValueError(f"dataset.source must be one of {list(SOURCES)} or null "
                             f"(auto-detect), got {source!r}")
        if not isinstance(crop_padding, int) or crop_padding < 0:
            raise ValueError(f"dataset.crop_padding must be an integer >= 0, got {crop_padding!r}")
        self.source = source
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self.crop_padding, self.flip = crop_padding, flip

    # -- which layout ---------------------------------------------------------------------
    def _required(self, source: str) -> list[Path]:
        """Files a layout needs, in the order they are reported when missing."""
        if source == "torchvision":
            return [self.data_dir / PICKLE_DIR / f for f in sum(PICKLE_FILES.values(), [])]
        sheets = self.data_dir / SHEET_DIR
        tests = self.data_dir / TEST_PNG_DIR
        return [*(sheets / f"cifar10_batch_{k}.png" for k in range(SHEETS)),
                sheets / SHEET_LABELS, tests / "labels.txt", tests / "test"]

    def _missing(self, source: str) -> Path | None:
        return next((p for p in self._required(source) if not p.exists()), None)

    def resolve_source(self) -> str:
        """The layout to read: the configured one, else the first complete one on disk."""
        candidates = [self.source] if self.source else list(SOURCES)
        for source in candidates:
            if self._missing(source) is None:
                return source
        if "torchvision" in candidates and self.download:
            try:
                from torchvision.datasets import CIFAR10

                download_into(self.data_dir,
                              lambda tmp: CIFAR10(root=str(tmp), train=True, download=True),
                              [PICKLE_DIR])
            except Exception as err:  # network or permission failure: report below
                reason = f" (download failed: {type(err).__name__}: {err})"
            else:
                return "torchvision"
        else:
            reason = "" if "torchvision" not in candidates else " (download disabled)"
        looked = "; ".join(f"{s} layout: no {self._missing(s)}" for s in candidates)
        raise DatasetNotFoundError(
            f"CIFAR-10 not found under {self.data_dir} ({looked}){reason}",
            holding=f"{PICKLE_DIR}/ or {SHEET_DIR}/ + {TEST_PNG_DIR}/ (with a network, "
                    "dataset.source=torchvision downloads the first)")

    def prepare_data(self) -> None:
        self.resolve_source()

    # -- reading ---------------------------------------------------------------------------
    def load_split(self, train: bool) -> Split:
        if self.resolve_source() == "torchvision":
            parts = [read_pickle_batch(self.data_dir / PICKLE_DIR / f) for f in PICKLE_FILES[train]]
            return torch.cat([x for x, _ in parts]), torch.cat([y for _, y in parts])
        return self._load_png(train)

    def _load_png(self, train: bool) -> Split:
        if train:
            sheets = self.data_dir / SHEET_DIR
            files = [sheets / f"cifar10_batch_{k}.png" for k in range(SHEETS)]
            label_file = sheets / SHEET_LABELS

            def decode() -> Split:
                return decode_sheets(files), read_labels(label_file, TRAIN_SIZE)
        else:
            folder = self.data_dir / TEST_PNG_DIR
            label_file = folder / "labels.txt"
            files, labels = test_png_files(folder, label_file.read_text().split())

            def decode() -> Split:
                return read_rgb_stack(files, (SIDE, SIDE), fix=PNG_FIX), labels

        split = "train" if train else "test"
        cache = None if self.cache_dir is None else (
            self.cache_dir / f"cifar10-png-{split}-{fingerprint([*files, label_file])}.pt")
        return cached_split(cache, decode)

    # -- batches ---------------------------------------------------------------------------
    def augment(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        return random_crop_flip(x, self.crop_padding, self.flip, generator)
