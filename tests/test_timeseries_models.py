"""The time-series benchmark's models: shapes, causality, eval-mode saliency, SGT steps."""

from __future__ import annotations

import copy
from functools import partial

import pytest
import pytorch_lightning as pl
import torch
from torch import nn

from sgt.data import TimeSeriesDataModule
from sgt.errors import ModelError, SettingError
from sgt.features import TimeSeriesModality
from sgt.models import LSTM, TCN, LSTMWithInputCellAttention, Transformer
from sgt.models.timeseries import InputCellAttention, TemporalBlock
from sgt.module import SaliencyGuidedModule
from sgt.saliency import ModalityForward, get_method, input_gradient, method_generator

T, F = 12, 10  # tiny series; F divisible by the Transformer's 5 heads
ARCHITECTURES = [LSTM, LSTMWithInputCellAttention, TCN, Transformer]


def _batch(n: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, T, F, generator=g), torch.randint(2, (n,), generator=g)


def _build(cls: type[nn.Module]) -> nn.Module:
    torch.manual_seed(0)
    return cls(num_features=F, num_classes=2, time_steps=T)


@pytest.mark.parametrize("cls", ARCHITECTURES)
def test_logits_and_eval_mode_saliency_have_the_right_shapes(cls) -> None:
    net = _build(cls)
    x, y = _batch()
    logits = net(x)
    assert logits.shape == (6, 2)
    assert not torch.allclose(logits.softmax(1), logits)  # raw logits, no final softmax
    net.eval()
    grad = input_gradient(net, x, y)
    assert grad.shape == x.shape and bool(torch.isfinite(grad).all()) and bool(grad.abs().sum())
    assert not net.training
    assert torch.backends.cudnn.enabled  # the eval-mode switch is local to the recurrence


@pytest.mark.parametrize("cls", [LSTM, LSTMWithInputCellAttention])
def test_recurrence_runs_without_cudnn_only_outside_training(cls) -> None:
    net = _build(cls)
    seen: list[bool] = []
    net.rnn.register_forward_pre_hook(lambda *_: seen.append(torch.backends.cudnn.enabled))
    x, _ = _batch()
    net.train()(x)
    net.eval()(x)
    assert seen == [True, False] and torch.backends.cudnn.enabled


def test_input_cell_attention_pools_the_past_per_step() -> None:
    torch.manual_seed(0)
    attention = InputCellAttention(F, hops=3, attention_size=7)
    x, _ = _batch(2)
    m = attention(x)
    # the benchmark's step-by-step loop: hop-wise softmax over steps 0..t, mean over hops
    scores = attention.second(torch.tanh(attention.first(x)))  # (B, T, hops)
    for t in range(T):
        weights = scores[:, : t + 1].softmax(dim=1)  # (B, t+1, hops)
        pooled = torch.einsum("bsr,bsf->bf", weights, x[:, : t + 1]) / 3
        assert torch.allclose(m[:, t], pooled, atol=1e-6)
    assert torch.allclose(m[:, 0], x[:, 0], atol=1e-6)  # one step: attends to itself


def test_attention_nonlinearities_as_functions_or_modules_differ_only_for_deeplift() -> None:
    """The benchmark calls ``torch.tanh`` and ``F.softmax``; as ``nn`` modules the values are
    the same, but captum's DeepLift applies its rescale rule to the modules."""
    functional = _build(LSTMWithInputCellAttention).eval()
    assert functional.attention.nonlinearities == "functional"  # the benchmark's, by default
    modules = LSTMWithInputCellAttention(num_features=F, num_classes=2, time_steps=T,
                                         nonlinearities="module").eval()
    modules.load_state_dict(functional.state_dict())  # the same weights either way
    x, y = _batch()
    assert torch.equal(modules(x), functional(x))
    assert torch.allclose(input_gradient(modules, x, y), input_gradient(functional, x, y))

    def deeplift(net: nn.Module) -> torch.Tensor:
        forward = ModalityForward(net, TimeSeriesModality())
        return get_method("deeplift")(forward, x.clone().requires_grad_(True), y, None,
                                      method_generator(0, "deeplift", x.device))

    assert not torch.allclose(deeplift(modules), deeplift(functional), atol=1e-4)
    with pytest.raises(SettingError, match="model.nonlinearities must be one of"):
        LSTMWithInputCellAttention(nonlinearities="tanh")


def test_temporal_block_and_transformer_encoder_are_causal() -> None:
    x, _ = _batch(2)
    later = x.clone()
    later[:, 7:] = _batch(2, seed=1)[0][:, 7:]  # change only steps 7 onwards
    torch.manual_seed(0)
    block = TemporalBlock(F, 4, kernel_size=4, dilation=2, dropout=0.0).eval()
    assert torch.equal(block(x.transpose(1, 2))[:, :, :7], block(later.transpose(1, 2))[:, :, :7])
    net = _build(Transformer).eval()

    def encode(inputs: torch.Tensor) -> torch.Tensor:
        return net.encoder(inputs * net.scale + net.encoding, mask=net.causal, is_causal=True)

    assert torch.allclose(encode(x)[:, :7], encode(later)[:, :7], atol=1e-5)
    assert not torch.allclose(encode(x)[:, 7:], encode(later)[:, 7:])


def test_transformer_needs_features_divisible_by_heads() -> None:
    with pytest.raises(ModelError, match="num_features=12 must be divisible by heads=5"):
        Transformer(num_features=12)


@pytest.mark.parametrize("cls", ARCHITECTURES)
def test_sgt_steps_change_the_weights(cls) -> None:
    net = _build(cls)
    module = SaliencyGuidedModule(net, optimizer=partial(torch.optim.Adam, lr=1e-2),
                                  num_classes=2, modality="timeseries", k=0.5)
    optimizer = module.configure_optimizers()
    before = copy.deepcopy(net.state_dict())
    x, y = _batch(8)
    for _ in range(2):
        out = module.sgt_forward(x, y)
        assert out.masked_logits is not None and bool(out.finite)
        optimizer.zero_grad()
        out.objective.loss.backward()
        optimizer.step()
    changed = [k for k, v in net.state_dict().items() if not torch.equal(v, before[k])]
    assert changed and all(p.grad is not None for p in net.parameters())


def test_sgt_trains_on_the_datamodule_with_lightning(tmp_path) -> None:
    dm = TimeSeriesDataModule("SmallMiddle", "AutoRegressive", num_train=60, num_test=20,
                              time_steps=T, num_features=F, val_size=10, batch_size=16)
    net = LSTMWithInputCellAttention(**dm.model_kwargs())
    before = copy.deepcopy(net.state_dict())
    module = SaliencyGuidedModule(net, optimizer=partial(torch.optim.Adam, lr=1e-2),
                                  num_classes=dm.num_classes, modality=dm.modality, k=0.3)
    trainer = pl.Trainer(accelerator="cpu", max_steps=3, limit_val_batches=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(module, datamodule=dm)
    assert trainer.global_step == 3
    assert any(not torch.equal(v, before[k]) for k, v in net.state_dict().items())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("cls", [LSTM, LSTMWithInputCellAttention])
def test_eval_mode_saliency_of_recurrent_models_on_cuda(cls) -> None:
    """cuDNN's RNN backward refuses eval mode; the models switch cuDNN off there."""
    net = _build(cls)
    x, y = _batch()
    expected = input_gradient(net.eval(), x, y)
    net = net.cuda().eval()
    grad = input_gradient(net, x.cuda(), y.cuda())
    assert torch.allclose(grad.cpu(), expected, atol=1e-5)
    net.train()  # training keeps cuDNN: the SGT step (eval-mode saliency) runs through
    module = SaliencyGuidedModule(net, num_classes=2, modality="timeseries", k=0.5)
    out = module.sgt_forward(x.cuda(), y.cuda())
    out.objective.loss.backward()
    assert bool(out.finite) and torch.backends.cudnn.enabled
