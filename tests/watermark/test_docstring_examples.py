"""The runnable examples in the docstrings of the watermark modules stay true."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["verification.watermark_file", "verification.check", "verification._stats_targeted"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has no runnable example"
    assert result.failed == 0
