"""Text classifiers for the ERASER tasks: a BiLSTM and a small Transformer encoder.

Both split the forward pass where saliency is taken (``TextModality``):
``embed(ids) -> (B, L, D)`` is the embedding lookup alone, and
``classify(embeddings, tokens) -> (B, classes)`` runs the rest, reading the positions
``tokens`` marks (a prefix of each row; padding comes last and never influences the logits
or gets a gradient). ``forward(ids)`` chains the two. A row without tokens gives the
logits of an empty input (pooled features 0) instead of NaN.

cuDNN's LSTM backward only runs in training mode, while SGT's saliency and every
evaluation take gradients in eval mode; the BiLSTM therefore runs PyTorch's own LSTM
kernels whenever it is in eval mode with autograd on (no-grad evaluation keeps cuDNN).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from sgt.checks import check_int
from sgt.errors import SettingError
from sgt.models.embeddings import token_embedding


def _fraction(value: object, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise SettingError(f"{key} must be a dropout probability in [0, 1), got {value!r}")
    return float(value)


def masked_max(h: Tensor, tokens: Tensor) -> Tensor:
    """``(B, L, C) -> (B, C)``: the maximum over the marked positions, 0 for empty rows."""
    pooled = h.masked_fill(~tokens.unsqueeze(-1), float("-inf")).amax(1)
    return torch.where(tokens.any(1, keepdim=True), pooled, torch.zeros_like(pooled))


def masked_mean(h: Tensor, tokens: Tensor) -> Tensor:
    """``(B, L, C) -> (B, C)``: the mean over the marked positions, 0 for empty rows."""
    w = tokens.unsqueeze(-1).to(h.dtype)
    return (h * w).sum(1) / w.sum(1).clamp_min(1.0)


class TextClassifier(nn.Module):
    """Shared by the text models: the embedding table and ``forward(ids)``.

    Args:
        vocab_size: rows of the embedding table (``len(vocabulary)``).
        embedding_dim: ``D``.
        pad_id: the padding id (its row is zero and stays zero).
        vocabulary: the words by id, to look up ``embeddings_path``.
        embeddings_path: a GloVe-format text file to start the embeddings from.
        freeze_embeddings: keep pretrained embeddings fixed.
    """

    def __init__(self, vocab_size: int, embedding_dim: int, pad_id: int = 0,
                 vocabulary: Sequence[str] | None = None,
                 embeddings_path: str | Path | None = None,
                 freeze_embeddings: bool = False) -> None:
        super().__init__()
        self.pad_id = pad_id
        self.embedding = token_embedding(vocab_size, embedding_dim, pad_id, vocabulary,
                                         embeddings_path, freeze_embeddings)

    def embed(self, ids: Tensor) -> Tensor:
        """``(B, L)`` ids -> ``(B, L, D)`` embeddings (what saliency is taken w.r.t.)."""
        return self.embedding(ids)

    def classify(self, embeddings: Tensor, tokens: Tensor | None = None) -> Tensor:
        """``(B, L, D)`` embeddings and ``(B, L)`` read positions -> logits ``(B, classes)``."""
        raise NotImplementedError

    def forward(self, ids: Tensor) -> Tensor:
        return self.classify(self.embed(ids), ids != self.pad_id)


class BiLSTM(TextClassifier):
    """Embeddings → dropout → bidirectional LSTM → max over tokens → MLP → logits.

    The backward direction runs on each row's tokens reversed in place (not on the padded
    row), so trailing padding changes nothing and no lengths go to the host for packing.

    Args (beyond :class:`TextClassifier`'s):
        num_classes: outputs.
        hidden_size: LSTM units per direction (the MLP's hidden width too).
        dropout: on the embeddings and before the output layer.
    """

    def __init__(self, num_classes: int, vocab_size: int, embedding_dim: int = 100,
                 hidden_size: int = 128, dropout: float = 0.2, pad_id: int = 0,
                 vocabulary: Sequence[str] | None = None,
                 embeddings_path: str | Path | None = None,
                 freeze_embeddings: bool = False) -> None:
        check_int(num_classes, "model.num_classes", low=2)
        check_int(hidden_size, "model.hidden_size")
        super().__init__(vocab_size, embedding_dim, pad_id, vocabulary, embeddings_path,
                         freeze_embeddings)
        self.input_dropout = nn.Dropout(_fraction(dropout, "model.dropout"))
        self.forward_lstm = nn.LSTM(embedding_dim, hidden_size, batch_first=True)
        self.backward_lstm = nn.LSTM(embedding_dim, hidden_size, batch_first=True)
        self.head = nn.Sequential(
            nn.Linear(2 * hidden_size, hidden_size),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden_size, num_classes),
        )

    def _kernels(self) -> contextlib.AbstractContextManager:
        """cuDNN off where its LSTM backward would refuse (eval mode, autograd on)."""
        if self.training or not torch.is_grad_enabled():
            return contextlib.nullcontext()
        return torch.backends.cudnn.flags(enabled=False)

    def classify(self, embeddings: Tensor, tokens: Tensor | None = None) -> Tensor:
        batch, length, _ = embeddings.shape
        if tokens is None:
            tokens = torch.ones(batch, length, dtype=torch.bool, device=embeddings.device)
        h = self.input_dropout(embeddings)
        # reverse each row's first `n` positions, leave the rest: an involution (B, L)
        n = tokens.sum(1, keepdim=True)
        t = torch.arange(length, device=h.device).expand(batch, length)
        reverse = torch.where(t < n, n - 1 - t, t).unsqueeze(-1)
        with self._kernels():
            forward_states, _ = self.forward_lstm(h)
            backward_states, _ = self.backward_lstm(h.gather(1, reverse.expand_as(h)))
        backward_states = backward_states.gather(1, reverse.expand_as(backward_states))
        states = torch.cat([forward_states, backward_states], dim=-1)  # (B, L, 2H)
        return self.head(masked_max(states, tokens))


def sinusoidal_positions(length: int, dim: int) -> Tensor:
    """``(length, dim)`` sine/cosine position codes (Vaswani et al. 2017)."""
    position = torch.arange(length, dtype=torch.float32).unsqueeze(1)
    frequency = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(1e4) / dim))
    codes = torch.zeros(length, dim)
    codes[:, 0::2] = torch.sin(position * frequency)
    codes[:, 1::2] = torch.cos(position * frequency)[:, : dim // 2]
    return codes


class TextTransformer(TextClassifier):
    """Embeddings + sinusoidal positions → pre-norm Transformer encoder → mean over tokens
    → linear → logits. Attention never looks at padding (key padding mask).

    Args (beyond :class:`TextClassifier`'s):
        num_classes: outputs.
        num_heads, num_layers, feedforward_dim: the encoder (``embedding_dim`` wide).
        dropout: on the embeddings and inside the encoder.
        max_length: longest input; position codes are precomputed up to it.
    """

    def __init__(self, num_classes: int, vocab_size: int, embedding_dim: int = 128,
                 num_heads: int = 4, num_layers: int = 2, feedforward_dim: int = 256,
                 dropout: float = 0.1, max_length: int = 2048, pad_id: int = 0,
                 vocabulary: Sequence[str] | None = None,
                 embeddings_path: str | Path | None = None,
                 freeze_embeddings: bool = False) -> None:
        check_int(num_classes, "model.num_classes", low=2)
        check_int(num_layers, "model.num_layers")
        check_int(feedforward_dim, "model.feedforward_dim")
        check_int(max_length, "model.max_length")
        if check_int(num_heads, "model.num_heads") and embedding_dim % num_heads:
            raise SettingError(f"model.embedding_dim={embedding_dim} must be divisible by "
                               f"model.num_heads={num_heads}")
        super().__init__(vocab_size, embedding_dim, pad_id, vocabulary, embeddings_path,
                         freeze_embeddings)
        dropout = _fraction(dropout, "model.dropout")
        self.max_length = max_length
        self.register_buffer("positions", sinusoidal_positions(max_length, embedding_dim),
                             persistent=False)
        self.input_dropout = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(embedding_dim, num_heads, feedforward_dim, dropout,
                                           activation=nn.GELU(), batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers, norm=nn.LayerNorm(embedding_dim),
                                             enable_nested_tensor=False)
        self.output = nn.Linear(embedding_dim, num_classes)

    def classify(self, embeddings: Tensor, tokens: Tensor | None = None) -> Tensor:
        batch, length, _ = embeddings.shape
        if length > self.max_length:
            raise SettingError(f"inputs of {length} tokens exceed model.max_length="
                               f"{self.max_length}; raise it to at least dataset.max_length")
        if tokens is None:
            tokens = torch.ones(batch, length, dtype=torch.bool, device=embeddings.device)
        h = self.input_dropout(embeddings + self.positions[:length])
        # an empty row attends everywhere (no all-masked softmax); its pooled output is 0
        attend = tokens | ~tokens.any(1, keepdim=True)
        h = self.encoder(h, src_key_padding_mask=~attend)
        return self.output(masked_mean(h, tokens))


__all__ = ["BiLSTM", "TextClassifier", "TextTransformer", "masked_max", "masked_mean",
           "sinusoidal_positions"]
