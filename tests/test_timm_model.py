"""``model=timm``: any timm classifier by name, weights only from a local file."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import torch

from experiments.train import train
from sgt.errors import ModelError, SettingError
from sgt.models.timm_model import timm_model
from tests.conftest import needs_cifar10

pytest.importorskip("timm")
from safetensors.torch import save_file  # noqa: E402  (timm's dependency)


def test_unknown_name_lists_close_names_in_one_line():
    with pytest.raises(ModelError, match=r"^unknown timm model 'resnt18'; close names: "
                                         r"\['resnet18'.*\(all: timm\.list_models\(\)\)$"):
        timm_model("resnt18")
    with pytest.raises(ModelError, match=r"'resnet18\.in1k_typo'; close names: \[.*"
                                         r"'resnet18\.\w+_in1k'"):
        timm_model("resnet18.in1k_typo")  # a tag timm does not have


@pytest.mark.parametrize(("in_chans", "num_classes", "side"), [(1, 7, 28), (3, 10, 32)])
def test_input_channels_and_classes_are_the_given_ones(in_chans, num_classes, side):
    model = timm_model("resnet18", num_classes=num_classes, in_chans=in_chans)
    assert model.conv1.in_channels == in_chans and model.fc.out_features == num_classes
    assert model(torch.randn(2, in_chans, side, side)).shape == (2, num_classes)
    assert not any(getattr(m, "inplace", False) for m in model.modules())  # for DeepLift


def test_a_bad_channel_count_is_refused_before_building():
    with pytest.raises(SettingError, match=r"model.in_chans must be a positive integer, got 0"):
        timm_model("resnet18", in_chans=0)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_a_local_weights_file_loads_and_a_1000_class_head_is_replaced(tmp_path, suffix):
    source = timm_model("resnet18", num_classes=1000).eval()
    path = tmp_path / f"resnet18{suffix}"
    (torch.save if suffix == ".pth" else save_file)(source.state_dict(), path)
    model = timm_model("resnet18", num_classes=10, weights_path=path).eval()
    assert model.fc.weight.shape == (10, 512)
    x = torch.randn(2, 3, 16, 16)
    assert torch.equal(model.forward_features(x), source.forward_features(x))


def test_a_file_that_does_not_fit_is_refused_naming_file_and_entry(tmp_path):
    path = tmp_path / "rgb.pth"
    torch.save(timm_model("resnet18").state_dict(), path)
    with pytest.raises(ModelError, match=rf"{re.escape(str(path))} does not fit this model: "
                                         r"conv1.weight has shape \(64, 3, 7, 7\), the "
                                         r"model's is \(64, 1, 7, 7\)"):
        timm_model("resnet18", in_chans=1, weights_path=path)
    with pytest.raises(ModelError, match=rf"{re.escape(str(path))} does not fit this model: "
                                         r"missing \['layer1.2.conv1.weight'"):
        timm_model("resnet34", weights_path=path)
    (tmp_path / "junk.safetensors").write_bytes(b"junk")
    with pytest.raises(ModelError, match=r"cannot read .*junk.safetensors as a state dict"):
        timm_model("resnet18", weights_path=tmp_path / "junk.safetensors")


def test_it_never_downloads_and_says_how_to_install_timm(monkeypatch):
    with pytest.raises(ModelError, match=r"takes no \['pretrained'\].*model.weights_path"):
        timm_model("resnet18", pretrained=True)
    monkeypatch.setitem(sys.modules, "timm", None)  # as if not installed
    with pytest.raises(ModelError, match=r"needs the timm package: pip install -e \"\.\[timm\]"):
        timm_model("resnet18")


@pytest.mark.parametrize(("dataset", "in_chans"), [("mnist", 1), ("cifar10", 3), ("bird", 3)])
def test_the_dataset_sets_the_input_channels(train_cfg, dataset, in_chans):
    cfg = train_cfg(f"dataset={dataset}", "model=timm")
    assert cfg.model.in_chans == in_chans and cfg.model._target_.endswith("timm_model")


@needs_cifar10
def test_timm_resnet18_trains_with_sgt_on_cifar10_and_every_method_evaluates(
        train_cfg, cache_dir):
    """All seven attribution methods explain timm's ResNet (one module per ReLU: DeepLift
    works, unlike on torchvision's); the evaluation's level 0 is the test accuracy."""
    cfg = train_cfg("dataset=cifar10", "model=timm", "model.name=resnet18", "sgt.k=0.5",
                    "trainer.precision=32-true", "dataset.batch_size=8",
                    "dataset.eval_batch_size=16", "trainer.limit_train_batches=2",
                    "trainer.limit_val_batches=1", "trainer.limit_test_batches=1",
                    f"paths.cache_dir={cache_dir}", "eval=accuracy_drop",
                    "eval.batch_size=16", "eval.metric.limit_batches=1",
                    "eval.metric.levels=[0.0,0.5]", "eval.num_examples=0",
                    "eval.metric.progress=false", "+eval.method_args.integrated_gradients"
                    ".n_steps=4")
    metrics = train(cfg)
    assert metrics["train/kl"] > 0  # the SGT branch ran
    result = json.loads((Path(cfg.paths.output_dir) / "eval" / "accuracy_drop.json").read_text())
    assert result["levels"] == [0.0, 0.5] and result["num_samples"] == 16
    assert set(result["accuracy"]) == {"grad", "smoothgrad", "integrated_gradients", "deeplift",
                                       "gradient_shap", "deeplift_shap", "random"}
    assert all(acc[0] == pytest.approx(metrics["test/acc"]) for acc in result["accuracy"].values())
