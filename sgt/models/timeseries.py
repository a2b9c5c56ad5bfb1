"""The time-series benchmark's classifiers at its sizes (docs/paper.md §2), returning logits.

Input ``(B, T, F)``, output raw logits ``(B, classes)``; the benchmark's final softmax is
left out (it fed ``CrossEntropyLoss``, a double softmax). Every constructor takes
``num_features``, ``num_classes`` and ``time_steps`` (what ``TimeSeriesDataModule.
model_kwargs()`` gives), so any of them builds from the same data.

**Recurrent models in eval mode.** cuDNN's RNN backward only runs in training mode, but
SGT's saliency and every evaluation take input gradients with the model in eval mode. The
LSTMs therefore run their recurrence with cuDNN switched off whenever they are not
training (PyTorch's native CUDA kernels, which differentiate in either mode); training
keeps the cuDNN kernels. On the CPU nothing changes.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

import torch
from torch import Tensor, nn

from sgt.checks import check_choice
from sgt.errors import ModelError


@contextmanager
def cudnn_disabled() -> Iterator[None]:
    """Switch cuDNN off, and only that (``torch.backends.cudnn.flags`` would also reset the
    benchmark, determinism and TF32 settings for the duration)."""
    saved = torch.backends.cudnn.enabled
    torch.backends.cudnn.enabled = False
    try:
        yield
    finally:
        torch.backends.cudnn.enabled = saved


def run_recurrent(rnn: nn.RNNBase, x: Tensor, training: bool) -> Tensor:
    """``rnn``'s outputs ``(B, T, H)`` for ``x (B, T, F)``; cuDNN off outside training, so
    input gradients work in eval mode on a GPU (see the module docstring)."""
    with nullcontext() if training else cudnn_disabled():
        return rnn(x)[0]


class LSTM(nn.Module):
    """Dropout → 1-layer LSTM (hidden 5) → dropout → last step → linear.

    ``time_steps`` is accepted for a uniform constructor; any length works.
    """

    def __init__(self, num_features: int = 50, num_classes: int = 2, time_steps: int = 50,
                 hidden_size: int = 5, dropout: float = 0.1) -> None:
        super().__init__()
        self.input_dropout = nn.Dropout(dropout)
        self.rnn = nn.LSTM(num_features, hidden_size, batch_first=True)
        self.output_dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(hidden_size, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        h = run_recurrent(self.rnn, self.input_dropout(x), self.training)  # (B, T, H)
        return self.fc(self.output_dropout(h[:, -1]))


# How the attention computes its tanh and softmax: as the benchmark's code (``torch.tanh``,
# ``F.softmax``) or as ``nn.Tanh``/``nn.Softmax`` modules. The values are the same; captum's
# DeepLift applies its rescale rule to the modules only (docs/paper.md §3(d)).
NONLINEARITIES = ("functional", "module")


class InputCellAttention(nn.Module):
    """Input-cell attention (Ismail et al. 2019, https://arxiv.org/abs/1910.12370).

    At step t the LSTM cell reads, instead of ``x_t``, ``M_t``: ``hops`` attention
    distributions over the steps ``s ≤ t`` (scores ``W2 tanh(W1 x_s)``), each pooling the
    inputs, averaged over the hops. All steps are computed at once with a causal mask, so
    the recurrence itself is a plain LSTM over ``M``. ``nonlinearities`` (see
    :data:`NONLINEARITIES`): ``functional``, the benchmark's form, or ``module``.
    """

    def __init__(self, num_features: int, hops: int = 10, attention_size: int = 50,
                 nonlinearities: str = "functional") -> None:
        super().__init__()
        self.nonlinearities = check_choice(nonlinearities, "model.nonlinearities",
                                           NONLINEARITIES)
        self.first = nn.Linear(num_features, attention_size)
        self.second = nn.Linear(attention_size, hops)
        if self.nonlinearities == "module":
            self.tanh, self.softmax = nn.Tanh(), nn.Softmax(dim=2)

    def forward(self, x: Tensor) -> Tensor:
        """``x (B, T, F)`` -> ``M (B, T, F)``."""
        module = self.nonlinearities == "module"
        steps = x.shape[1]
        hidden = self.first(x)
        scores = self.second(self.tanh(hidden) if module else torch.tanh(hidden))  # (B, T, hops)
        future = torch.ones(steps, steps, dtype=torch.bool, device=x.device).triu(1)
        # (B, t, s, hops): step t attends to s <= t (a finite fill keeps DeepLift's
        # differences finite)
        logits = scores[:, None].masked_fill(future[None, :, :, None],
                                             torch.finfo(scores.dtype).min)
        weights = self.softmax(logits) if module else torch.softmax(logits, dim=2)
        return weights.mean(dim=3) @ x  # (B, t, s), averaged over the hops


class LSTMWithInputCellAttention(nn.Module):
    """Dropout → input-cell attention (hops r = 10, d_a = 50) → LSTM (hidden 5) → dropout →
    last step → linear. ``time_steps`` is accepted for a uniform constructor;
    ``nonlinearities`` is the attention's (:class:`InputCellAttention`)."""

    def __init__(self, num_features: int = 50, num_classes: int = 2, time_steps: int = 50,
                 hidden_size: int = 5, hops: int = 10, attention_size: int = 50,
                 dropout: float = 0.1, nonlinearities: str = "functional") -> None:
        super().__init__()
        self.input_dropout = nn.Dropout(dropout)
        self.attention = InputCellAttention(num_features, hops, attention_size, nonlinearities)
        self.rnn = nn.LSTM(num_features, hidden_size, batch_first=True)
        self.output_dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(hidden_size, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        m = self.attention(self.input_dropout(x))  # (B, T, F)
        h = run_recurrent(self.rnn, m, self.training)  # (B, T, H)
        return self.fc(self.output_dropout(h[:, -1]))


class TemporalBlock(nn.Module):
    """Two causal dilated convolutions (left zero-padding) with ReLU and dropout, plus a
    residual (1×1 convolution when the width changes) and a final ReLU (Bai et al. 2018).

    The benchmark's weight normalisation is left out: it only reparametrises the weights,
    and a parametrised convolution is not re-initialised by ``reset_parameters`` (the
    cascading-randomisation sanity check relies on that).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int,
                 dropout: float) -> None:
        super().__init__()
        pad = (kernel_size - 1) * dilation
        self.net = nn.Sequential(
            nn.ConstantPad1d((pad, 0), 0.0),
            nn.Conv1d(in_channels, out_channels, kernel_size, dilation=dilation),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.ConstantPad1d((pad, 0), 0.0),
            nn.Conv1d(out_channels, out_channels, kernel_size, dilation=dilation),
            nn.ReLU(),
            nn.Dropout(dropout),
        )
        self.residual = (nn.Conv1d(in_channels, out_channels, 1) if in_channels != out_channels
                         else nn.Identity())
        self.relu = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C_in, T)`` -> ``(B, C_out, T)``."""
        return self.relu(self.net(x) + self.residual(x))


class TCN(nn.Module):
    """Temporal convolutional network: blocks of widths (5, 5, 50), kernel 4, dilations
    1/2/4, dropout 0.1 → max-pool over time → linear."""

    def __init__(self, num_features: int = 50, num_classes: int = 2, time_steps: int = 50,
                 channels: tuple[int, ...] = (5, 5, 50), kernel_size: int = 4,
                 dropout: float = 0.1) -> None:
        super().__init__()
        widths = (num_features, *channels)
        self.blocks = nn.Sequential(*(
            TemporalBlock(widths[i], widths[i + 1], kernel_size, 2 ** i, dropout)
            for i in range(len(channels))))
        self.pool = nn.MaxPool1d(time_steps)  # a module: DeepLift applies its max-pool rule
        self.fc = nn.Linear(channels[-1], num_classes)

    def forward(self, x: Tensor) -> Tensor:
        h = self.blocks(x.transpose(1, 2))  # (B, T, F) -> (B, F, T) -> (B, C, T)
        return self.fc(self.pool(h).squeeze(-1))  # (B, C, 1) -> (B, C)


def sinusoidal_encoding(time_steps: int, width: int) -> Tensor:
    """``(T, width)`` sin/cos positional encoding (Vaswani et al. 2017)."""
    position = torch.arange(time_steps, dtype=torch.float32)[:, None]
    frequency = torch.exp(torch.arange(0, width, 2, dtype=torch.float32)
                          * (-math.log(10000.0) / width))
    encoding = torch.zeros(time_steps, width)
    encoding[:, 0::2] = torch.sin(position * frequency)
    encoding[:, 1::2] = torch.cos(position * frequency[: width // 2])
    return encoding


class Transformer(nn.Module):
    """Causal pre-norm Transformer encoder on the features (d_model = F): input × √F plus a
    sinusoidal positional encoding, dropout, 6 layers of 5 heads with feed-forward 400,
    a final layer norm → max-pool over time → linear."""

    def __init__(self, num_features: int = 50, num_classes: int = 2, time_steps: int = 50,
                 num_layers: int = 6, heads: int = 5, feedforward: int = 400,
                 dropout: float = 0.1) -> None:
        super().__init__()
        if num_features % heads:
            raise ModelError(f"Transformer: num_features={num_features} must be divisible by "
                             f"heads={heads} (d_model is the feature count); change model.heads")
        self.scale = math.sqrt(num_features)
        self.register_buffer("encoding", sinusoidal_encoding(time_steps, num_features),
                             persistent=False)
        self.register_buffer("causal", nn.Transformer.generate_square_subsequent_mask(
            time_steps), persistent=False)  # (T, T): -inf above the diagonal
        self.dropout = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(num_features, heads, feedforward, dropout,
                                           activation=nn.ReLU(), batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers, norm=nn.LayerNorm(num_features),
                                             enable_nested_tensor=False)
        self.pool = nn.MaxPool1d(time_steps)
        self.fc = nn.Linear(num_features, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        h = self.dropout(x * self.scale + self.encoding)  # (B, T, F)
        h = self.encoder(h, mask=self.causal, is_causal=True)
        return self.fc(self.pool(h.transpose(1, 2)).squeeze(-1))  # (B, F, 1) -> (B, F)


__all__ = [
    "LSTM",
    "TCN",
    "InputCellAttention",
    "LSTMWithInputCellAttention",
    "NONLINEARITIES",
    "TemporalBlock",
    "Transformer",
    "cudnn_disabled",
    "run_recurrent",
    "sinusoidal_encoding",
]
