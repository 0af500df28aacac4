"""The one-way dependency rule: mapguard -> verification -> protocols.

``protocols`` imports neither ``mapguard`` nor ``verification`` (nor torch); ``verification``
never imports ``mapguard``. Checked on the source with :mod:`ast`, so the rule holds for every
module, including ones no test imports.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

FORBIDDEN = {
    "protocols": {"mapguard", "verification", "torch", "torchvision"},
    "verification": {"mapguard"},
}


def imported_top_level_names(source: str, filename: str = "<src>") -> set[str]:
    """Top-level package names imported by ``source`` (absolute imports only)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source, filename=filename)):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and _is_dynamic_import(node):
            names.add(node.args[0].value.split(".")[0])
    return names


def _is_dynamic_import(node: ast.Call) -> bool:
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    return (
        name in {"import_module", "__import__"}
        and bool(node.args)
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    )


def test_scanner_sees_every_import_form():
    src = (
        "import mapguard.data\nfrom verification import stats\nfrom . import x\n"
        "def f():\n    import torch as t\n    importlib.import_module('mapguard.models')\n"
    )
    assert imported_top_level_names(src) == {"mapguard", "verification", "torch"}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_respects_dependency_direction(package):
    files = sorted((ROOT / package).rglob("*.py"))
    if package == "protocols":
        assert files, "protocols/ has no Python files?"
    offenders = {
        str(path.relative_to(ROOT)): sorted(found)
        for path in files
        if (
            found := imported_top_level_names(path.read_text("utf-8"), str(path))
            & FORBIDDEN[package]
        )
    }
    assert offenders == {}
