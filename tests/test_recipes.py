"""Each dataset brings its training recipe; the command line keeps the last word; the bare
command trains (and masks) exactly as the original MNIST code did."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from captum.attr import Saliency
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from torch import nn

from experiments.runs.build import build
from sgt.masking import select_features
from tests.conftest import CONFIGS, CPU_TEST_OVERRIDES, compose_config, needs_mnist

HEADLINE = ["dataset=cifar10", "model=resnet18", "sgt.k=0.5"]


def _compose(*overrides: str) -> tuple[DictConfig, dict[str, str]]:
    """The config a command composes, and the group options it chose."""
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIGS)):
        cfg = compose("train.yaml", overrides=list(overrides), return_hydra_config=True)
    return cfg, dict(cfg.hydra.runtime.choices)


def test_headline_command_composes_the_cifar10_recipe() -> None:
    """`python -m experiments.train dataset=cifar10 model=resnet18 sgt.k=0.5`: no other flag
    is needed for the recipe that reached 92.6 % test accuracy on an H100."""
    cfg, chose = _compose(*HEADLINE)
    assert chose["optimizer"] == "sgd_nesterov" and chose["scheduler"] == "onecycle"
    assert chose["callbacks"] == "default"  # every epoch of the one-cycle schedule counts
    assert cfg.model._target_ == "sgt.models.resnet18"
    assert cfg.optimizer._target_ == "torch.optim.SGD" and cfg.optimizer.nesterov
    assert cfg.optimizer.momentum == 0.9 and cfg.optimizer.weight_decay == 5e-4
    assert cfg.scheduler._target_.endswith("OneCycleLR") and cfg.scheduler.max_lr == 0.2
    assert cfg.trainer.max_epochs == 30 and cfg.trainer.precision == "bf16-mixed"
    assert cfg.dataset.batch_size == 512 and cfg.dataset.crop_padding == 4 and cfg.dataset.flip
    assert cfg.sgt.k == 0.5 and cfg.sgt.lam == 1.0 and cfg.sgt.fill == "uniform"
    assert cfg.sgt.saliency_output == "logit"  # the original CIFAR network returned logits
    assert cfg.sgt.masked_bn_stats is False and cfg.sgt.channels_last is True


def test_bare_command_is_the_papers_mnist_recipe() -> None:
    cfg, chose = _compose()
    assert chose["dataset"] == "mnist" and chose["model"] == "mnist_cnn"
    assert cfg.optimizer._target_ == "torch.optim.Adadelta" and cfg.optimizer.lr == 1.0
    assert cfg.scheduler is None and cfg.dataset.batch_size == 512
    assert cfg.trainer.max_epochs == 100 and cfg.callbacks.early_stopping.patience == 20
    assert cfg.sgt.saliency_output == "log_prob"  # the original network ended in log_softmax
    assert cfg.sgt.k == 0.5 and cfg.sgt.lam == 1.0 and cfg.sgt.fill == "uniform"


def test_bird_recipe_and_its_vgg16_weights() -> None:
    cfg, chose = _compose("dataset=bird")
    assert chose["model"] == "vgg16" and cfg.model.weights == "DEFAULT"
    assert cfg.optimizer._target_ == "torch.optim.Adam" and cfg.optimizer.lr == 1e-4
    assert cfg.scheduler.step_size == 5 and cfg.scheduler.gamma == 0.75
    assert cfg.trainer.max_epochs == 40 and cfg.callbacks.early_stopping.patience == 10
    other, _ = _compose("dataset=bird", "model=resnet20")  # only VGG16 takes those weights
    assert "weights" not in other.model


@pytest.mark.parametrize(("overrides", "key", "value"), [
    (["dataset=cifar10", "trainer.max_epochs=3"], "trainer.max_epochs", 3),
    (["dataset=cifar10", "optimizer=adam"], "optimizer._target_", "torch.optim.Adam"),
    (["dataset=cifar10", "sgt.saliency_output=log_prob"], "sgt.saliency_output", "log_prob"),
    (["dataset=cifar10", "model=resnet32"], "trainer.max_epochs", 60),  # dataset × model
    (["dataset=cifar10", "model=resnet32", "trainer.max_epochs=5"], "trainer.max_epochs", 5),
    (["experiment=cifar10_paper"], "trainer.max_epochs", 200),
    (["experiment=cifar10_paper"], "optimizer.nesterov", None),
    (["experiment=cifar10_paper", "optimizer.lr=0.05"], "optimizer.lr", 0.05),
    (["dataset=mnist", "sgt=none"], "sgt.k", 0.0),
])
def test_the_command_line_keeps_the_last_word(overrides: list[str], key: str, value) -> None:
    from omegaconf import OmegaConf

    cfg, _ = _compose(*overrides)
    assert OmegaConf.select(cfg, key) == value


@pytest.mark.parametrize("experiment", sorted(p.stem for p in (CONFIGS / "experiment").glob(
    "*.yaml")))
def test_every_experiment_composes_and_sgt_none_is_regular(experiment: str) -> None:
    cfg, _ = _compose(f"experiment={experiment}")
    assert cfg.sgt.k > 0 and cfg.task_name == experiment
    assert _compose(f"experiment={experiment}", "sgt=none")[0].sgt.k == 0.0


@needs_mnist
def test_bare_command_masks_exactly_the_original_pixels(tmp_path: Path) -> None:
    """The original MNIST step (docs/paper.md §1.2): captum ``Saliency(abs=False)`` of the
    network ending in log_softmax, at the true label, in eval mode; the int(k·C·H·W) lowest
    signed gradients. Compared with what the bare command's module masks on a real batch."""
    cfg = compose_config("train.yaml", CPU_TEST_OVERRIDES, tmp_path / "run")
    datamodule, module = build(cfg)
    datamodule.setup("fit")
    x, y = next(iter(datamodule.train_dataloader()))[:2]
    seen: list[torch.Tensor] = []
    hook = module.net.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach()))
    module.train()
    module.sgt_forward(x, y)
    hook.remove()
    masked = seen[-1]  # saliency, clean, then the masked pass
    ours = (masked != x).flatten(1)  # a uniform draw never equals the pixel it replaces

    original = nn.Sequential(module.net, nn.LogSoftmax(dim=1)).eval()
    grads = Saliency(original).attribute(x.clone(), target=y, abs=False)  # (B, 1, 28, 28)
    sal = grads.mean(1).flatten(1)  # the signed channel mean, as interpretable.py L69
    count = int(0.5 * 1 * 28 * 28)  # 392, as interpretable.py L65
    lowest = torch.topk(sal, count, dim=1, largest=False).indices
    expected = torch.zeros_like(ours).scatter_(1, lowest, True)
    assert ours.sum(1).tolist() == [count] * len(y)
    assert torch.equal(ours, expected)


@pytest.mark.parametrize("k", [0.15, 0.7, 0.9])
def test_counts_round_down_as_the_original(k: float) -> None:
    """int(k·N), not round(k·N): at these k the two differ by one pixel of 784."""
    selected = select_features(torch.randn(3, 784), k)
    assert selected.sum(1).tolist() == [int(k * 784)] * 3
    assert int(k * 784) != round(k * 784)
