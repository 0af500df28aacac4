"""Fixtures of the attack tests: the tiny model's metadata and its state before any attack."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_meta():
    from mapguard.checkpoint import ModelMeta

    return ModelMeta(arch="vgg_tiny")


@pytest.fixture
def untouched(tiny_model):
    """Asserts after the test that the session's tiny model was not changed by an attack."""
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    yield tiny_model
    after = tiny_model.state_dict()
    assert all(v.equal(after[k]) for k, v in before.items()), "attack mutated its input model"
