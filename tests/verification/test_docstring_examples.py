"""The runnable examples in the public docstrings of ``verification`` stay true."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "verification",
    "verification.triggers",
    "verification.tilt",
    "verification.stats",
    "verification.backends",
    "verification.verify",
    "verification.check",
    "verification.watermark_file",
    "verification.transforms",
    "verification._triggers.targeted_patch",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has no runnable example"
    assert result.failed == 0
