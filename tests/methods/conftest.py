"""Fixtures of the protection-method tests: MNIST-M subsets (the tiny model gets ~40% on them)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def mnistm_small():
    """(train, test) ImageSets: 600 / 400 MNIST-M digits."""
    from mapguard.data import load_data

    train = load_data("builtin:mnistm", split="train", progress=False).take(600, seed=0)
    test = load_data("builtin:mnistm", split="test", progress=False).take(400, seed=0)
    return train, test
