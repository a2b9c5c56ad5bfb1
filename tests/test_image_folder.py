"""Class-folder images (BIRD's layout): official splits, errors naming files, the cache, and
``experiment=bird`` end to end on a generated folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import sgt.data.image_folder as image_folder
from experiments.train import train
from sgt.data import DatasetCorruptError, DatasetNotFoundError, ImageFolderDataModule

CLASSES = ["albatross", "barn owl", "crow"]
SPLITS = {"train": 4, "valid": 2, "test": 2}


def make_folder(root: Path, size: int = 32, name: str = "bird260") -> Path:
    """``root/name/{train,valid,test}/<class>/`` with PNGs (exact pixels) and one JPEG each."""
    rng = np.random.default_rng(0)
    for split, count in SPLITS.items():
        for c, cls in enumerate(CLASSES):
            folder = root / name / split / cls
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
                pixels[0, 0] = c  # the class, readable back from the image
                suffix = "jpg" if i == count - 1 else "png"
                Image.fromarray(pixels).save(folder / f"{i:03d}.{suffix}")
    return root / name


def datamodule(root: Path, **kwargs) -> ImageFolderDataModule:
    kwargs = {"image_size": 32, "batch_size": 4, "eval_batch_size": 4, **kwargs}
    return ImageFolderDataModule(data_dir=root, **kwargs)


def test_official_splits_are_kept_and_labels_follow_the_sorted_class_folders(tmp_path):
    make_folder(tmp_path)
    dm = datamodule(tmp_path)
    assert dm.classes == CLASSES and dm.num_classes == 3
    dm.setup()
    sizes = {s: len(dm.splits[s][1]) for s in ("train", "val", "test")}
    assert sizes == {"train": 12, "val": 6, "test": 6}  # valid/ is not carved from train
    x, y = dm.splits["train"]
    assert x.shape == (12, 3, 32, 32) and x.dtype == torch.uint8
    assert torch.equal(y, torch.tensor([0] * 4 + [1] * 4 + [2] * 4))
    png = np.array(Image.open(tmp_path / "bird260" / "train" / "crow" / "000.png"))
    assert torch.equal(x[8].permute(1, 2, 0), torch.from_numpy(png))
    batch, _ = next(iter(dm.test_dataloader()))
    assert torch.allclose(batch, dm.splits["test"][0][:4].float() / 255)  # ToTensor only


def test_without_a_valid_folder_setting_the_validation_set_is_carved_from_train(tmp_path):
    make_folder(tmp_path)
    dm = datamodule(tmp_path, val_dir=None, val_size=3)
    dm.setup()
    assert [len(dm.splits[s][1]) for s in ("train", "val", "test")] == [9, 3, 6]


def test_an_image_of_another_size_names_the_file_and_the_fix(tmp_path):
    root = make_folder(tmp_path)
    odd = root / "valid" / "crow" / "001.jpg"
    Image.fromarray(np.zeros((40, 32, 3), np.uint8)).save(odd)
    with pytest.raises(DatasetCorruptError, match=rf"{odd} is 32×40 .* 32×32 were expected; "
                                                  "resize the images"):
        datamodule(tmp_path).setup()


def test_an_undecodable_image_names_the_file(tmp_path):
    root = make_folder(tmp_path)
    broken = root / "test" / "albatross" / "000.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(DatasetCorruptError, match=f"cannot decode image {broken}"):
        datamodule(tmp_path).setup()


def test_splits_must_have_the_same_classes(tmp_path):
    root = make_folder(tmp_path)
    (root / "test" / "crow").rename(root / "test" / "raven")
    with pytest.raises(DatasetCorruptError, match=r"extra \['raven'\], missing \['crow'\]"):
        datamodule(tmp_path).setup()


def test_missing_folder_says_where_it_looked(tmp_path):
    with pytest.raises(DatasetNotFoundError,
                       match=f"no {tmp_path / 'bird260' / 'train'}.*SGT_DATA_DIR"):
        _ = datamodule(tmp_path).num_classes


def test_second_setup_comes_from_the_cache(tmp_path, monkeypatch):
    make_folder(tmp_path)
    first = datamodule(tmp_path, cache_dir=tmp_path / "cache")
    first.setup()
    assert len(list((tmp_path / "cache").glob("bird260-*.pt"))) == 3

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded although a cache exists")

    monkeypatch.setattr(image_folder, "read_rgb_stack", no_decoding)
    again = datamodule(tmp_path, cache_dir=tmp_path / "cache")
    again.setup()
    for split in ("train", "val", "test"):
        assert all(torch.equal(a, b) for a, b in zip(first.splits[split], again.splits[split],
                                                       strict=True))


@pytest.mark.parametrize("model", [
    pytest.param(["model.weights=null"], id="vgg16", marks=pytest.mark.slow),  # ~30 s on CPU
    pytest.param(["model=resnet20"], id="resnet20"),  # the BIRD recipe only gives VGG16 weights
])
def test_bird_experiment_runs_end_to_end(tmp_path, train_cfg, cache_dir, model):
    """The paper's BIRD config (Adam, StepLR, early stopping on valid/) on 32×32 images."""
    make_folder(tmp_path / "data")
    cfg = train_cfg("experiment=bird", *model, "dataset.image_size=32",
                    "dataset.batch_size=4", "dataset.eval_batch_size=6",
                    "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
                    "trainer.limit_test_batches=1", "~callbacks.last_checkpoint",
                    f"paths.cache_dir={cache_dir}", data_dir=tmp_path / "data")
    metrics = train(cfg)
    saved = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    assert saved["test/acc"] == metrics["test/acc"] and 0.0 <= saved["test/acc"] <= 1.0
    assert saved["test/kl"] > 0 and saved["epochs"] == 1
