"""Fixtures of the masking tests: MNIST (keep) / MNIST-M (degrade) subsets; torchvision models."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def mnistm_small():
    """(train, test) ImageSets: 600 / 400 MNIST-M digits (the tiny model gets ~40% on them)."""
    from mapguard.data import load_data

    train = load_data("builtin:mnistm", split="train", progress=False).take(600, seed=0)
    test = load_data("builtin:mnistm", split="test", progress=False).take(400, seed=0)
    return train, test


@pytest.fixture(scope="session")
def sources(mnist_small, mnistm_small):
    """(keep, degrade) TensorSources for the learner."""
    from mapguard.masking import TensorSource

    keep = TensorSource(mnist_small[0].floats(), seed=0, name="mnist")
    degrade = TensorSource(mnistm_small[0].floats(), mnistm_small[0].labels, seed=1, name="mnistm")
    return keep, degrade


def wrapped(body):
    """``body`` the way mapguard models are built: input normalisation first."""
    from torch import nn

    from mapguard.models import Normalize

    return nn.Sequential(Normalize((0.5, 0.5, 0.5), (0.25, 0.25, 0.25)), body).eval()


@pytest.fixture(scope="session")
def small_vit():
    """A 2-layer torchvision ViT for 32x32 inputs (its zero-initialised head drawn at random)."""
    import torch
    from torchvision.models import VisionTransformer

    torch.manual_seed(0)
    body = VisionTransformer(
        image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64,
        num_classes=10,
    )  # fmt: skip
    torch.nn.init.normal_(body.heads.head.weight, std=0.5)
    return wrapped(body)


@pytest.fixture(scope="session")
def resnet18():
    """torchvision's resnet18 with 10 classes (random weights)."""
    import torch
    from torchvision.models import resnet18

    torch.manual_seed(0)
    return wrapped(resnet18(num_classes=10))
