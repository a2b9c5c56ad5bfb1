"""What a *feature* is, per modality: the one thing a modality defines.

SGT and every faithfulness metric do the same three things on a batch: take a saliency,
rank features, replace some of them. A :class:`Modality` turns a batch into the tensor
saliency is taken with respect to (``embed``), lays that tensor out as
``(B, N, C)`` — ``N`` features along one axis, ``C`` values that are masked together —
and runs the rest of the model from it (``classify``). Training and evaluation only ever
talk to this interface, so a new modality never touches them.
"""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor, nn


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
    """Token ids ``(B, L)``; a feature is a token's embedding ``(D,)``; padding never counts.

    The model must expose ``embed(ids) -> (B, L, D)`` and ``classify(emb, mask) -> logits``.
    """

    name = "text"

    def __init__(self, pad_id: int = 0) -> None:
        self.pad_id = pad_id

    def embed(self, model: nn.Module, x: Tensor) -> Tensor:
        return model.embed(x)

    def classify(self, model: nn.Module, z: Tensor, valid: Tensor | None = None) -> Tensor:
        return model.classify(z, valid)

    def valid_features(self, x: Tensor) -> Tensor | None:
        return x != self.pad_id

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


def feature_saliency(modality: Modality, grad: Tensor, abs: bool = False) -> Tensor:
    """Per-feature saliency ``(B, N)``: mean over the values masked together.

    The signed channel mean matches the original code; ``abs`` is applied after the mean.
    """
    sal = modality.to_features(grad).mean(dim=2)
    return sal.abs() if abs else sal


__all__ = [
    "MODALITIES",
    "ImageModality",
    "Modality",
    "TextModality",
    "TimeSeriesModality",
    "feature_saliency",
    "get_modality",
]
