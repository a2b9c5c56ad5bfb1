"""Benchmark cases built from the real configs: ``train.yaml`` with a dataset (and its
recipe), built by :func:`experiments.runs.build.build`, on the dataset's real data when it
is there, else random data of its shape (and always in a quick run: nothing to read)."""

from __future__ import annotations

import contextlib
import itertools
import tempfile
from collections.abc import Callable

import hydra
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf, open_dict
from pytorch_lightning.callbacks.progress import ProgressBar
from torch import Tensor

from experiments.bench.measure import Context
from experiments.runs.build import build, instantiate_list
from experiments.runs.compose import compose_config
from sgt.data import InMemoryDataModule
from sgt.errors import DatasetNotFoundError
from sgt.module import SaliencyGuidedModule

DATASETS = ("mnist", "cifar10")
# Stored input shapes (uint8 images) and training-split sizes of the random stand-ins.
SHAPES = {"mnist": (1, 28, 28), "cifar10": (3, 32, 32)}
TRAIN_IMAGES = {"mnist": 55_000, "cifar10": 45_000}  # the real splits, validation taken out
PRECISIONS = {"32-true": None, "bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}
Batch = tuple[Tensor, Tensor]
Step = Callable[[Tensor, Tensor], None]


def datasets(ctx: Context) -> tuple[str, ...]:
    """Both image datasets on a GPU; MNIST alone on a CPU, where a ResNet18 step takes
    seconds even at a small batch."""
    return ctx.pick(DATASETS, DATASETS[:1], DATASETS[:1])


def batch_size(ctx: Context, cfg: DictConfig) -> int:
    """The recipe's batch on a GPU; smaller on a CPU, where the recipe's would take seconds
    per step."""
    return ctx.pick(int(cfg.dataset.batch_size), 64, 8)


def train_config(ctx: Context, dataset: str, *overrides: str) -> DictConfig:
    """``train.yaml`` with ``dataset`` and its recipe on ``ctx.device``, sized for ``ctx``
    (``overrides`` last); the run writes into a new folder under ``ctx.work``."""
    on_cpu = ["trainer.accelerator=cpu", "trainer.precision=32-true"]  # no fast bf16 there
    cfg = compose_config("train.yaml", [
        f"dataset={dataset}", "trainer.devices=1",
        *(["trainer.accelerator=gpu"] if ctx.device.type == "cuda" else on_cpu),
        *(["trainer.enable_progress_bar=false", "~callbacks.rich_progress_bar",
           "trainer.enable_model_summary=false"] if ctx.quick else []),
        *overrides, f"paths.output_dir={tempfile.mkdtemp(prefix=dataset, dir=ctx.work)}"])
    with open_dict(cfg):
        cfg.dataset.batch_size = batch_size(ctx, cfg)
        cfg.dataset.eval_batch_size = ctx.pick(cfg.dataset.eval_batch_size, 256, 16)
    return cfg


def use_random_data(datamodule: InMemoryDataModule, train_size: int, test_size: int) -> None:
    """Replace the data files by random uint8 images of the dataset's shape (read by the
    real ``setup``, loaders and transforms)."""
    shape = SHAPES[datamodule.name]

    def load_split(train: bool) -> Batch:
        g = torch.Generator().manual_seed(int(train))
        n = train_size + datamodule.val_size if train else test_size
        return (torch.randint(0, 256, (n, *shape), dtype=torch.uint8, generator=g),
                torch.randint(0, datamodule.num_classes, (n,), generator=g))

    datamodule.prepare_data = lambda: None  # type: ignore[method-assign]
    datamodule.load_split = load_split  # type: ignore[method-assign]


def read_data(ctx: Context, datamodule: InMemoryDataModule, train_size: int,
              test_size: int = 0) -> str:
    """Fill ``datamodule`` with its real data, or (quick, or none there) random stand-ins
    of ``train_size`` training and ``test_size`` (at least an evaluation batch) test
    images; returns ``"real"`` or ``"random"``."""
    used = "random"
    if not ctx.quick:
        datamodule.download = False  # nothing downloads at run time
        with contextlib.suppress(DatasetNotFoundError):
            datamodule.prepare_data()
            used = "real"
    if used == "random":
        datamodule.val_size = datamodule.eval_batch_size
        use_random_data(datamodule, train_size, max(test_size, datamodule.eval_batch_size))
    datamodule.setup("fit")
    return used


def first_batches(datamodule: InMemoryDataModule, device: torch.device, count: int = 2
                  ) -> list[Batch]:
    """The first ``count`` training batches ``(x, y)`` on ``device``, transforms applied."""
    loader = datamodule.train_dataloader()
    return [(x.to(device), y.to(device)) for x, y, *_ in itertools.islice(loader, count)]


def cycling(step: Step, batches: list[Batch]) -> Callable[[], None]:
    """``step`` on the next of ``batches`` at each call, round and round."""
    source = itertools.cycle(batches)
    return lambda: step(*next(source))


def ready_module(cfg: DictConfig, device: torch.device,
                 weights: dict[str, Tensor] | None = None) -> SaliencyGuidedModule:
    """The config's module on ``device`` with its speed options applied (and ``weights``)."""
    module = build(cfg)[1]
    if cfg.trainer.get("benchmark") is not None:  # cuDNN autotuning, as the Trainer sets it
        torch.backends.cudnn.benchmark = bool(cfg.trainer.benchmark)
    if weights is not None:
        module.net.load_state_dict(weights)
    module.to(device)
    module.configure_model()
    return module


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The autocast a ``trainer.precision`` value means (none for 32-true)."""
    dtype = PRECISIONS[precision]
    return contextlib.nullcontext() if dtype is None else torch.autocast(device.type, dtype)


def module_step(module: SaliencyGuidedModule, device: torch.device, precision: str) -> Step:
    """One training step of the real module: forward under autocast, backward, the recipe's
    optimizer step (as Lightning's loop does, without the loop)."""
    optimizer = module.optimizer_factory(params=module.parameters())

    def step(x: Tensor, y: Tensor) -> None:
        with autocast(device, precision):
            loss = module.sgt_forward(x, y).objective.loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def make_trainer(cfg: DictConfig, *callbacks: pl.Callback) -> pl.Trainer:
    """The run's trainer as ``experiments.train`` builds it, plus ``callbacks``."""
    configured = instantiate_list(cfg.get("callbacks"))
    if OmegaConf.select(cfg, "trainer.enable_progress_bar") is False:
        configured = [c for c in configured if not isinstance(c, ProgressBar)]
    loggers = instantiate_list(cfg.get("logger"))
    return hydra.utils.instantiate(cfg.trainer, callbacks=[*configured, *callbacks],
                                   logger=loggers or False)


def fit(ctx: Context, cfg: DictConfig, train_batches: int, *callbacks: pl.Callback
        ) -> tuple[SaliencyGuidedModule, InMemoryDataModule, str]:
    """``Trainer.fit`` of ``cfg`` with ``callbacks`` added, on data of at least
    ``train_batches`` batches (random stand-ins are that large); returns the fitted module,
    its data and which data it was (``"real"`` or ``"random"``)."""
    pl.seed_everything(cfg.seed, verbose=False)
    datamodule, module = build(cfg)
    used = read_data(ctx, datamodule, train_batches * cfg.dataset.batch_size)
    module.example_input_array = datamodule.example_input()  # as experiments.train does
    make_trainer(cfg, *callbacks).fit(module, datamodule=datamodule)
    return module, datamodule, used
