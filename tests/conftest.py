"""Shared fixtures: compose the real Hydra configs, shrunk for a CPU test run."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, open_dict

import experiments.runs  # noqa: F401  (registers the library's defaults as config nodes)

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
# The real datasets (read-only); CI sets SGT_DATA_DIR to the same place.
SHARED_DATA = Path(os.environ.get("SGT_DATA_DIR", ROOT.parent / "shared" / "data")).resolve()
MNIST_RAW = SHARED_DATA / "MNIST" / "raw"

# Few batches, CPU, no progress bar: enough to exercise every path quickly.
CPU_TEST_OVERRIDES = [
    "trainer.accelerator=cpu",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=3",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "dataset.batch_size=32",
    "dataset.eval_batch_size=64",
    "~callbacks.rich_progress_bar",
]

needs_mnist = pytest.mark.skipif(
    not (MNIST_RAW / "train-images-idx3-ubyte.gz").is_file(),
    reason=f"real MNIST not found under {MNIST_RAW}",
)
CIFAR10_PNG = (SHARED_DATA / "cifar10-convnetjs", SHARED_DATA / "cifar10-test-png")
needs_cifar10 = pytest.mark.skipif(
    not all(d.is_dir() for d in CIFAR10_PNG),
    reason=f"real CIFAR-10 PNGs not found under {SHARED_DATA}",
)


def compose_config(
    config_name: str, overrides: list[str], output_dir: Path, data_dir: Path | None = None
) -> DictConfig:
    """Compose ``configs/<config_name>`` like the CLI, pointed at ``output_dir``."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIGS)):
        cfg = compose(config_name, overrides=overrides, return_hydra_config=False)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
        cfg.paths.data_dir = str(data_dir or SHARED_DATA)
    GlobalHydra.instance().clear()
    return cfg


@pytest.fixture
def train_cfg(tmp_path: Path) -> Callable[..., DictConfig]:
    """``train_cfg(*overrides, run="run")`` -> a composed, CPU-sized train config."""

    def make(*overrides: str, run: str = "run", data_dir: Path | None = None) -> DictConfig:
        return compose_config("train.yaml", [*CPU_TEST_OVERRIDES, *overrides],
                              tmp_path / run, data_dir)

    return make


@pytest.fixture(autouse=True)
def _clear_hydra() -> Iterator[None]:
    yield
    GlobalHydra.instance().clear()


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One decoded-image cache per test session: decode once, never into the repository."""
    return tmp_path_factory.mktemp("cache")
