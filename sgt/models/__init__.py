"""Classifiers: plain ``nn.Module``s returning logits ``(B, classes)``."""

from sgt.models.mnist_cnn import MNISTNet

__all__ = ["MNISTNet"]
