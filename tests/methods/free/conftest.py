"""Fixtures of the SF-MAP / DF-MAP tests: MNIST-M, the unseen (or given) target domain."""

from __future__ import annotations

import pytest

from mapguard.data import load_data


@pytest.fixture(scope="module")
def mnistm():
    train = load_data("builtin:mnistm", split="train", progress=False).take(1200, seed=0)
    test = load_data("builtin:mnistm", split="test", progress=False).take(400, seed=0)
    return train, test
