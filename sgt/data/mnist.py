"""MNIST read straight from the four original idx ``.gz`` files (torchvision's raw layout).

Reading the ``.gz`` files directly means a read-only data folder works as is; torchvision's
download is the fallback for users with a network.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np
import torch

from sgt.data.download import download_into
from sgt.data.in_memory import ImageDataModule, Split
from sgt.errors import DatasetCorruptError, DatasetNotFoundError

FILES = {
    True: ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    False: ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
IMAGE_MAGIC, LABEL_MAGIC = 2051, 2049


def read_idx(path: Path, magic: int) -> np.ndarray:
    """Decode one idx file (big-endian header: magic, dims; then uint8 data)."""
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as err:
        raise DatasetCorruptError(
            f"cannot decompress {path} ({err}); delete it and download MNIST again"
        ) from None
    if len(raw) < 8 or int.from_bytes(raw[:4], "big") != magic:
        found = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else None
        raise DatasetCorruptError(
            f"{path} is not an idx file: magic number {found}, expected {magic}; "
            "replace it with the original MNIST file"
        )
    ndim = magic & 0xFF
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    expected = int(np.prod(dims))
    if len(raw) - offset != expected:
        raise DatasetCorruptError(
            f"{path} is truncated: {len(raw) - offset} data bytes for shape {dims} "
            f"({expected} expected); replace it with the original MNIST file"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(dims)


class MNISTDataModule(ImageDataModule):
    """MNIST (LeCun et al. 1998) with the paper's normalisation; 10 000 official test images."""

    name = "mnist"
    num_classes = 10
    mean = (0.1307,)
    std = (0.3081,)

    @property
    def raw_dir(self) -> Path:
        return self.data_dir / "MNIST" / "raw"

    def _missing(self) -> list[Path]:
        return [self.raw_dir / f for pair in FILES.values() for f in pair
                if not (self.raw_dir / f).is_file()]

    def prepare_data(self) -> None:
        missing = self._missing()
        if not missing:
            return
        if self.download:
            try:
                from torchvision.datasets import MNIST

                def fetch(tmp: Path) -> None:
                    MNIST(root=str(tmp), train=True, download=True)
                    MNIST(root=str(tmp), train=False, download=True)

                download_into(self.data_dir, fetch, [f"MNIST/raw/{f}" for pair in
                                                     FILES.values() for f in pair])
            except Exception as err:  # network or permission failure: report below
                reason = f" (download failed: {type(err).__name__}: {err})"
            else:
                return
        else:
            reason = " (download disabled)"
        raise DatasetNotFoundError(
            f"MNIST not found: looked for {missing[0].name} in {self.raw_dir}{reason}",
            holding="MNIST/raw/*.gz")

    def load_split(self, train: bool) -> Split:
        self.prepare_data()
        images_file, labels_file = (self.raw_dir / f for f in FILES[train])
        images = read_idx(images_file, IMAGE_MAGIC)
        labels = read_idx(labels_file, LABEL_MAGIC)
        # (N, 28, 28) -> (N, 1, 28, 28) uint8
        return torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.copy())
