"""The examples in the protocols docstrings run and give the output they show."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "protocols",
    "protocols.canonical",
    "protocols.commitments",
    "protocols.dsse",
    "protocols.fileio",
    "protocols.keys",
    "protocols.openings",
    "protocols.schemas",
    "protocols.secretbox",
    "protocols.statements",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has no docstring example"
    assert result.failed == 0
