"""Small building blocks of the report context: a labelled row and cell shortcuts."""

from __future__ import annotations

import dataclasses
from typing import Any

from mapguard.report._cells import Cell, Sources
from mapguard.report._layout import PER_SECRET, RESULT

__all__ = ["Row", "per_secret_cell", "per_secret_ref", "result_cell", "text", "tool"]


@dataclasses.dataclass(frozen=True)
class Row:
    """One labelled line of a table."""

    label: str
    cell: Cell


def text(value: Any, *, mono: bool = False) -> Cell:
    """A cell of text the report itself supplies (not read from a file)."""
    return Cell(text=str(value), mono=mono)


def result_cell(s: Sources, key: str, kind: str = "float") -> Cell:
    """The result field of meaning ``key`` (see :data:`RESULT`)."""
    return s.num(s.first(*RESULT[key]), kind)


def per_secret_ref(s: Sources, i: int, key: str) -> str | None:
    """Path of field ``key`` (see :data:`PER_SECRET`) of secret ``i``, if recorded."""
    return s.first_key(f"result:test.per_secret[{i}]", PER_SECRET[key])


def per_secret_cell(s: Sources, i: int, key: str, kind: str = "float") -> Cell:
    """Cell of field ``key`` of secret ``i``."""
    return s.num(per_secret_ref(s, i, key), kind)


def tool(s: Sources, source: str) -> str:
    """``"name version"`` of the tool that wrote document ``source``."""
    return f"{s.get(f'{source}:tool.name', '?')} {s.get(f'{source}:tool.version', '?')}"
