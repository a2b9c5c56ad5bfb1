"""CIFAR ResNets (He et al. 2016, https://arxiv.org/abs/1512.03385) for 32×32 inputs.

- ``resnet18``: the paper's CIFAR-10 model, the usual CIFAR variant (3×3 stem, no max-pool,
  BasicBlocks [2, 2, 2, 2], widths 64–512, 1×1-conv "option B" shortcuts; as
  kuangliu/pytorch-cifar).
- ``resnet20/32/44/56/110``: He et al.'s CIFAR family as in Idelbayev's
  pytorch_resnet_cifar10 (widths 16/32/64, zero-padding "option A" shortcuts, Kaiming
  init), the ``resnet.py`` of the original code, whose default was ``resnet32``.
Every ReLU is its own module, used once: captum's DeepLift needs that to attribute.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch.nn.functional as F
from torch import Tensor, nn

Shortcut = Literal["A", "B"]


class PadShortcut(nn.Module):
    """Option A: subsample by 2 and zero-pad the new channels (no parameters)."""

    def __init__(self, extra_channels: int) -> None:
        super().__init__()
        self.extra = extra_channels

    def forward(self, x: Tensor) -> Tensor:
        # (B, C, H, W) -> (B, C + 2·extra, H/2, W/2)
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.extra, self.extra))


class BasicBlock(nn.Module):
    """conv3×3-BN-ReLU-conv3×3-BN, plus the shortcut, then ReLU."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1,
                 shortcut: Shortcut = "B") -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = (
                PadShortcut(planes // 4) if shortcut == "A" else nn.Sequential(
                    nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))
            )
        self.relu2 = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        return self.relu2(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet(nn.Module):
    """3×3 stem, stages of BasicBlocks (the first at stride 1, the rest at 2), global pool, fc.

    Args:
        widths: channels of the stem/first stage and of each stage.
        blocks: BasicBlocks per stage.
        shortcut: ``"A"`` (zero-padding) or ``"B"`` (1×1 conv) where the shape changes.
    """

    def __init__(self, widths: Sequence[int], blocks: Sequence[int], num_classes: int = 10,
                 shortcut: Shortcut = "B", in_channels: int = 3) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, 1, padding=1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(),
        )
        stages, in_planes = [], widths[0]
        for i, (planes, count) in enumerate(zip(widths, blocks, strict=True)):
            for j in range(count):
                stride = 2 if i > 0 and j == 0 else 1
                stages.append(BasicBlock(in_planes, planes, stride, shortcut))
                in_planes = planes
        self.layers = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_planes, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.pool(self.layers(self.stem(x))).flatten(1))


def resnet18(num_classes: int = 10, in_channels: int = 3) -> ResNet:
    """CIFAR ResNet18: 11.2 M parameters."""
    return ResNet((64, 128, 256, 512), (2, 2, 2, 2), num_classes, "B", in_channels)


def cifar_resnet(depth: int, num_classes: int = 10, in_channels: int = 3) -> ResNet:
    """He et al.'s CIFAR ResNet of ``depth = 6n + 2`` layers (Idelbayev's version)."""
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f"CIFAR ResNet depth must be 6n + 2 (20, 32, 44, 56, 110, …), "
                         f"got {depth!r}")
    n = (depth - 2) // 6
    model = ResNet((16, 32, 64), (n, n, n), num_classes, "A", in_channels)
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(module.weight)
    return model


def resnet20(num_classes: int = 10, in_channels: int = 3) -> ResNet:
    """0.27 M parameters."""
    return cifar_resnet(20, num_classes, in_channels)


def resnet32(num_classes: int = 10, in_channels: int = 3) -> ResNet:
    """0.46 M parameters; the original ``train_CIFAR.py``'s default ``--arch``."""
    return cifar_resnet(32, num_classes, in_channels)
