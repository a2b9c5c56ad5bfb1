"""Images sorted into class folders, e.g. BIRD: ``<data_dir>/<folder>/{train,valid,test}/<class>/``.

The layout is torchvision's ``ImageFolder``, with the official validation split kept
instead of carving one from train. Hidden entries (``.DS_Store``, ``.ipynb_checkpoints``)
are skipped; any other file in a class folder must be an image, and links are followed
(into sub-folders too; a broken link or a link back to a folder it lies in is refused).
Every image is decoded once into a uint8 cache file and held in memory like the smaller
datasets: BIRD's ~35 000 224×224 images are ~5 GB of uint8, which fits in host and GPU
memory, and then batches cost one index instead of JPEG decoding every epoch. As the
original BIRD code (``ToTensor`` only), pixels are scaled to [0, 1] without normalisation or
augmentation.
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path

import torch
from torchvision.datasets.folder import IMG_EXTENSIONS

from sgt.data.cache import cached_split, fingerprint
from sgt.data.images import read_rgb_stack
from sgt.data.in_memory import ImageDataModule, Split
from sgt.errors import DatasetCorruptError, DatasetNotFoundError


def _visible(name: str) -> bool:
    return not name.startswith(".")


def _refuse_broken_link(path: Path) -> None:
    if path.is_symlink() and not path.exists():
        raise DatasetCorruptError(f"{path} is a broken link (to {os.readlink(path)}); fix or "
                                  "remove it")


def _unreadable(err: OSError) -> None:
    """os.walk would skip a folder it cannot list, and its images with it."""
    raise DatasetCorruptError(f"cannot list {err.filename} ({err.strerror}); make it readable")


def class_folders(split: Path) -> list[str]:
    """The class sub-folders of a split folder (links followed, hidden ones skipped); a
    broken link is refused by name, as it may have been a class."""
    entries = [p for p in split.iterdir() if _visible(p.name)]
    for path in entries:
        _refuse_broken_link(path)
    return sorted(p.name for p in entries if p.is_dir())


def image_files(folder: Path) -> list[Path]:
    """Every image file under a class folder and its sub-folders, sorted; links are
    followed (a link back to a folder it lies in is refused by name: it would never end),
    hidden entries skipped, a broken link or a file that is not an image refused by name."""
    files = []
    # per folder reached, the real folders the walk went through to reach it (itself last)
    ancestors = {str(folder): (os.path.realpath(folder),)}
    for top, dirs, names in os.walk(folder, onerror=_unreadable, followlinks=True):
        dirs[:] = filter(_visible, dirs)  # in place: os.walk descends into these only
        for d in dirs:
            path = os.path.join(top, d)
            real = os.path.realpath(path)
            here = ancestors[top]
            if real in here or os.path.commonpath([real, here[-1]]) == real:  # or a parent
                raise DatasetCorruptError(
                    f"{path} links to {real}, a folder that contains it, so the class folder "
                    "would never end; remove that link")
            ancestors[path] = (*here, real)
        for name in filter(_visible, names):
            path = Path(top, name)
            _refuse_broken_link(path)
            if path.suffix.lower() not in IMG_EXTENSIONS:
                raise DatasetCorruptError(
                    f"{path} is not an image ({', '.join(IMG_EXTENSIONS)}); move it out of the "
                    "class folder (hidden files, starting with '.', are skipped)")
            files.append(path)
    return sorted(files)


class ImageFolderDataModule(ImageDataModule):
    """Class-folder images of one fixed square size, with official train/valid/test splits.

    Args (beyond :class:`~sgt.data.in_memory.InMemoryDataModule`'s):
        folder: the dataset's folder under ``data_dir`` (BIRD: ``bird260``).
        image_size: every image must be ``image_size × image_size`` pixels.
        train_dir / val_dir / test_dir: split folder names; ``val_dir=None`` carves
            ``val_size`` images from train instead.
        cache_dir: where decoded images are cached as uint8 tensors; ``None`` disables it.
    """

    name = "image_folder"
    mean = (0.0, 0.0, 0.0)  # ToTensor only: pixels / 255
    std = (1.0, 1.0, 1.0)

    def __init__(self, *args, folder: str = "bird260", image_size: int = 224,
                 train_dir: str = "train", val_dir: str | None = "valid", test_dir: str = "test",
                 cache_dir: str | Path | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if not isinstance(image_size, int) or image_size <= 0:
            raise ValueError(f"dataset.image_size must be a positive integer, got {image_size!r}")
        self.root = self.data_dir / folder
        self.image_size = image_size
        self.split_dirs = {"train": train_dir, "val": val_dir, "test": test_dir}
        self.cache_dir = None if cache_dir is None else Path(cache_dir)

    @cached_property
    def classes(self) -> list[str]:
        """Class names: the sub-folders of the training split, sorted (label = position)."""
        train = self.root / self.split_dirs["train"]
        if not train.is_dir():
            raise DatasetNotFoundError(
                f"image folder not found: no {train}",
                holding=f"{self.root.name}/ (or set dataset.folder), whose split folders "
                        f"{[d for d in self.split_dirs.values() if d]} hold one folder per "
                        "class")
        classes = class_folders(train)
        if len(classes) < 2:
            raise DatasetCorruptError(
                f"{train} holds {len(classes)} class folder(s) {classes}; a classifier needs "
                "at least two: put each class's images in its own sub-folder")
        return classes

    @property
    def num_classes(self) -> int:  # type: ignore[override]
        return len(self.classes)

    def _files(self, split: str) -> tuple[list[Path], torch.Tensor]:
        """Image paths of a split (sorted by class, then name) and their labels."""
        folder = self.root / str(self.split_dirs[split])
        if not folder.is_dir():
            raise DatasetNotFoundError(f"{folder} does not exist: the {split} split of "
                                       f"{self.root} is missing", fix="add that split folder")
        found = class_folders(folder)
        if found != self.classes:
            extra, lacking = sorted(set(found) - set(self.classes)), sorted(
                set(self.classes) - set(found))
            raise DatasetCorruptError(
                f"class folders of {folder} differ from the training split's: extra {extra}, "
                f"missing {lacking}; every split needs the same class folders"
            )
        samples = [(path, label) for label, name in enumerate(self.classes)
                   for path in image_files(folder / name)]
        if not samples:
            raise DatasetCorruptError(f"{folder} holds no images ({', '.join(IMG_EXTENSIONS)})")
        paths, labels = zip(*samples, strict=True)
        return list(paths), torch.tensor(labels)

    def _load(self, split: str) -> Split:
        paths, labels = self._files(split)
        size = self.image_size

        def decode() -> Split:
            fix = f"resize the images to {size}×{size}, or set dataset.image_size"
            return read_rgb_stack(paths, (size, size), fix=fix), labels

        cache = None if self.cache_dir is None else (
            self.cache_dir / f"{self.root.name}-{split}-{fingerprint(paths, size)}.pt")
        return cached_split(cache, decode)

    def load_split(self, train: bool) -> Split:
        return self._load("train" if train else "test")

    def load_val_split(self) -> Split | None:
        return None if self.split_dirs["val"] is None else self._load("val")
