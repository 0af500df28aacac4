"""Fixtures of the masking tests: real MNIST (keep) and MNIST-M (degrade) subsets."""

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
