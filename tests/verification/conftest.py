"""Fixtures of the verification tests."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """The models here are tiny: one thread is faster than two, and far faster when the cores
    are shared (thread oversubscription slowed these tests ~9x on a loaded 2-core machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
