"""Built-in architectures, all adapted to 32x32 inputs and ``num_classes`` outputs."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mapguard.models._registry import register_model

DEFAULT_MODEL = "vgg_small"
DEFAULT_MEAN = (0.5, 0.5, 0.5)
DEFAULT_STD = (0.25, 0.25, 0.25)


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel, stored as buffers so it travels with the weights."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer(
            "mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1)
        )
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def _conv_bn(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]


def _vgg(widths: Sequence[Sequence[int]], num_classes: int, hidden: int) -> nn.Module:
    layers: list[nn.Module] = []
    c_in = 3
    for stage in widths:
        for c_out in stage:
            layers += _conv_bn(c_in, c_out)
            c_in = c_out
        layers.append(nn.MaxPool2d(2))
    side = 32 // 2 ** len(widths)
    return nn.Sequential(
        *layers,
        nn.Flatten(),
        nn.Linear(c_in * side * side, hidden),
        nn.ReLU(),
        nn.Linear(hidden, num_classes),
    )


@register_model("vgg_small")
def vgg_small(*, num_classes: int) -> nn.Module:
    """Compact VGG-style CNN with BatchNorm (≈0.3 M parameters); the default."""
    return _vgg([[32], [64], [128, 128]], num_classes, hidden=128)


@register_model("vgg_tiny")
def vgg_tiny(*, num_classes: int) -> nn.Module:
    """A smaller VGG-style CNN (≈40 k parameters) for tests and quick experiments."""
    return _vgg([[16], [32], [32]], num_classes, hidden=64)


@register_model("resnet18")
def resnet18(*, num_classes: int) -> nn.Module:
    """torchvision ResNet-18 with a 3x3 stride-1 stem and no max-pool (CIFAR-style)."""
    import torchvision  # imported on demand: it takes seconds, and most archs do not need it

    m = torchvision.models.resnet18(weights=None, num_classes=num_classes)
    m.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
    m.maxpool = nn.Identity()
    return m


@register_model("vgg11_bn")
def vgg11_bn(*, num_classes: int) -> nn.Module:
    """torchvision VGG-11-BN; the 7x7 adaptive pool becomes 1x1 for 32x32 inputs."""
    import torchvision

    m = torchvision.models.vgg11_bn(weights=None, num_classes=num_classes)
    m.avgpool = nn.AdaptiveAvgPool2d(1)
    m.classifier = nn.Sequential(
        nn.Linear(512, 256), nn.ReLU(), nn.Dropout(0.3), nn.Linear(256, num_classes)
    )
    return m


@register_model("mobilenet_v3_small")
def mobilenet_v3_small(*, num_classes: int) -> nn.Module:
    """torchvision MobileNetV3-Small with a stride-1 stem so 32x32 inputs keep spatial extent."""
    import torchvision

    m = torchvision.models.mobilenet_v3_small(weights=None, num_classes=num_classes)
    stem = m.features[0][0]
    m.features[0][0] = nn.Conv2d(3, stem.out_channels, 3, stride=1, padding=1, bias=False)
    return m
