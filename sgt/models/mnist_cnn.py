"""The paper's MNIST network (the PyTorch MNIST example's CNN, ``cnn.py`` of the original)."""

from __future__ import annotations

from torch import Tensor, nn


class MNISTNet(nn.Module):
    """conv3×3(32) → conv3×3(64) → max-pool → dropout .25 → fc 128 → dropout .5 → fc.

    Returns logits; the original's final ``log_softmax`` is the ``sgt.saliency_output``
    option ``log_prob``, so every classifier here has the same logits surface.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3),
            nn.ReLU(),
            nn.Conv2d(32, 64, 3),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Dropout(0.25),
            nn.Flatten(),
        )
        self.classifier = nn.Sequential(
            nn.Linear(9216, 128),  # 64 × 12 × 12 for 28 × 28 inputs
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(128, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))
