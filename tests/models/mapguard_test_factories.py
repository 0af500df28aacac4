"""Model factories for ``module:`` architecture specs in tests (imported by module name, with this
folder put on ``sys.path`` by the test). Not collected: the name does not start with ``test_``."""

from __future__ import annotations

import torch
import torchvision
from torch import nn

#: ``num_classes`` of every call of :func:`tiny_vit`, so a test can tell whether the code ran.
CALLS: list[int] = []


def tiny_vit(*, num_classes: int) -> nn.Module:
    """A two-layer VisionTransformer for 64x64 inputs (about 0.1 M parameters)."""
    CALLS.append(num_classes)
    return torchvision.models.VisionTransformer(
        image_size=64,
        patch_size=16,
        num_layers=2,
        num_heads=2,
        hidden_dim=64,
        mlp_dim=128,
        num_classes=num_classes,
    )


def computes_while_built(*, num_classes: int) -> nn.Module:
    """A factory that reads a tensor value while building (fails on the ``meta`` device)."""
    width = int(torch.tensor(8).item())
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, width), nn.Linear(width, num_classes))


def not_a_module(*, num_classes: int) -> object:
    return {"num_classes": num_classes}


NOT_CALLABLE = 3
