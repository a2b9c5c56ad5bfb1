"""VGG16 (Simonyan & Zisserman 2015, https://arxiv.org/abs/1409.1556) as the original BIRD code.

torchvision's VGG16 convolutional features (optionally ImageNet weights), with the
original ``train_BIRD.py`` head: 25088 → 4048 → ReLU → Dropout(.4) → 2048 → ReLU →
Dropout(.4) → classes. Inputs of any size ≥ 32 px work (adaptive 7×7 pooling).
"""

from __future__ import annotations

from pathlib import Path

import torchvision
from torch import Tensor, nn

from sgt.models.pretrained import load_pretrained, no_inplace, pretrained_state_dict


class VGG16(nn.Module):
    """VGG16 features → 7×7 average pool → the original three-layer head.

    Args:
        weights: torchvision ``vgg16`` weights for the features (``DEFAULT`` =
            ImageNet; downloads), or ``None``.
        weights_path: a local copy of those weights (torchvision's ``vgg16-*.pth``).
    """

    def __init__(self, num_classes: int = 260, weights: str | None = None,
                 weights_path: str | Path | None = None, dropout: float = 0.4) -> None:
        super().__init__()
        base = torchvision.models.vgg16()
        state = pretrained_state_dict("vgg16", weights, weights_path)
        if state is not None:  # a whole torchvision vgg16 state dict; only its features stay
            load_pretrained(base, state, 1000, str(weights_path or f"vgg16 weights {weights}"))
        self.features = no_inplace(base.features)
        self.avgpool = base.avgpool
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4048),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(4048, 2048),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(2048, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.avgpool(self.features(x)).flatten(1))
