"""Base DataModule for datasets small enough to live whole in (GPU) memory.

Subclasses only say how to read their files into ``(inputs, labels, *extras)`` tensors;
this class validates what was read, carves a fixed validation split, keeps everything as
tensors (moved to the training device once) and transforms batches on the device.
``extras`` are per-sample tensors an evaluation needs beside the input (a time series'
true box, a review's human rationale): batches carry them after ``(x, y)``.
:class:`ImageDataModule` adds uint8 → normalised float images.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor

from sgt.checks import check_int
from sgt.data.tensor_loader import TensorLoader
from sgt.errors import DatasetCorruptError, SGTError

Split = tuple[Tensor, ...]  # (inputs (N, ...), labels (N,), *extras (N, ...))


class InMemoryDataModule(pl.LightningDataModule):
    """Train/val/test tensors with batched, on-device transforms.

    Args:
        data_dir: root folder holding the dataset (``paths.data_dir``).
        batch_size: training batch size, the global one under DDP: each of the ``W``
            processes takes ``batch_size / W`` samples a step (it must divide evenly), so
            a recipe means the same on any number of devices.
        eval_batch_size: batch size for validation and test.
        val_size: images carved from the training set for model selection (ignored when
            the dataset has its own validation set, see :meth:`load_val_split`).
        split_seed: fixes the validation split, independently of the run's seed.
        seed: shuffling seed of the training loader.
        on_device: move the tensors to the training device once, in ``setup``.
        download: allow torchvision's download when the files are missing.
    """

    name: str = "dataset"
    modality: str = "image"
    num_classes: int = 0

    def __init__(
        self,
        data_dir: str | Path = "data",
        batch_size: int = 512,
        eval_batch_size: int = 1000,
        val_size: int = 5000,
        split_seed: int = 0,
        seed: int = 0,
        on_device: bool = True,
        download: bool = True,
    ) -> None:
        super().__init__()
        check_int(batch_size, "dataset.batch_size")
        check_int(eval_batch_size, "dataset.eval_batch_size")
        check_int(val_size, "dataset.val_size", low=0)
        self.data_dir = Path(data_dir)
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.val_size, self.split_seed, self.seed = val_size, split_seed, seed
        self.on_device, self.download = on_device, download
        self.splits: dict[str, Split] = {}

    # -- what a subclass provides -------------------------------------------------------
    def load_split(self, train: bool) -> Split:
        """Read the official train or test set: ``(inputs (N, ...), labels (N,), *extras)``."""
        raise NotImplementedError

    def load_val_split(self) -> Split | None:
        """The dataset's own validation set, if it has one; ``None`` carves it from train."""
        return None

    def model_kwargs(self) -> dict[str, Any]:
        """What the model's constructor needs from the data (``hydra.utils.instantiate(
        cfg.model, **datamodule.model_kwargs())``): the class count; text adds the vocabulary,
        time series the number of input features."""
        return {"num_classes": self.num_classes}

    def modality_kwargs(self) -> dict[str, Any]:
        """Arguments of the data's :mod:`sgt.features` modality (text: which ids are padding,
        separators and query), so training and evaluation agree on what a feature is."""
        return {}

    def train_transform(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        """A stored training batch -> model input, on its device (as stored by default)."""
        return x

    def eval_transform(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        """A stored validation/test batch -> model input, on its device."""
        return x

    # -- shared machinery ---------------------------------------------------------------
    def _checked(self, split: Split, what: str) -> Split:
        x, y, *extras = split
        if len(y) == 0:
            raise DatasetCorruptError(f"{self.name} {what} set under {self.data_dir} is empty; "
                                      "restore its files")
        if len(x) != len(y):
            raise DatasetCorruptError(
                f"{self.name} {what} set has {len(x)} inputs but {len(y)} labels; restore "
                "the files so that every input has its label"
            )
        bad = (y < 0) | (y >= self.num_classes)
        if bool(bad.any()):
            raise DatasetCorruptError(
                f"{self.name} {what} labels must be in [0, {self.num_classes - 1}], found "
                f"{int(y[bad][0])} (at index {int(bad.nonzero()[0])}); check the label files"
            )
        if x.is_floating_point() and not bool(torch.isfinite(x).all()):
            first = int((~torch.isfinite(x)).reshape(len(x), -1).any(1).nonzero()[0])
            raise DatasetCorruptError(f"{self.name} {what} inputs contain NaN or inf (first "
                                      f"at index {first}); fix or drop those samples")
        if any(len(e) != len(y) for e in extras):
            raise DatasetCorruptError(f"{self.name} {what} set: every per-sample tensor needs "
                                      f"{len(y)} rows")
        if what == "training" and len(y.unique()) < 2:
            raise DatasetCorruptError(f"{self.name} training set under {self.data_dir} holds "
                                      f"one class only (label {int(y[0])}); a classifier "
                                      "needs examples of at least two classes")
        return (x, y.long(), *extras)

    def setup(self, stage: str | None = None) -> None:
        # Read once (``train`` reads early, so bad files fail before any output is written);
        # move to the device whenever a trainer says which (a no-op once they are there).
        if not self.splits:
            self.splits = self._read_splits()
        device = self._device()
        if device is not None:
            self.splits = {k: tuple(t.to(device) for t in split)
                           for k, split in self.splits.items()}

    def _read_splits(self) -> dict[str, Split]:
        train = self._checked(self.load_split(train=True), "training")
        official_val = self.load_val_split()
        if official_val is not None:
            val = self._checked(official_val, "validation")
        else:
            n = len(train[1])
            if self.val_size >= n:
                raise SGTError(f"dataset.val_size={self.val_size} leaves no training data "
                               f"({n} samples); set dataset.val_size below {n}")
            g = torch.Generator().manual_seed(self.split_seed)
            perm = torch.randperm(n, generator=g)
            val_idx, train_idx = perm[: self.val_size], perm[self.val_size :]
            train, val = (tuple(t[train_idx] for t in train), tuple(t[val_idx] for t in train))
        if len(val[1]) == 0:
            raise SGTError(f"{self.name} has no validation data (dataset.val_size=0 and no "
                           "validation split): models are selected on validation, never on "
                           "the test set; set dataset.val_size > 0")
        if self.batch_size > len(train[1]):
            raise SGTError(f"dataset.batch_size={self.batch_size} is larger than the "
                           f"{len(train[1])} training samples; set dataset.batch_size <= "
                           f"{len(train[1])}")
        return {
            "train": train,
            "val": val,
            "test": self._checked(self.load_split(train=False), "test"),
        }

    def _device(self) -> torch.device | None:
        trainer = self.trainer
        if not self.on_device or trainer is None:
            return None
        device = trainer.strategy.root_device
        return device if device.type != "cpu" else None

    def process_batch_size(self, world_size: int) -> int:
        """Each of ``world_size`` processes' share of the global training batch."""
        if self.batch_size % world_size:
            raise SGTError(f"dataset.batch_size={self.batch_size} is the global batch of all "
                           f"{world_size} processes and must divide evenly between them; "
                           f"choose a multiple of {world_size}")
        return self.batch_size // world_size

    def _loader(self, split: str, train: bool) -> TensorLoader:
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer else (0, 1)
        return TensorLoader(
            self.splits[split],
            self.process_batch_size(world) if train else self.eval_batch_size,
            transform=self.train_transform if train else self.eval_transform,
            shuffle=train,
            seed=self.seed,
            rank=rank,
            world_size=world,
        )

    def example_input(self) -> Tensor:
        """One validation input as the model sees it: Lightning's model summary runs it to
        report input/output sizes and FLOPs."""
        return self.eval_transform(self.splits["val"][0][:1], None)

    def train_dataloader(self) -> TensorLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> TensorLoader:
        return self._loader("val", train=False)

    def test_dataloader(self) -> TensorLoader:
        return self._loader("test", train=False)


class ImageDataModule(InMemoryDataModule):
    """uint8 ``(N, C, H, W)`` images, normalised with the dataset's ``mean``/``std`` per batch
    on the device; subclasses may add batched training augmentation (:meth:`augment`)."""

    mean: Sequence[float] = (0.0,)
    std: Sequence[float] = (1.0,)

    def augment(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        """Training-time augmentation of a uint8 batch on its device (none by default)."""
        return x

    def normalize(self, x: Tensor) -> Tensor:
        """uint8 ``(B, C, H, W)`` -> normalised float, on the batch's device."""
        mean, std = self._statistics(x.device)
        return (x.float() / 255.0 - mean) / std

    @functools.cache  # noqa: B019 (one entry per device; the module lives as long as its run)
    def _statistics(self, device: torch.device) -> tuple[Tensor, Tensor]:
        """``(1, C, 1, 1)`` mean and std on ``device``, made once: a copy from the host at
        every batch would wait for the GPU."""
        return (torch.tensor(self.mean, device=device).view(1, -1, 1, 1),
                torch.tensor(self.std, device=device).view(1, -1, 1, 1))

    def train_transform(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        return self.normalize(self.augment(x, generator))

    def eval_transform(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        return self.normalize(x)
