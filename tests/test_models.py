"""The vision model zoo: architectures, pretrained weights, speed options, and the CIFAR-10
experiments end to end on the real data."""

from __future__ import annotations

import copy
import json
import urllib.error
from pathlib import Path

import hydra
import pytest
import torch
from omegaconf import OmegaConf
from torch import nn
from torchvision.models import ResNet18_Weights

from experiments.runs.cli import report_user_errors
from experiments.train import train
from sgt.features import ImageModality, feature_saliency
from sgt.masking import select_features
from sgt.models import VGG16, ModelError, resnet18, resnet20, resnet32, torchvision_model
from sgt.models.resnet import PadShortcut
from sgt.module import SaliencyGuidedModule
from tests.conftest import needs_cifar10

CIFAR_E2E = ["dataset.batch_size=4", "dataset.eval_batch_size=8",
             "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
             "trainer.limit_test_batches=1"]


@pytest.mark.parametrize(("build", "params"), [(resnet18, 11_173_962), (resnet20, 269_722),
                                               (resnet32, 464_154)])
def test_cifar_resnets_have_the_published_sizes_and_logits(build, params):
    model = build(num_classes=7)
    assert sum(p.numel() for p in model.parameters()) == params + (7 - 10) * (
        model.fc.in_features + 1)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 7)


def test_option_a_shortcuts_pad_channels_without_parameters():
    model = resnet20()
    pads = [m for m in model.modules() if isinstance(m, PadShortcut)]
    assert len(pads) == 2 and all(not list(p.parameters()) for p in pads)
    x = torch.randn(2, 16, 32, 32)
    y = pads[0](x)
    assert y.shape == (2, 32, 16, 16) and torch.equal(y[:, 8:24], x[:, :, ::2, ::2])
    assert not y[:, :8].any() and not y[:, 24:].any()


def count_relu_calls(model: nn.Module, x: torch.Tensor) -> list[int]:
    calls: dict[nn.Module, int] = {}
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    hooks = [m.register_forward_hook(lambda m, i, o: calls.__setitem__(m, calls.get(m, 0) + 1))
             for m in relus]
    model(x)
    for h in hooks:
        h.remove()
    return [calls.get(m, 0) for m in relus]


@pytest.mark.parametrize("build", [resnet18, resnet20])
def test_every_relu_is_its_own_module_used_once(build):
    """captum's DeepLift attributes through each nonlinearity module once per forward."""
    calls = count_relu_calls(build(), torch.randn(1, 3, 32, 32))
    assert calls and set(calls) == {1}


def test_vgg16_has_the_original_bird_head_and_no_inplace_ops():
    model = VGG16(num_classes=5)
    linear = [m for m in model.classifier if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linear] == [(25088, 4048), (4048, 2048),
                                                                (2048, 5)]
    assert [m.p for m in model.classifier if isinstance(m, nn.Dropout)] == [0.4, 0.4]
    assert not any(getattr(m, "inplace", False) for m in model.modules())
    assert set(count_relu_calls(model, torch.randn(1, 3, 32, 32))) == {1}


@pytest.mark.slow  # two VGG16s and a 0.5 GB file: ~10 s on CPU
def test_vgg16_loads_torchvision_features_from_a_file(tmp_path):
    source = torchvision_model("vgg16", num_classes=1000)
    torch.save(source.state_dict(), tmp_path / "vgg16.pth")
    model = VGG16(num_classes=3, weights_path=tmp_path / "vgg16.pth")
    assert all(torch.equal(a, b) for a, b in zip(model.features.state_dict().values(),
                                                 source.features.state_dict().values(),
                                                 strict=True))


def test_torchvision_model_by_name_with_a_pretrained_file_gets_a_new_head(tmp_path):
    imagenet = torchvision_model("resnet18", num_classes=1000)
    torch.save(imagenet.state_dict(), tmp_path / "resnet18.pth")
    model = torchvision_model("resnet18", num_classes=10, weights_path=tmp_path / "resnet18.pth")
    assert model.fc.out_features == 10
    own, source = model.state_dict(), imagenet.state_dict()
    assert all(torch.equal(own[k], source[k]) for k in own if not k.startswith("fc."))
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_unknown_model_name_lists_close_names():
    with pytest.raises(ModelError, match=r"unknown torchvision .* 'resnet19'.*'resnet18'"):
        torchvision_model("resnet19")


def test_weights_that_cannot_be_loaded_are_errors_never_an_untrained_model(tmp_path,
                                                                          monkeypatch):
    with pytest.raises(ModelError, match=r"model.weights='IMAGENET9K'.*allowed: \['DEFAULT', "
                                         r"'IMAGENET1K_V1'\]"):
        torchvision_model("resnet18", weights="IMAGENET9K")

    def offline(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(ResNet18_Weights.IMAGENET1K_V1.__class__, "get_state_dict", offline)
    with pytest.raises(ModelError, match="could not get the resnet18 weights.*model.weights_path"):
        torchvision_model("resnet18", weights="DEFAULT")
    with pytest.raises(ModelError, match="is not a file"):
        torchvision_model("resnet18", weights_path=tmp_path / "missing.pth")
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(ModelError, match="cannot read .*junk.pth as a state dict"):
        torchvision_model("resnet18", weights_path=tmp_path / "junk.pth")
    torch.save(resnet20().state_dict(), tmp_path / "other.pth")
    with pytest.raises(ModelError, match="does not fit this model"):
        torchvision_model("resnet18", weights_path=tmp_path / "other.pth")
    with pytest.raises(ModelError, match="does not fit this model"):
        VGG16(weights_path=tmp_path / "other.pth")
    with pytest.raises(ModelError, match="not both"):
        torchvision_model("resnet18", weights="DEFAULT", weights_path=tmp_path / "other.pth")


# -- speed options -------------------------------------------------------------------------


def sgt_loss(module: SaliencyGuidedModule, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    module.generator(x.device).manual_seed(0)
    return module.sgt_forward(x, y).objective.loss


def test_channels_last_changes_the_layout_not_the_step():
    torch.manual_seed(0)
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    plain = SaliencyGuidedModule(resnet20(), num_classes=10)
    fast = SaliencyGuidedModule(copy.deepcopy(plain.net), num_classes=10, channels_last=True)
    fast.configure_model()
    conv = fast.net.stem[0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    assert torch.allclose(sgt_loss(plain, x, y), sgt_loss(fast, x, y), atol=1e-5)


def test_bf16_autocast_saliency_masks_almost_the_same_pixels():
    torch.manual_seed(0)
    module = SaliencyGuidedModule(resnet20(), num_classes=10)
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    fp32 = module._eval_mode_gradient(x, y, None)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16 = module._eval_mode_gradient(x, y, None)
        loss = module.sgt_forward(x, y).objective.loss
    assert bf16.dtype == torch.float32 and torch.isfinite(loss)
    sal = [feature_saliency(ImageModality(), g) for g in (fp32, bf16)]
    masked = [select_features(s, 0.5) for s in sal]
    assert (masked[0] & masked[1]).sum() / masked[0].sum() > 0.85
    assert torch.corrcoef(torch.stack([s.flatten() for s in sal]))[0, 1] > 0.9


@pytest.mark.slow
def test_compiled_sgt_step_matches_eager():
    """torch.compile must survive the eval-mode saliency pass, two forwards and backward."""
    torch.manual_seed(0)
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    eager = SaliencyGuidedModule(resnet20(), num_classes=10)
    compiled = SaliencyGuidedModule(copy.deepcopy(eager.net), num_classes=10, compile=True)
    compiled.configure_model()
    grads, kls = [], []
    for module in (eager, compiled):
        module.generator(x.device).manual_seed(0)
        out = module.sgt_forward(x, y)
        out.objective.kl.backward()  # the KL alone: gradients through both branches
        kls.append(out.objective.kl.detach())
        grads.append(torch.cat([p.grad.flatten() for p in module.net.parameters()]))
    assert torch.allclose(kls[0], kls[1], rtol=1e-3) and kls[0] > 0
    # Inductor reorders reductions: a few pixels near the masking threshold may flip.
    assert (grads[0] - grads[1]).norm() / grads[0].norm() < 2e-2
    assert list(compiled.net.state_dict()) == list(eager.net.state_dict())


# -- the CIFAR-10 experiments end to end (real data) ---------------------------------------


@needs_cifar10
@pytest.mark.parametrize("overrides", [
    pytest.param(["experiment=cifar10_paper"], id="paper",
                 marks=pytest.mark.slow),  # the cifar10 path with another schedule; ~17 s
    pytest.param(["dataset=cifar10", "model=torchvision", "model.name=resnet18",
                  "trainer.precision=bf16-mixed", "sgt.channels_last=true"],
                 id="torchvision-resnet18-bf16-channels-last"),
    pytest.param(["experiment=cifar10"], id="recipe", marks=pytest.mark.slow),
])
def test_cifar10_experiments_run_end_to_end(train_cfg, cache_dir, overrides):
    cfg = train_cfg(*overrides, *CIFAR_E2E, f"paths.cache_dir={cache_dir}")
    metrics = train(cfg)
    saved = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    assert saved["test/acc"] == metrics["test/acc"] and "test/acc_masked" in saved
    assert saved["train/kl"] > 0  # the SGT branch ran
    assert all(torch.isfinite(torch.tensor(saved[k])) for k in ("train/loss", "val/loss"))


@pytest.mark.parametrize("experiment", ["cifar10", "cifar10_paper", "bird"])
def test_sgt_none_gives_regular_training_in_every_vision_experiment(train_cfg, experiment):
    """An experiment that set ``sgt.k`` itself would silently override ``sgt=none``."""
    assert train_cfg(f"experiment={experiment}", "sgt=none").sgt.k == 0.0
    assert train_cfg(f"experiment={experiment}").sgt.k == 0.5


def test_cifar10_recipe_is_one_cycle_sgd_in_bf16_without_early_stopping(train_cfg):
    cfg = train_cfg("experiment=cifar10")
    assert cfg.scheduler._target_.endswith("OneCycleLR") and "milestones" not in cfg.scheduler
    assert cfg.optimizer.nesterov and cfg.optimizer.weight_decay == 5e-4
    assert cfg.trainer.precision == "bf16-mixed" and cfg.sgt.channels_last
    assert "early_stopping" not in cfg.callbacks and cfg.model._target_ == "sgt.models.resnet18"


def test_a_model_error_inside_hydra_instantiate_is_one_cli_line(capsys):
    def task(cfg):
        hydra.utils.instantiate({"_target_": "sgt.models.torchvision_model", "name": "resnt18"})

    with pytest.raises(SystemExit) as exit_info:
        report_user_errors(task)(OmegaConf.create({}))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown torchvision classification model 'resnt18'")
    assert err.count("\n") == 1
