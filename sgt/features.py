"""What a *feature* is, per modality: the one thing a modality defines.

SGT and every faithfulness metric do the same three things on a batch: take a saliency,
rank features, replace some of them. A :class:`Modality` turns a batch into the tensor
saliency is taken with respect to (``embed``), lays that tensor out as
``(B, N, C)`` — ``N`` features along one axis, ``C`` values that are masked together —
and runs the rest of the model from it (``classify``). Training and evaluation only ever
talk to this interface, so a new modality never touches them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import torch
from torch import Tensor, nn

from sgt.errors import SettingError


class Modality:
    """Base class: the input itself is the saliency tensor (images, time series)."""

    name: ClassVar[str] = "base"

    def embed(self, model: nn.Module, x: Tensor) -> Tensor:
        """Batch -> the tensor saliency is taken w.r.t. Images/time series: ``x`` itself."""
        return x

    def classify(self, model: nn.Module, z: Tensor, valid: Tensor | None = None) -> Tensor:
        """Run the model from the saliency tensor ``z`` to logits ``(B, classes)``."""
        return model(z)

    def valid_features(self, x: Tensor) -> Tensor | None:
        """``(B, N)`` bool of positions that count as features, or ``None`` for all."""
        return None

    def to_features(self, z: Tensor) -> Tensor:
        """``z`` -> ``(B, N, C)``: features on axis 1, values masked together on axis 2."""
        raise NotImplementedError

    def from_features(self, features: Tensor, like: Tensor) -> Tensor:
        """Inverse of :meth:`to_features`, shaped like ``like``."""
        raise NotImplementedError

    def grid(self, z: Tensor) -> tuple[int, ...]:
        """The shape the ``N`` features lie on (images ``(H, W)``), for neighbour-aware fills."""
        return tuple(z.shape[1:2])


class ImageModality(Modality):
    """``(B, C, H, W)`` images; a feature is a pixel with all its channels."""

    name = "image"

    def to_features(self, z: Tensor) -> Tensor:
        # (B, C, H, W) -> (B, H*W, C)
        return z.flatten(2).transpose(1, 2)

    def from_features(self, features: Tensor, like: Tensor) -> Tensor:
        # (B, H*W, C) -> (B, C, H, W)
        return features.transpose(1, 2).reshape(like.shape)

    def grid(self, z: Tensor) -> tuple[int, ...]:
        return tuple(z.shape[2:])


class TimeSeriesModality(Modality):
    """``(B, T, F)`` series; a feature is one (time, feature) cell."""

    name = "timeseries"

    def to_features(self, z: Tensor) -> Tensor:
        # (B, T, F) -> (B, T*F, 1)
        return z.reshape(z.shape[0], -1, 1)

    def from_features(self, features: Tensor, like: Tensor) -> Tensor:
        return features.reshape(like.shape)

    def grid(self, z: Tensor) -> tuple[int, ...]:
        return tuple(z.shape[1:3])


class TextModality(Modality):
    """Token ids ``(B, L)``; a feature is a token's embedding ``(D,)``.

    The model must expose ``embed(ids) -> (B, L, D)`` and ``classify(emb, tokens) ->
    logits``, ``tokens`` being the ``(B, L)`` bool of the positions it reads (a prefix of
    each row: padding comes last).

    Which tokens are features (ranked, masked, counted in ``k``): never padding
    (``pad_id``) nor separators (``sep_id``); with ``has_query``, the tokens before a row's
    first separator are the query (a FEVER claim) and are not features either, as ERASER
    removes document tokens only (docs/paper.md §3(c)). The model still reads them:
    :meth:`classify` hands it every position up to the row's last feature, so query and
    separators stay in its input while never being selected. (A row without features reads
    as empty there; :meth:`logits` of raw ids reads every non-padding token, e.g. the
    claim alone once every document token is deleted.)

    Masked tokens get the fill's values (``uniform``: per embedding dimension between the
    min and max of the row's features; ``constant`` with value 0: the padding embedding,
    which ``nn.Embedding(padding_idx=pad_id)`` keeps at zero).

    **Word pieces of a pretrained tokenizer** (``cls_id`` set; :mod:`sgt.models.hf`,
    docs/hf.md): rows are ``[CLS] text [SEP]`` or ``[CLS] first [SEP] second [SEP]``, then
    padding. ``[CLS]`` is never a feature either. The model reads every position but
    padding: through the closing separator, which follows the last feature. Its segment ids
    (``classify(emb, tokens, segments)``) are 1 after the separator that closes the first
    text: with ``has_query`` from the first feature on, else after the first separator that
    follows a feature (e-SNLI's premise | hypothesis; a single text has none).
    """

    name = "text"

    def __init__(self, pad_id: int = 0, sep_id: int | None = None,
                 has_query: bool = False, cls_id: int | None = None) -> None:
        if (has_query or cls_id is not None) and sep_id is None:
            raise SettingError("TextModality(has_query=True or cls_id=...) needs the sep_id "
                               "that ends the query or text")
        self.pad_id, self.sep_id, self.has_query = pad_id, sep_id, has_query
        self.cls_id = cls_id

    def embed(self, model: nn.Module, x: Tensor) -> Tensor:
        return model.embed(x)

    def classify(self, model: nn.Module, z: Tensor, valid: Tensor | None = None) -> Tensor:
        if valid is None:
            return model.classify(z, None)
        reads = self.read_positions(valid)
        if self.cls_id is None:
            return model.classify(z, reads)
        reads = reads | torch.cat([reads[:, :1], reads[:, :-1]], 1)  # + the closing [SEP]
        if self.has_query:
            second = valid.cumsum(1) > 0
        else:  # after the first separator that follows a feature
            gap = (valid.cumsum(1) > 0) & ~valid & reads
            second = gap.cumsum(1) - gap.long() > 0
        return model.classify(z, reads, second & reads)

    def valid_features(self, x: Tensor) -> Tensor | None:
        valid = x != self.pad_id
        if self.cls_id is not None:
            valid &= x != self.cls_id
        if self.sep_id is not None:
            sep = x == self.sep_id
            valid &= ~sep
            if self.has_query:  # the query: before the first separator
                valid &= sep.cumsum(1) > 0
        return valid

    def logits(self, model: nn.Module, x: Tensor) -> Tensor:
        """Logits of raw ids ``(B, L)``: the model reads every token but padding (word
        pieces: the second text is everything after the first separator)."""
        reads = x != self.pad_id
        if self.cls_id is None:
            return model.classify(model.embed(x), reads)
        sep = x == self.sep_id
        return model.classify(model.embed(x), reads, (sep.cumsum(1) - sep.long() > 0) & reads)

    def documents(self, x: Tensor) -> Tensor:
        """``(B, L)`` which document of its row each position belongs to (0 = the first),
        counted by the separators before it (word pieces: by runs of separators, as RoBERTa
        closes a text with two); the query's positions get -1."""
        if self.sep_id is None:
            return torch.zeros_like(x)
        sep = x == self.sep_id
        if self.cls_id is not None:
            sep &= ~torch.cat([torch.zeros_like(sep[:, :1]), sep[:, :-1]], 1)
        return sep.cumsum(1) - int(self.has_query)

    @staticmethod
    def read_positions(valid: Tensor) -> Tensor:
        """``(B, L)`` bool: every position up to each row's last feature (what the model
        reads: the features plus the query and separators before them)."""
        return valid.flip(1).cumsum(1).flip(1) > 0

    def to_features(self, z: Tensor) -> Tensor:
        return z

    def from_features(self, features: Tensor, like: Tensor) -> Tensor:
        return features


MODALITIES: dict[str, type[Modality]] = {
    cls.name: cls for cls in (ImageModality, TimeSeriesModality, TextModality)
}


def get_modality(name: str, **kwargs) -> Modality:
    """Modality by name; the error lists the known ones."""
    if name not in MODALITIES:
        raise ValueError(f"unknown modality {name!r}; known: {sorted(MODALITIES)}")
    return MODALITIES[name](**kwargs)


# How a feature's values (an RGB pixel's channels, a token's embedding) reduce to one score.
FEATURE_SCORES: dict[str, Callable[[Tensor], Tensor]] = {
    "mean": lambda v: v.mean(dim=2),  # signed mean: the SGT training step (docs/paper.md §1.2)
    "abs_mean": lambda v: v.mean(dim=2).abs(),  # |mean|: the SGT accuracy drop (§3(a))
    "mean_abs": lambda v: v.abs().mean(dim=2),  # mean of |values|
    "signed_sum": lambda v: v.sum(dim=2),  # signed sum: ROAD's ranking (§3(f))
}


def check_feature_score(name: object, key: str = "feature_score") -> str:
    """The one check of a feature-score name, naming the allowed ones."""
    if not isinstance(name, str) or name not in FEATURE_SCORES:
        raise SettingError(f"{key} must be one of {list(FEATURE_SCORES)}, got {name!r}")
    return name


def feature_scores(modality: Modality, values: Tensor, how: str = "abs_mean") -> Tensor:
    """Per-feature scores ``(B, N)`` of ``values`` shaped like the saliency tensor, reduced
    over the values masked together as ``how`` (:data:`FEATURE_SCORES`) says."""
    return FEATURE_SCORES[check_feature_score(how)](modality.to_features(values))


def feature_saliency(modality: Modality, grad: Tensor, abs: bool = False) -> Tensor:
    """Per-feature saliency ``(B, N)`` of the training step: the signed mean over the values
    masked together, as the original code; ``abs`` is applied after the mean."""
    return feature_scores(modality, grad, "abs_mean" if abs else "mean")


__all__ = [
    "FEATURE_SCORES",
    "MODALITIES",
    "ImageModality",
    "Modality",
    "TextModality",
    "TimeSeriesModality",
    "check_feature_score",
    "feature_saliency",
    "feature_scores",
    "get_modality",
]
