"""MNISTDataModule on the real files: sizes, fixed split, normalisation, shuffling."""

import gzip
from pathlib import Path

import pytest
import torch

from sgt.data import DatasetNotFoundError, MNISTDataModule
from tests.conftest import SHARED_DATA, needs_mnist


@needs_mnist
def test_real_mnist_sizes_split_and_normalisation():
    dm = MNISTDataModule(SHARED_DATA, batch_size=512, val_size=5000)
    dm.setup()
    sizes = {k: len(v[1]) for k, v in dm.splits.items()}
    assert sizes == {"train": 55000, "val": 5000, "test": 10000}
    x, _ = dm.splits["train"]
    assert x.dtype == torch.uint8 and x.shape[1:] == (1, 28, 28)
    batch, labels = next(iter(dm.test_dataloader()))
    assert batch.dtype == torch.float32 and labels.shape == (1000,)
    whole = dm.eval_transform(dm.splits["train"][0][:20000], None)
    assert abs(whole.mean().item()) < 0.02 and abs(whole.std().item() - 1) < 0.02
    # The validation split is fixed by split_seed, not by the run's seed.
    other = MNISTDataModule(SHARED_DATA, val_size=5000, seed=999)
    other.setup()
    assert torch.equal(other.splits["val"][1], dm.splits["val"][1])


@needs_mnist
def test_training_loader_is_shuffled_per_epoch_and_replays_an_epoch():
    dm = MNISTDataModule(SHARED_DATA, batch_size=256, seed=3)
    dm.setup()
    loader = dm.train_dataloader()
    first = next(iter(loader))[1]
    loader.set_epoch(1)
    second = next(iter(loader))[1]
    loader.set_epoch(0)
    assert not torch.equal(first, second)
    assert torch.equal(next(iter(loader))[1], first)
    assert len(loader) == -(-55000 // 256)


def test_missing_files_name_the_folder_and_the_fix(tmp_path: Path):
    dm = MNISTDataModule(tmp_path / "nowhere", download=False)
    with pytest.raises(DatasetNotFoundError) as err:
        dm.setup()
    message = str(err.value)
    assert str(tmp_path / "nowhere" / "MNIST" / "raw") in message
    assert "SGT_DATA_DIR" in message


def test_small_generated_files_in_the_real_layout(tmp_path: Path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)

    def write(name, magic, dims, data: bytes):
        header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims)
        with gzip.open(raw / name, "wb") as f:
            f.write(header + data)

    for split, n in (("train", 30), ("t10k", 10)):
        images = torch.randint(0, 256, (n, 28, 28), dtype=torch.uint8)
        write(f"{split}-images-idx3-ubyte.gz", 2051, (n, 28, 28), images.numpy().tobytes())
        write(f"{split}-labels-idx1-ubyte.gz", 2049, (n,), bytes(i % 10 for i in range(n)))
    dm = MNISTDataModule(tmp_path, batch_size=8, val_size=5, download=False)
    dm.setup()
    assert {k: len(v[1]) for k, v in dm.splits.items()} == {"train": 25, "val": 5, "test": 10}
    assert dm.splits["test"][1].tolist() == [i % 10 for i in range(10)]
