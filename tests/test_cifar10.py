"""CIFAR-10: both on-disk layouts through the real loader, the cache, errors, augmentation."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import sgt.data.cifar10 as cifar10
from sgt.data import CIFAR10DataModule, DatasetCorruptError, DatasetNotFoundError
from sgt.data.transforms import random_crop_flip
from tests.conftest import CIFAR10_PNG, SHARED_DATA, needs_cifar10

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
           "truck"]


def write_pickle_batches(root: Path, per_batch: int = 60, test: int = 100) -> dict[str, dict]:
    """The real ``cifar-10-batches-py`` format: protocol-2 dicts of uint8 rows + labels."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    batches = {}
    for name, n in [*((f"data_batch_{i}", per_batch) for i in range(1, 6)), ("test_batch", test)]:
        batches[name] = {
            "batch_label": f"{name} of 6",
            "labels": rng.integers(0, 10, n).tolist(),
            "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            "filenames": [f"img_{i}.png" for i in range(n)],
        }
        (folder / name).write_bytes(pickle.dumps(batches[name], protocol=2))
    meta = {"label_names": CLASSES, "num_cases_per_batch": per_batch, "num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return batches


def test_torchvision_layout_is_read_as_chw_images_in_order(tmp_path):
    batches = write_pickle_batches(tmp_path)
    dm = CIFAR10DataModule(data_dir=tmp_path, download=False, val_size=30, batch_size=64)
    assert dm.resolve_source() == "torchvision"
    x, y = dm.load_split(train=True)
    assert x.shape == (300, 3, 32, 32) and x.dtype == torch.uint8
    first = batches["data_batch_1"]
    # Row = 1024 red, then green, then blue values, each plane row-major.
    assert torch.equal(x[0, 1, 2], torch.from_numpy(first["data"][0, 1024 + 64 : 1024 + 96]))
    assert y[:60].tolist() == first["labels"]
    assert y[240:].tolist() == batches["data_batch_5"]["labels"]
    xt, yt = dm.load_split(train=False)
    assert xt.shape == (100, 3, 32, 32) and yt.tolist() == batches["test_batch"]["labels"]
    dm.setup()
    assert [len(dm.splits[s][1]) for s in ("train", "val", "test")] == [270, 30, 100]


@pytest.mark.parametrize("content", [b"not a pickle at all", pickle.dumps([1, 2, 3]),
                                     pickle.dumps({"data": np.zeros((4, 100), np.uint8),
                                                   "labels": [0] * 4})])
def test_a_wrong_pickle_names_the_file(tmp_path, content):
    write_pickle_batches(tmp_path)
    bad = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    bad.write_bytes(content)
    with pytest.raises(DatasetCorruptError, match=f"{bad}.*original CIFAR-10"):
        CIFAR10DataModule(data_dir=tmp_path, download=False).load_split(train=True)


def test_missing_data_says_where_it_looked_and_what_to_set(tmp_path):
    dm = CIFAR10DataModule(data_dir=tmp_path, download=False)
    with pytest.raises(DatasetNotFoundError) as err:
        dm.prepare_data()
    message = str(err.value)
    for part in ("cifar-10-batches-py/data_batch_1", "cifar10-convnetjs/cifar10_batch_0.png",
                 "download disabled", "SGT_DATA_DIR", "paths.data_dir"):
        assert part in message, part
    with pytest.raises(DatasetNotFoundError, match="png layout") as err:
        CIFAR10DataModule(data_dir=tmp_path, source="png").prepare_data()
    assert "torchvision layout" not in str(err.value)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="dataset.source must be one of"):
        CIFAR10DataModule(source="kaggle")
    with pytest.raises(ValueError, match="dataset.crop_padding"):
        CIFAR10DataModule(crop_padding=-1)


# -- the real PNG layout (shared data) ---------------------------------------------------


@pytest.fixture(scope="module")
def real(cache_dir) -> CIFAR10DataModule:
    dm = CIFAR10DataModule(data_dir=SHARED_DATA, cache_dir=cache_dir, download=False)
    dm.setup()
    return dm


@needs_cifar10
def test_png_layout_gives_the_whole_dataset_with_its_known_statistics(real):
    assert real.resolve_source() == "png"
    train, val, test = (real.splits[s] for s in ("train", "val", "test"))
    assert len(train[1]) + len(val[1]) == 50_000 and len(val[1]) == 5000
    assert test[0].shape == (10_000, 3, 32, 32) and test[0].dtype == torch.uint8
    assert torch.bincount(test[1]).tolist() == [1000] * 10
    means = test[0].float().mean(dim=(0, 2, 3)) / 255
    assert torch.allclose(means, torch.tensor([0.4942, 0.4851, 0.4504]), atol=2e-4)
    everything = torch.cat([train[0], val[0]]).float().mean(dim=(0, 2, 3)) / 255
    assert torch.allclose(everything, torch.tensor([0.4914, 0.4822, 0.4465]), atol=2e-4)


@needs_cifar10
def test_sheet_rows_and_test_pngs_are_the_same_images(real):
    sheet_50 = cifar10.decode_sheets([CIFAR10_PNG[0] / "cifar10_batch_50.png"])
    assert torch.equal(sheet_50, real.splits["test"][0][:1000])


@needs_cifar10
def test_second_load_comes_from_the_cache_without_decoding(real, cache_dir, monkeypatch):
    assert len(list(cache_dir.glob("cifar10-png-*.pt"))) == 2

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded although a cache exists")

    monkeypatch.setattr(cifar10, "read_rgb_stack", no_decoding)
    again = CIFAR10DataModule(data_dir=SHARED_DATA, cache_dir=cache_dir, download=False)
    x, y = again.load_split(train=False)
    assert torch.equal(x, real.splits["test"][0]) and torch.equal(y, real.splits["test"][1])


def png_test_folder(root: Path, count: int = 5) -> Path:
    """A small ``cifar10-test-png`` folder in the real layout (the training sheets real)."""
    from PIL import Image

    folder = root / "cifar10-test-png"
    (folder / "test").mkdir(parents=True)
    (folder / "labels.txt").write_text("\n".join(CLASSES) + "\n")
    rng = np.random.default_rng(0)
    for i in range(count):
        pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / "test" / f"{i}_{CLASSES[i % 10]}.png")
    (root / "cifar10-convnetjs").symlink_to(CIFAR10_PNG[0])
    return folder / "test"


@needs_cifar10
def test_test_pngs_decode_and_an_edit_invalidates_the_cache(tmp_path):
    test = png_test_folder(tmp_path)
    dm = CIFAR10DataModule(data_dir=tmp_path, cache_dir=tmp_path / "cache", download=False)
    x, y = dm.load_split(train=False)
    assert x.shape == (5, 3, 32, 32) and y.tolist() == [0, 1, 2, 3, 4]
    from PIL import Image

    assert torch.equal(x[3].permute(1, 2, 0), torch.from_numpy(
        np.array(Image.open(test / "3_cat.png"))))
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(test / "3_cat.png")
    x2, _ = dm.load_split(train=False)
    assert int(x2[3].max()) == 0 and len(list((tmp_path / "cache").glob("*test*.pt"))) == 2


@needs_cifar10
@pytest.mark.parametrize("damage", ["truncated", "wrong size", "misnamed", "gap"])
def test_a_broken_test_png_names_the_file(tmp_path, damage):
    from PIL import Image

    test = png_test_folder(tmp_path)
    target = test / "2_bird.png"
    if damage == "truncated":
        target.write_bytes(target.read_bytes()[:100])
    elif damage == "wrong size":
        Image.fromarray(np.zeros((30, 32, 3), np.uint8)).save(target)
    elif damage == "misnamed":
        target.rename(target := test / "2_parrot.png")
    else:
        target.unlink()
        target = Path(f"{test} lacks test image 2")
    with pytest.raises(DatasetCorruptError, match=str(target)):
        CIFAR10DataModule(data_dir=tmp_path, download=False).load_split(train=False)


@needs_cifar10
def test_a_corrupt_sprite_sheet_names_the_file(tmp_path):
    sheets = tmp_path / "cifar10-convnetjs"
    sheets.mkdir()
    for f in CIFAR10_PNG[0].iterdir():
        (sheets / f.name).symlink_to(f)
    (tmp_path / "cifar10-test-png").symlink_to(CIFAR10_PNG[1])
    bad = sheets / "cifar10_batch_7.png"
    bad.unlink()
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    with pytest.raises(DatasetCorruptError, match=f"cannot decode image {bad}"):
        CIFAR10DataModule(data_dir=tmp_path, download=False).load_split(train=True)


# -- augmentation ------------------------------------------------------------------------


def crops(image: torch.Tensor, padding: int) -> list[tuple[int, int, bool, torch.Tensor]]:
    """Every (dy, dx, flipped) crop of the zero-padded image."""
    padded = torch.nn.functional.pad(image, (padding,) * 4)
    h, w = image.shape[1:]
    return [(dy, dx, flipped, c.flip(-1) if flipped else c)
            for dy in range(2 * padding + 1) for dx in range(2 * padding + 1)
            for flipped in (False, True)
            for c in [padded[:, dy : dy + h, dx : dx + w]]]


def test_each_image_is_a_padded_crop_possibly_mirrored():
    x = torch.randint(1, 256, (64, 3, 8, 8), dtype=torch.uint8)  # no zeros: padding shows
    out = random_crop_flip(x, 2, True, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == torch.uint8
    seen = set()
    for image, result in zip(x, out, strict=True):
        matches = [(dy, dx, f) for dy, dx, f, c in crops(image, 2) if torch.equal(c, result)]
        assert matches, "output is not a crop of the padded input"
        seen.update(matches)
    assert {f for *_, f in seen} == {False, True}
    assert {dy for dy, *_ in seen} == set(range(5)) and {dx for _, dx, _ in seen} == set(range(5))


def test_augmentation_is_reproducible_under_a_generator():
    x = torch.randint(0, 256, (32, 3, 32, 32), dtype=torch.uint8)
    a = random_crop_flip(x, 4, True, torch.Generator().manual_seed(1))
    b = random_crop_flip(x, 4, True, torch.Generator().manual_seed(1))
    c = random_crop_flip(x, 4, True, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(random_crop_flip(x, 0, False, None), x)


class OpCounter(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += 1
        return func(*args, **(kwargs or {}))


def test_augmentation_runs_the_same_ops_for_any_batch_size():
    """No per-image loop: 4 and 256 images cost the same number of tensor operations."""
    counts = []
    for batch in (4, 256):
        x = torch.zeros(batch, 3, 32, 32, dtype=torch.uint8)
        with OpCounter() as counter:
            random_crop_flip(x, 4, True, torch.Generator().manual_seed(0))
        counts.append(counter.count)
    assert counts[0] == counts[1] < 30


def test_training_batches_are_augmented_then_normalised_with_imagenet_statistics(tmp_path):
    write_pickle_batches(tmp_path)
    dm = CIFAR10DataModule(data_dir=tmp_path, download=False, val_size=30, batch_size=16,
                           eval_batch_size=16)
    dm.setup()
    x, _ = next(iter(dm.test_dataloader()))
    raw = dm.splits["test"][0][:16].float() / 255
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    assert torch.allclose(x, (raw - mean) / std)
    first, again = (next(iter(dm.train_dataloader()))[0] for _ in range(2))
    assert torch.equal(first, again)  # the loader's seeded generator drives the crops too
    padded_black = (0 - mean) / std
    assert bool((first == padded_black.expand_as(first)).any())  # some zero padding shows
